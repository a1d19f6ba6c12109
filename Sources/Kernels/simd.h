// SIMD helpers shared by the kernel files; not part of the module's interface.
#ifndef SLUICE_KERNELS_SIMD_H
#define SLUICE_KERNELS_SIMD_H

#include "internal.h"
#include <immintrin.h>

/// The sum of eight lanes in the kernels' fixed order: (l + l+4), then (+2), then (+1).
/// sl_hsum8 is the portable definition.
__attribute__((target("avx2")))
static inline float hsum_f32_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float sl_hsum8(const float p[8]) {
    const float s0 = p[0] + p[4], s1 = p[1] + p[5], s2 = p[2] + p[6], s3 = p[3] + p[7];
    return (s0 + s2) + (s1 + s3);
}

#endif
