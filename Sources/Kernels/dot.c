// Float dot products and the row-wise matmul, with the SIMD level picked once at run time.
#include "Kernels.h"
#include <immintrin.h>

static float dot_portable(const float *a, const float *b, int64_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

__attribute__((target("avx2,fma")))
static float dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    __m256 acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
    __m128 lo = _mm256_castps256_ps128(acc), hi = _mm256_extractf128_ps(acc, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_hadd_ps(lo, lo);
    lo = _mm_hadd_ps(lo, lo);
    float s = _mm_cvtss_f32(lo);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

__attribute__((target("avx512f")))
static float dot_avx512(const float *a, const float *b, int64_t n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    }
    for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    float s = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

typedef float (*dot_fn)(const float *, const float *, int64_t);

static dot_fn chosen_dot(void) {
    static dot_fn fn = 0;
    if (!fn) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) fn = dot_avx512;
        else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) fn = dot_avx2;
        else fn = dot_portable;
    }
    return fn;
}

const char *sl_simd_level(void) {
    dot_fn fn = chosen_dot();
    return fn == dot_avx512 ? "avx512" : fn == dot_avx2 ? "avx2" : "portable";
}

float sl_dot_f32(const float *a, const float *b, int64_t n) { return chosen_dot()(a, b, n); }

int sl_matmul_rows(int type, const void *w, int64_t k, int64_t row_begin, int64_t row_end,
                   const float *x, int64_t batch, float *y, int64_t ldy, float *scratch) {
    const int64_t per = sl_block_elements(type);
    if (per == 0 || k % per != 0) return -1;
    const int64_t row_bytes = k / per * sl_block_bytes(type);
    const dot_fn dot = chosen_dot();
    const char *base = (const char *)w;
    for (int64_t r = row_begin; r < row_end; r++) {
        const float *row;
        if (type == SL_TYPE_F32) {
            row = (const float *)(base + r * row_bytes);
        } else {
            sl_dequantize_row(type, base + r * row_bytes, scratch, k);
            row = scratch;
        }
        for (int64_t b = 0; b < batch; b++) y[b * ldy + r] = dot(row, x + b * k, k);
    }
    return 0;
}
