// Float dot products and the row-wise matmul. The order of operations is fixed (see
// sl_dot_f32 in Kernels.h); the portable path defines it and the SIMD paths reproduce it.
#include "simd.h"
#include <math.h>

/// Pairwise reduction of 32 partial sums: p + p+16, then + 8, then the eight-lane order.
static float reduce32(const float p[32]) {
    float s[16];
    for (int l = 0; l < 16; l++) s[l] = p[l] + p[l + 16];
    float t[8];
    for (int l = 0; l < 8; l++) t[l] = s[l] + s[l + 8];
    return sl_hsum8(t);
}

static float dot_portable(const float *a, const float *b, int64_t n) {
    float p[32] = { 0 };
    const int64_t n32 = n - n % 32;
    for (int64_t i = 0; i < n32; i += 32) {
        for (int l = 0; l < 32; l++) p[l] = fmaf(a[i + l], b[i + l], p[l]);
    }
    float tail = 0;
    for (int64_t i = n32; i < n; i++) tail = fmaf(a[i], b[i], tail);
    return reduce32(p) + tail;
}

__attribute__((target("avx2,fma")))
static float dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();  // partials 0..7, 8..15
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();  // partials 16..23, 24..31
    const int64_t n32 = n - n % 32;
    for (int64_t i = 0; i < n32; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    float tail = 0;
    for (int64_t i = n32; i < n; i++) tail = fmaf(a[i], b[i], tail);
    // (p + p+16) for p < 16 is (acc0 + acc2, acc1 + acc3); then + 8 adds those two.
    return hsum_f32_avx2(_mm256_add_ps(_mm256_add_ps(acc0, acc2), _mm256_add_ps(acc1, acc3))) + tail;
}

__attribute__((target("avx2,fma,avx512f")))
static float dot_avx512(const float *a, const float *b, int64_t n) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();  // partials 0..15, 16..31
    const int64_t n32 = n - n % 32;
    for (int64_t i = 0; i < n32; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    }
    float tail = 0;
    for (int64_t i = n32; i < n; i++) tail = fmaf(a[i], b[i], tail);
    const __m512 s = _mm512_add_ps(acc0, acc1);
    const __m256 lo = _mm512_castps512_ps256(s);
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1));
    return hsum_f32_avx2(_mm256_add_ps(lo, hi)) + tail;
}

float sl_dot_f32(const float *a, const float *b, int64_t n) {
    const int isa = sl_isa_active();
    if (isa >= SL_ISA_AVX512) return dot_avx512(a, b, n);
    if (isa >= SL_ISA_AVX2) return dot_avx2(a, b, n);
    return dot_portable(a, b, n);
}

int sl_matmul_rows(int type, const void *w, int64_t k, int64_t row_begin, int64_t row_end,
                   const float *x, int64_t batch, float *y, int64_t ldy, float *scratch) {
    const int64_t per = sl_block_elements(type);
    if (per == 0 || k % per != 0) return -1;
    const int64_t row_bytes = k / per * sl_block_bytes(type);
    const char *base = (const char *)w;
    for (int64_t r = row_begin; r < row_end; r++) {
        const float *row;
        if (type == SL_TYPE_F32) {
            row = (const float *)(base + r * row_bytes);
        } else {
            sl_dequantize_row(type, base + r * row_bytes, scratch, k);
            row = scratch;
        }
        for (int64_t b = 0; b < batch; b++) y[b * ldy + r] = sl_dot_f32(row, x + b * k, k);
    }
    return 0;
}
