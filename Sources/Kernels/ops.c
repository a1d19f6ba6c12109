// Element-wise and attention operations of the transformer forward pass.
#include "simd.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void sl_rmsnorm(const float *x, const float *w, int64_t n, float eps, float *out) {
    const float ss = sl_dot_f32(x, x, n);
    const float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

void sl_gelu_mul(float *g, const float *u, int64_t n) {
    const float c = 0.7978845608028654f;  // sqrt(2 / pi)
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        g[i] = 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x))) * u[i];
    }
}

/// exp(t) for |t| ≤ 20 (what the GELU below needs): 2^n · p(f) with t·log2(e) = n + f,
/// |f| ≤ 0.5, p a degree-6 polynomial in f·ln 2 (relative error about 2e-7). The
/// multiplication by 2^n is exact.
static inline float exp_small(float t) {
    const float y = t * 1.4426950408889634f;
    const float n = nearbyintf(y);
    const float f = (y - n) * 0.6931471805599453f;
    float p = 1.0f / 720;
    p = fmaf(p, f, 1.0f / 120);
    p = fmaf(p, f, 1.0f / 24);
    p = fmaf(p, f, 1.0f / 6);
    p = fmaf(p, f, 0.5f);
    p = fmaf(p, f, 1.0f);
    p = fmaf(p, f, 1.0f);
    const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/// gelu_tanh(x) · u with tanh(t) = 1 − 2 / (exp(2t) + 1), t clamped to ±10 (tanh(10) is 1
/// in float). The definition of sl_gelu_mul_fast's bits; the AVX2 path repeats each step.
static inline float gelu_fast(float x, float u) {
    float t = 0.7978845608028654f * fmaf(0.044715f * x, x * x, x);
    t = t > -10.0f ? t : -10.0f;  // as _mm256_max_ps(t, -10), NaN included
    t = t < 10.0f ? t : 10.0f;    // as _mm256_min_ps(t, 10)
    const float tanh = 1.0f - 2.0f / (exp_small(2.0f * t) + 1.0f);
    return 0.5f * x * (1.0f + tanh) * u;
}

__attribute__((target("avx2,fma")))
static inline __m256 exp_small_avx2(__m256 t) {
    const __m256 y = _mm256_mul_ps(t, _mm256_set1_ps(1.4426950408889634f));
    const __m256 n = _mm256_round_ps(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 f = _mm256_mul_ps(_mm256_sub_ps(y, n), _mm256_set1_ps(0.6931471805599453f));
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

__attribute__((target("avx2,fma")))
static void gelu_mul_fast_avx2(float *g, const float *u, int64_t n) {
    const __m256 c = _mm256_set1_ps(0.7978845608028654f), a = _mm256_set1_ps(0.044715f);
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f), two = _mm256_set1_ps(2.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        __m256 t = _mm256_mul_ps(c, _mm256_fmadd_ps(_mm256_mul_ps(a, x), _mm256_mul_ps(x, x), x));
        t = _mm256_min_ps(_mm256_max_ps(t, _mm256_set1_ps(-10.0f)), _mm256_set1_ps(10.0f));
        const __m256 tanh = _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(exp_small_avx2(_mm256_mul_ps(two, t)), one)));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, tanh)), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = gelu_fast(g[i], u[i]);
}

void sl_gelu_mul_fast(float *g, const float *u, int64_t n) {
    if (sl_isa_at_least(SL_ISA_AVX2)) {
        gelu_mul_fast_avx2(g, u, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) g[i] = gelu_fast(g[i], u[i]);
}

void sl_silu_mul(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void sl_rope_angles(int64_t head_dim, int64_t position, float base, float *cs) {
    // theta_i = position * base^(-2i/d), built by repeated multiplication (as ggml does, so
    // the rounding matches the reference implementation).
    const float theta_scale = powf(base, -2.0f / (float)head_dim);
    float theta = (float)position;
    for (int64_t i = 0; i < head_dim / 2; i++) {
        cs[2 * i] = cosf(theta);
        cs[2 * i + 1] = sinf(theta);
        theta *= theta_scale;
    }
}

void sl_rope_apply(float *x, int64_t heads, int64_t head_dim, const float *cs, int neox) {
    const int64_t half = head_dim / 2;
    for (int64_t h = 0; h < heads; h++) {
        float *v = x + h * head_dim;
        for (int64_t i = 0; i < half; i++) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const int64_t a = neox ? i : 2 * i;
            const int64_t b = neox ? i + half : 2 * i + 1;
            const float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

static void rope(float *x, int64_t heads, int64_t head_dim, int64_t position, float base, int neox) {
    float stack[512];
    float *cs = head_dim <= 512 ? stack : malloc(sizeof(float) * (size_t)head_dim);
    if (!cs) return;
    sl_rope_angles(head_dim, position, base, cs);
    sl_rope_apply(x, heads, head_dim, cs, neox);
    if (cs != stack) free(cs);
}

void sl_rope_neox(float *x, int64_t heads, int64_t head_dim, int64_t position, float base) {
    rope(x, heads, head_dim, position, base, 1);
}

void sl_rope_norm(float *x, int64_t heads, int64_t head_dim, int64_t position, float base) {
    rope(x, heads, head_dim, position, base, 0);
}

/// out[d] = Σ_j (scores[j]·inv)·v_j[d], accumulated in registers (head_dim ≤ 256 floats)
/// with a separate multiply and add per term, in j order: the same rounding as the scalar
/// loop of sl_attention.
__attribute__((target("avx512f")))
static void weighted_sum_avx512(const float *scores, float inv, const float *v, int64_t stride, int64_t first,
                                int64_t count, int64_t capacity, int64_t head_dim, float *out) {
    __m512 acc[16];
    const int64_t lanes = head_dim / 16;
    for (int64_t c = 0; c < 16; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t j = 0; j < count; j++) {
        const float *row = v + ((first + j) % capacity) * stride;
        const __m512 p = _mm512_set1_ps(scores[j] * inv);
        for (int64_t c = 0; c < 16; c++) {
            if (c < lanes) acc[c] = _mm512_add_ps(acc[c], _mm512_mul_ps(p, _mm512_loadu_ps(row + 16 * c)));
        }
    }
    for (int64_t c = 0; c < lanes; c++) _mm512_storeu_ps(out + 16 * c, acc[c]);
}

void sl_attention(const float *q, const float *k_cache, const float *v_cache, int64_t capacity,
                  int64_t first, int64_t last, int64_t n_head, int64_t n_head_kv, int64_t head_dim,
                  float scale, float *out, float *scores) {
    const int64_t count = last - first + 1;
    const int64_t kv_dim = n_head_kv * head_dim;
    const int64_t group = n_head / n_head_kv;
    for (int64_t h = 0; h < n_head; h++) {
        const int64_t kv = h / group;
        const float *qh = q + h * head_dim;
        float max = -INFINITY;
        for (int64_t j = 0; j < count; j++) {
            const int64_t slot = (first + j) % capacity;
            const float s = sl_dot_f32(qh, k_cache + slot * kv_dim + kv * head_dim, head_dim) * scale;
            scores[j] = s;
            if (s > max) max = s;
        }
        float sum = 0;
        for (int64_t j = 0; j < count; j++) {
            scores[j] = expf(scores[j] - max);
            sum += scores[j];
        }
        const float inv = 1.0f / sum;
        float *oh = out + h * head_dim;
        const float *vh = v_cache + kv * head_dim;
        if (head_dim % 16 == 0 && head_dim <= 256 && sl_isa_at_least(SL_ISA_AVX512)) {
            weighted_sum_avx512(scores, inv, vh, kv_dim, first, count, capacity, head_dim, oh);
            continue;
        }
        for (int64_t d = 0; d < head_dim; d++) oh[d] = 0;
        for (int64_t j = 0; j < count; j++) {
            const int64_t slot = (first + j) % capacity;
            const float p = scores[j] * inv;
            const float *v = vh + slot * kv_dim;
            for (int64_t d = 0; d < head_dim; d++) oh[d] += p * v[d];
        }
    }
}

int64_t sl_argmax(const float *x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

float sl_logsumexp(const float *x, int64_t n) {
    float max = x[sl_argmax(x, n)];
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += exp((double)(x[i] - max));
    return max + (float)log(sum);
}
