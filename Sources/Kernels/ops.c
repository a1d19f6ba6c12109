// Element-wise and attention operations of the transformer forward pass.
#include "Kernels.h"
#include <math.h>

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

void sl_silu_mul(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void rope(float *x, int64_t heads, int64_t head_dim, int64_t position, float base, int neox) {
    const int64_t half = head_dim / 2;
    // theta_i = position * base^(-2i/d), built by repeated multiplication (as ggml does, so
    // the rounding matches the reference implementation).
    const float theta_scale = powf(base, -2.0f / (float)head_dim);
    float theta = (float)position;
    for (int64_t i = 0; i < half; i++) {
        const float c = cosf(theta), s = sinf(theta);
        theta *= theta_scale;
        for (int64_t h = 0; h < heads; h++) {
            float *v = x + h * head_dim;
            const int64_t a = neox ? i : 2 * i;
            const int64_t b = neox ? i + half : 2 * i + 1;
            const float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

void sl_rope_neox(float *x, int64_t heads, int64_t head_dim, int64_t position, float base) {
    rope(x, heads, head_dim, position, base, 1);
}

void sl_rope_norm(float *x, int64_t heads, int64_t head_dim, int64_t position, float base) {
    rope(x, heads, head_dim, position, base, 0);
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
        for (int64_t d = 0; d < head_dim; d++) oh[d] = 0;
        for (int64_t j = 0; j < count; j++) {
            const int64_t slot = (first + j) % capacity;
            const float p = scores[j] * inv;
            const float *vh = v_cache + slot * kv_dim + kv * head_dim;
            for (int64_t d = 0; d < head_dim; d++) oh[d] += p * vh[d];
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
