// Q8_0 weight rows repacked sixteen at a time, for integer products in which one vector lane
// is one weight row: no horizontal sums, and one float multiply-add per row and block
// instead of eight. The layout (per group of sixteen rows, `sl_packed_group_bytes` each):
//   scales: the group's f16 scales, block-major (block i, rows 0..15), padded to 64 bytes;
//   values: for block i and 4-element step j (0..7), 64 bytes: rows 0..15 × elements
//           32i + 4j ..< 32i + 4j + 4, each stored as w + 128 (an unsigned byte).
// Rows past the matrix's end are zero weights with zero scales.
#include "simd.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GROUP 16
#define STEP_BYTES (GROUP * 4)
#define BLOCK_BYTES (GROUP * QK)

static int64_t scale_bytes(int64_t nb) { return (nb * GROUP * 2 + 63) / 64 * 64; }

int64_t sl_packed_group_bytes(int64_t k) {
    if (k <= 0 || k % QK != 0) return 0;
    const int64_t nb = k / QK;
    return scale_bytes(nb) + nb * BLOCK_BYTES;
}

int64_t sl_packed_bytes(int64_t rows, int64_t k) { return (rows + GROUP - 1) / GROUP * sl_packed_group_bytes(k); }

int sl_pack_q8_0(const void *w, int64_t rows, int64_t k, int64_t group_begin, int64_t group_end, void *out) {
    const int64_t group_bytes = sl_packed_group_bytes(k);
    if (group_bytes == 0) return -1;
    const int64_t nb = k / QK;
    for (int64_t g = group_begin; g < group_end; g++) {
        uint8_t *base = (uint8_t *)out + g * group_bytes;
        uint16_t *scales = (uint16_t *)base;
        uint8_t *values = base + scale_bytes(nb);
        memset(base, 0, (size_t)scale_bytes(nb));
        for (int r = 0; r < GROUP; r++) {
            const int64_t row = g * GROUP + r;
            const q8_0_t *blocks = row < rows ? (const q8_0_t *)w + row * nb : 0;
            for (int64_t i = 0; i < nb; i++) {
                scales[i * GROUP + r] = blocks ? blocks[i].d : 0;
                for (int j = 0; j < QK / 4; j++) {
                    uint8_t *target = values + i * BLOCK_BYTES + j * STEP_BYTES + r * 4;
                    for (int t = 0; t < 4; t++) target[t] = (uint8_t)((blocks ? blocks[i].qs[4 * j + t] : 0) + 128);
                }
            }
        }
    }
    return 0;
}

void sl_packed_row(const void *packed, int64_t k, int64_t row, float *out) {
    const int64_t nb = k / QK;
    const uint8_t *base = (const uint8_t *)packed + row / GROUP * sl_packed_group_bytes(k);
    const uint16_t *scales = (const uint16_t *)base;
    const uint8_t *values = base + scale_bytes(nb);
    const int r = (int)(row % GROUP);
    for (int64_t i = 0; i < nb; i++) {
        const float d = sl_f16_to_f32(scales[i * GROUP + r]);
        for (int e = 0; e < QK; e++) {
            out[i * QK + e] = (float)((int)values[i * BLOCK_BYTES + e / 4 * STEP_BYTES + r * 4 + e % 4] - 128) * d;
        }
    }
}

/// Four activation bytes (elements 4j ..< 4j + 4 of a block) as one 32-bit lane value.
static inline int32_t four(const q8_0_t *x, int j) {
    int32_t v;
    memcpy(&v, x->qs + 4 * j, 4);
    return v;
}

/// Outputs of one group × N activation rows. Every path computes, for each row and
/// activation row, the exact integer sum s_i of block i's 32 products, and then
/// acc = fmaf((float)s_i, d_w[i] · d_x[i], acc) for i in order from +0: the vector lanes are
/// rows, so each lane's operations are the scalar ones.
static void group_portable(const uint8_t *base, int64_t nb, int n_count, const q8_0_t *const *x, const float *const *xd,
                           float out[][GROUP]) {
    const uint16_t *scales = (const uint16_t *)base;
    const uint8_t *values = base + scale_bytes(nb);
    for (int n = 0; n < n_count; n++) {
        for (int r = 0; r < GROUP; r++) {
            float acc = 0;
            for (int64_t i = 0; i < nb; i++) {
                int32_t s = 0;
                for (int j = 0; j < QK / 4; j++)
                    for (int t = 0; t < 4; t++)
                        s += ((int)values[i * BLOCK_BYTES + j * STEP_BYTES + r * 4 + t] - 128) * x[n][i].qs[4 * j + t];
                acc = fmaf((float)s, sl_f16_to_f32(scales[i * GROUP + r]) * xd[n][i], acc);
            }
            out[n][r] = acc;
        }
    }
}

/// AVX2: each half of the group (eight rows) in one 256-bit vector; the sign trick
/// (|w| · ±a with maddubs, pairs added by madd) gives the exact sums.
#define SL_PACKED_AVX2(NAME, N)                                                                                 \
    __attribute__((target("avx2,fma,f16c")))                                                                   \
    static void NAME(const uint8_t *base, int64_t nb, const q8_0_t *const *x, const float *const *xd,         \
                     float out[][GROUP]) {                                                                     \
        const uint16_t *scales = (const uint16_t *)base;                                                       \
        const uint8_t *values = base + scale_bytes(nb);                                                        \
        const __m256i bias = _mm256_set1_epi8((char)0x80), ones = _mm256_set1_epi16(1);                        \
        for (int h = 0; h < 2; h++) {                                                                          \
            __m256 acc[N];                                                                                     \
            for (int n = 0; n < N; n++) acc[n] = _mm256_setzero_ps();                                          \
            for (int64_t i = 0; i < nb; i++) {                                                                 \
                const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(scales + i * GROUP + 8 * h))); \
                __m256i s[N];                                                                                  \
                for (int n = 0; n < N; n++) s[n] = _mm256_setzero_si256();                                     \
                for (int j = 0; j < QK / 4; j++) {                                                             \
                    const __m256i w = _mm256_xor_si256(                                                        \
                        _mm256_loadu_si256((const __m256i *)(values + i * BLOCK_BYTES + j * STEP_BYTES + 32 * h)), bias); \
                    const __m256i aw = _mm256_abs_epi8(w);                                                     \
                    for (int n = 0; n < N; n++) {                                                              \
                        const __m256i a = _mm256_sign_epi8(_mm256_set1_epi32(four(&x[n][i], j)), w);           \
                        s[n] = _mm256_add_epi32(s[n], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, a), ones));   \
                    }                                                                                          \
                }                                                                                              \
                for (int n = 0; n < N; n++)                                                                    \
                    acc[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[n]), _mm256_mul_ps(dw, _mm256_set1_ps(xd[n][i])), acc[n]); \
            }                                                                                                  \
            for (int n = 0; n < N; n++) _mm256_storeu_ps(out[n] + 8 * h, acc[n]);                             \
        }                                                                                                      \
    }
SL_PACKED_AVX2(group_avx2_4, 4)
SL_PACKED_AVX2(group_avx2_2, 2)
SL_PACKED_AVX2(group_avx2_1, 1)

/// AVX-512 VNNI: the whole group in one 512-bit vector; vpdpbusd multiplies the unsigned
/// stored bytes (w + 128) by the signed activation bytes, and each sum starts from
/// −128 · Σa (`offset`), so it is the same exact integer.
#define SL_VNNI512 "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni"
#define SL_PACKED_VNNI(NAME, N)                                                                                 \
    __attribute__((target(SL_VNNI512)))                                                                        \
    static void NAME(const uint8_t *base, int64_t nb, const q8_0_t *const *x, const float *const *xd,         \
                     const int32_t *const *offset, float out[][GROUP]) {                                       \
        const uint16_t *scales = (const uint16_t *)base;                                                       \
        const uint8_t *values = base + scale_bytes(nb);                                                        \
        __m512 acc[N];                                                                                         \
        for (int n = 0; n < N; n++) acc[n] = _mm512_setzero_ps();                                              \
        for (int64_t i = 0; i < nb; i++) {                                                                     \
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(scales + i * GROUP)));     \
            __m512i s[N], t[N];                                                                                \
            for (int n = 0; n < N; n++) { s[n] = _mm512_set1_epi32(offset[n][i]); t[n] = _mm512_setzero_si512(); } \
            const uint8_t *v = values + i * BLOCK_BYTES;                                                       \
            for (int j = 0; j < QK / 4; j += 2) {                                                              \
                const __m512i w0 = _mm512_loadu_si512(v + j * STEP_BYTES);                                     \
                const __m512i w1 = _mm512_loadu_si512(v + (j + 1) * STEP_BYTES);                               \
                for (int n = 0; n < N; n++) {                                                                  \
                    s[n] = _mm512_dpbusd_epi32(s[n], w0, _mm512_set1_epi32(four(&x[n][i], j)));                \
                    t[n] = _mm512_dpbusd_epi32(t[n], w1, _mm512_set1_epi32(four(&x[n][i], j + 1)));            \
                }                                                                                              \
            }                                                                                                  \
            for (int n = 0; n < N; n++)                                                                        \
                acc[n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s[n], t[n])),                     \
                                         _mm512_mul_ps(dw, _mm512_set1_ps(xd[n][i])), acc[n]);                 \
        }                                                                                                      \
        for (int n = 0; n < N; n++) _mm512_storeu_ps(out[n], acc[n]);                                          \
    }
SL_PACKED_VNNI(group_vnni_8, 8)
SL_PACKED_VNNI(group_vnni_4, 4)
SL_PACKED_VNNI(group_vnni_2, 2)
SL_PACKED_VNNI(group_vnni_1, 1)

/// −128 · Σ of each activation block's values (VNNI's correction for the unsigned bytes).
static void block_offsets(const q8_0_t *x, int64_t count, int32_t *out) {
    for (int64_t i = 0; i < count; i++) {
        int32_t sum = 0;
        for (int e = 0; e < QK; e++) sum += x[i].qs[e];
        out[i] = -128 * sum;
    }
}

int sl_matmul_packed(const void *packed, int64_t k, int64_t rows, int64_t row_begin, int64_t row_end, const void *xq,
                     int64_t batch, float *y, int64_t ldy) {
    const int64_t group_bytes = sl_packed_group_bytes(k);
    if (group_bytes == 0 || row_begin % GROUP != 0 || row_end > rows || row_begin > row_end) return -1;
    const int64_t nb = k / QK;
    const int isa = sl_isa_active();
    const q8_0_t *xb = xq;
    float *xd = malloc(sizeof(float) * (size_t)(batch * nb));
    int32_t *offsets = isa >= SL_ISA_AVX512_VNNI ? malloc(sizeof(int32_t) * (size_t)(batch * nb)) : 0;
    if (!xd || (isa >= SL_ISA_AVX512_VNNI && !offsets)) {
        free(xd);
        free(offsets);
        return -1;
    }
    for (int64_t i = 0; i < batch * nb; i++) xd[i] = sl_f16_to_f32(xb[i].d);
    if (offsets) block_offsets(xb, batch * nb, offsets);
    for (int64_t g = row_begin / GROUP; g * GROUP < row_end; g++) {
        const uint8_t *base = (const uint8_t *)packed + g * group_bytes;
        const int live = (int)(row_end - g * GROUP < GROUP ? row_end - g * GROUP : GROUP);
        for (int64_t b = 0; b < batch;) {
            const int64_t left = batch - b;
            const int width = isa == SL_ISA_PORTABLE ? (int)(left < 8 ? left : 8)
                              : left >= 8 && isa >= SL_ISA_AVX512_VNNI ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1;
            const q8_0_t *xs[8];
            const float *xds[8];
            const int32_t *offs[8];
            for (int n = 0; n < width; n++) {
                xs[n] = xb + (b + n) * nb;
                xds[n] = xd + (b + n) * nb;
                offs[n] = offsets ? offsets + (b + n) * nb : 0;
            }
            float out[8][GROUP];
            if (isa >= SL_ISA_AVX512_VNNI) {
                switch (width) {
                case 8: group_vnni_8(base, nb, xs, xds, offs, out); break;
                case 4: group_vnni_4(base, nb, xs, xds, offs, out); break;
                case 2: group_vnni_2(base, nb, xs, xds, offs, out); break;
                default: group_vnni_1(base, nb, xs, xds, offs, out); break;
                }
            } else if (isa >= SL_ISA_AVX2) {
                switch (width) {
                case 4: group_avx2_4(base, nb, xs, xds, out); break;
                case 2: group_avx2_2(base, nb, xs, xds, out); break;
                default: group_avx2_1(base, nb, xs, xds, out); break;
                }
            } else {
                group_portable(base, nb, width, xs, xds, out);
            }
            for (int n = 0; n < width; n++)
                for (int r = 0; r < live; r++) y[(b + n) * ldy + g * GROUP + r] = out[n][r];
            b += width;
        }
    }
    free(xd);
    free(offsets);
    return 0;
}
