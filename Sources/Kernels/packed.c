// Q8_0 and Q5_0 weight rows repacked sixteen at a time, for integer products in which one
// vector lane is one weight row: no horizontal sums, and one float multiply-add per row and
// block instead of eight. The layout, per group of sixteen rows (`sl_packed_group_bytes`):
//   scales: the group's f16 scales, block-major (block i, rows 0..15), padded to 64 bytes;
//   then per block i, for "step" j (0..7: elements 32i + 4j ..< 32i + 4j + 4) a 64-byte
//   vector whose 4-byte lane r holds row r's four values, as unsigned bytes q = w + bias:
//   Q8_0 (bias 128): 8 × 64 bytes, the vectors of steps 0..7;
//   Q5_0 (bias 16, q < 32; 22 bytes per row and block, as in the file):
//           4 × 64 bytes of nibbles, byte b of vector j (0..3) holding step j's low four
//           bits in its low nibble and step j + 4's in its high nibble; then 8 × 8 bytes,
//           bit b of word j being bit 4 of step j's byte b.
// Rows past the matrix's end are zero weights with zero scales.
#include "simd.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GROUP 16
#define STEP_BYTES (GROUP * 4)
#define STEPS (QK / 4)

typedef struct { int64_t block_bytes; int bias; } layout;

static int layout_of(int type, layout *out) {
    switch (type) {
    case SL_TYPE_Q8_0: *out = (layout){ STEPS * STEP_BYTES, 128 }; return 1;
    case SL_TYPE_Q5_0: *out = (layout){ STEPS / 2 * STEP_BYTES + STEPS * 8, 16 }; return 1;
    default: return 0;
    }
}

static int64_t scale_bytes(int64_t nb) { return (nb * GROUP * 2 + 63) / 64 * 64; }

int64_t sl_packed_group_bytes(int type, int64_t k) {
    layout l;
    if (!layout_of(type, &l) || k <= 0 || k % QK != 0) return 0;
    const int64_t nb = k / QK;
    return scale_bytes(nb) + nb * l.block_bytes;
}

int64_t sl_packed_bytes(int type, int64_t rows, int64_t k) {
    return (rows + GROUP - 1) / GROUP * sl_packed_group_bytes(type, k);
}

/// Row `row`'s 32 stored values q (w + bias) and scale of block i of the file's encoding.
static uint16_t source_block(int type, const void *w, int64_t nb, int64_t row, int64_t i, uint8_t q[QK]) {
    if (type == SL_TYPE_Q8_0) {
        const q8_0_t *b = (const q8_0_t *)w + row * nb + i;
        for (int e = 0; e < QK; e++) q[e] = (uint8_t)(b->qs[e] + 128);
        return b->d;
    }
    const uint8_t *b = (const uint8_t *)w + (row * nb + i) * 22;  // d, qh[4], qs[16]
    uint32_t qh;
    memcpy(&qh, b + 2, 4);
    for (int e = 0; e < QK / 2; e++) {
        q[e] = (uint8_t)((b[6 + e] & 0x0F) | (((qh >> e) & 1) << 4));
        q[e + QK / 2] = (uint8_t)((b[6 + e] >> 4) | (((qh >> (e + QK / 2)) & 1) << 4));
    }
    uint16_t d;
    memcpy(&d, b, 2);
    return d;
}

/// Where row r's value of step j, lane byte t, lives in a packed block: sets it (q) there.
static void store_value(int type, uint8_t *block, int r, int j, int t, uint8_t q) {
    const int b = r * 4 + t;
    if (type == SL_TYPE_Q8_0) {
        block[j * STEP_BYTES + b] = q;
        return;
    }
    block[(j % 4) * STEP_BYTES + b] |= (uint8_t)((q & 0x0F) << (j >= 4 ? 4 : 0));
    block[4 * STEP_BYTES + j * 8 + b / 8] |= (uint8_t)((q >> 4) << (b % 8));
}

/// The stored value q of row r, step j, lane byte t of a packed block.
static uint8_t load_value(int type, const uint8_t *block, int r, int j, int t) {
    const int b = r * 4 + t;
    if (type == SL_TYPE_Q8_0) return block[j * STEP_BYTES + b];
    const uint8_t nibble = (uint8_t)((block[(j % 4) * STEP_BYTES + b] >> (j >= 4 ? 4 : 0)) & 0x0F);
    return (uint8_t)(nibble | (((block[4 * STEP_BYTES + j * 8 + b / 8] >> (b % 8)) & 1) << 4));
}

int sl_pack(int type, const void *w, int64_t rows, int64_t k, int64_t group_begin, int64_t group_end, void *out) {
    layout l;
    const int64_t group_bytes = sl_packed_group_bytes(type, k);
    if (group_bytes == 0 || !layout_of(type, &l)) return -1;
    const int64_t nb = k / QK;
    for (int64_t g = group_begin; g < group_end; g++) {
        uint8_t *base = (uint8_t *)out + g * group_bytes;
        uint16_t *scales = (uint16_t *)base;
        uint8_t *values = base + scale_bytes(nb);
        memset(base, 0, (size_t)group_bytes);
        for (int r = 0; r < GROUP; r++) {
            const int64_t row = g * GROUP + r;
            for (int64_t i = 0; i < nb; i++) {
                uint8_t q[QK];
                if (row < rows) {
                    scales[i * GROUP + r] = source_block(type, w, nb, row, i, q);
                } else {
                    memset(q, l.bias, QK);  // a zero weight
                }
                for (int j = 0; j < STEPS; j++)
                    for (int t = 0; t < 4; t++) store_value(type, values + i * l.block_bytes, r, j, t, q[4 * j + t]);
            }
        }
    }
    return 0;
}

void sl_packed_row(int type, const void *packed, int64_t k, int64_t row, float *out) {
    layout l;
    if (!layout_of(type, &l)) return;
    const int64_t nb = k / QK;
    const uint8_t *base = (const uint8_t *)packed + row / GROUP * sl_packed_group_bytes(type, k);
    const uint16_t *scales = (const uint16_t *)base;
    const uint8_t *values = base + scale_bytes(nb);
    const int r = (int)(row % GROUP);
    // load_value's reads, unrolled for one row (dense products unpack every row of a matrix).
    for (int64_t i = 0; i < nb; i++) {
        const float d = sl_f16_to_f32(scales[i * GROUP + r]);
        const uint8_t *block = values + i * l.block_bytes;
        float *y = out + i * QK;
        for (int j = 0; j < STEPS; j++) {
            if (type == SL_TYPE_Q8_0) {
                for (int t = 0; t < 4; t++) y[4 * j + t] = (float)((int)block[j * STEP_BYTES + r * 4 + t] - 128) * d;
                continue;
            }
            const uint8_t *nibbles = block + (j % 4) * STEP_BYTES + r * 4;
            const int shift = j >= 4 ? 4 : 0;
            const int high = block[4 * STEP_BYTES + j * 8 + r / 2] >> (r % 2 * 4);
            for (int t = 0; t < 4; t++)
                y[4 * j + t] = (float)((((nibbles[t] >> shift) & 0x0F) | (((high >> t) & 1) << 4)) - 16) * d;
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
static void group_portable(int type, const uint8_t *base, int64_t nb, int n_count, const q8_0_t *const *x,
                           const float *const *xd, float out[][GROUP]) {
    layout l;
    layout_of(type, &l);
    const uint16_t *scales = (const uint16_t *)base;
    const uint8_t *values = base + scale_bytes(nb);
    for (int n = 0; n < n_count; n++) {
        for (int r = 0; r < GROUP; r++) {
            float acc = 0;
            for (int64_t i = 0; i < nb; i++) {
                int32_t s = 0;
                for (int j = 0; j < STEPS; j++)
                    for (int t = 0; t < 4; t++)
                        s += ((int)load_value(type, values + i * l.block_bytes, r, j, t) - l.bias) * x[n][i].qs[4 * j + t];
                acc = fmaf((float)s, sl_f16_to_f32(scales[i * GROUP + r]) * xd[n][i], acc);
            }
            out[n][r] = acc;
        }
    }
}

/// Bit 4 of 32 stored Q5_0 values (32 bits at `bits`) as bytes of 0 or 16.
__attribute__((target("avx2")))
static inline __m256i q5_high_avx2(const uint8_t *bits) {
    uint32_t word;
    memcpy(&word, bits, 4);
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int)word), _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                                       2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
    const __m256i select = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select), _mm256_set1_epi8(0x10));
}

/// AVX2: each half of the group (eight rows) in one 256-bit vector. Q8_0: the sign trick
/// (|w| · ±a with maddubs, pairs added by madd) gives the exact sums. Q5_0: the stored values
/// q = w + 16 are below 32, so maddubs (q unsigned, the activation signed) cannot saturate,
/// and each sum starts from −16 · Σa (`offset`), so it is the same exact integer.
#define SL_PACKED_AVX2(NAME, N, Q5)                                                                             \
    __attribute__((target("avx2,fma,f16c")))                                                                   \
    static void NAME(const uint8_t *base, int64_t nb, const q8_0_t *const *x, const float *const *xd,         \
                     const int32_t *const *offset, float out[][GROUP]) {                                       \
        const uint16_t *scales = (const uint16_t *)base;                                                       \
        const uint8_t *values = base + scale_bytes(nb);                                                        \
        const int64_t block_bytes = Q5 ? STEPS / 2 * STEP_BYTES + STEPS * 8 : STEPS * STEP_BYTES;              \
        const __m256i bias = _mm256_set1_epi8((char)0x80), low = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1); \
        for (int h = 0; h < 2; h++) {                                                                          \
            __m256 acc[N];                                                                                     \
            for (int n = 0; n < N; n++) acc[n] = _mm256_setzero_ps();                                          \
            for (int64_t i = 0; i < nb; i++) {                                                                 \
                const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(scales + i * GROUP + 8 * h))); \
                const uint8_t *v = values + i * block_bytes;                                                   \
                __m256i s[N];                                                                                  \
                for (int n = 0; n < N; n++) s[n] = Q5 ? _mm256_set1_epi32(offset[n][i]) : _mm256_setzero_si256(); \
                for (int j = 0; j < (Q5 ? STEPS / 2 : STEPS); j++) {                                           \
                    const __m256i raw = _mm256_loadu_si256((const __m256i *)(v + j * STEP_BYTES + 32 * h));    \
                    if (Q5) {                                                                                  \
                        const __m256i q0 = _mm256_or_si256(_mm256_and_si256(raw, low),                         \
                                                           q5_high_avx2(v + 4 * STEP_BYTES + j * 8 + 4 * h));  \
                        const __m256i q1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), low),   \
                                                           q5_high_avx2(v + 4 * STEP_BYTES + (j + 4) * 8 + 4 * h)); \
                        for (int n = 0; n < N; n++) {                                                          \
                            const __m256i p0 = _mm256_maddubs_epi16(q0, _mm256_set1_epi32(four(&x[n][i], j))); \
                            const __m256i p1 = _mm256_maddubs_epi16(q1, _mm256_set1_epi32(four(&x[n][i], j + 4))); \
                            s[n] = _mm256_add_epi32(s[n], _mm256_madd_epi16(_mm256_add_epi16(p0, p1), ones));  \
                        }                                                                                      \
                    } else {                                                                                   \
                        const __m256i w = _mm256_xor_si256(raw, bias);                                         \
                        const __m256i aw = _mm256_abs_epi8(w);                                                 \
                        for (int n = 0; n < N; n++) {                                                          \
                            const __m256i a = _mm256_sign_epi8(_mm256_set1_epi32(four(&x[n][i], j)), w);       \
                            s[n] = _mm256_add_epi32(s[n], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, a), ones)); \
                        }                                                                                      \
                    }                                                                                          \
                }                                                                                              \
                for (int n = 0; n < N; n++)                                                                    \
                    acc[n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[n]), _mm256_mul_ps(dw, _mm256_set1_ps(xd[n][i])), acc[n]); \
            }                                                                                                  \
            for (int n = 0; n < N; n++) _mm256_storeu_ps(out[n] + 8 * h, acc[n]);                             \
        }                                                                                                      \
    }
SL_PACKED_AVX2(q8_avx2_4, 4, 0)
SL_PACKED_AVX2(q8_avx2_2, 2, 0)
SL_PACKED_AVX2(q8_avx2_1, 1, 0)
SL_PACKED_AVX2(q5_avx2_4, 4, 1)
SL_PACKED_AVX2(q5_avx2_2, 2, 1)
SL_PACKED_AVX2(q5_avx2_1, 1, 1)

/// AVX-512 VNNI: the whole group in one 512-bit vector; vpdpbusd multiplies the unsigned
/// stored bytes (w + bias) by the signed activation bytes, and each sum starts from
/// −bias · Σa (`offset`), so it is the same exact integer.
#define SL_VNNI512 "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni"
#define SL_PACKED_VNNI(NAME, N, Q5)                                                                             \
    __attribute__((target(SL_VNNI512)))                                                                        \
    static void NAME(const uint8_t *base, int64_t nb, const q8_0_t *const *x, const float *const *xd,         \
                     const int32_t *const *offset, float out[][GROUP]) {                                       \
        const uint16_t *scales = (const uint16_t *)base;                                                       \
        const uint8_t *values = base + scale_bytes(nb);                                                        \
        const int64_t block_bytes = Q5 ? STEPS / 2 * STEP_BYTES + STEPS * 8 : STEPS * STEP_BYTES;              \
        const __m512i low = _mm512_set1_epi8(0x0F), sixteen = _mm512_set1_epi8(0x10);                          \
        __m512 acc[N];                                                                                         \
        for (int n = 0; n < N; n++) acc[n] = _mm512_setzero_ps();                                              \
        for (int64_t i = 0; i < nb; i++) {                                                                     \
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(scales + i * GROUP)));     \
            __m512i s[N], t[N];                                                                                \
            for (int n = 0; n < N; n++) { s[n] = _mm512_set1_epi32(offset[n][i]); t[n] = _mm512_setzero_si512(); } \
            const uint8_t *v = values + i * block_bytes;                                                       \
            for (int j = 0; j < STEPS / 2; j++) {                                                              \
                __m512i w0, w1;                                                                                \
                int j0, j1;                                                                                    \
                if (Q5) {                                                                                      \
                    uint64_t h0, h1;                                                                           \
                    memcpy(&h0, v + 4 * STEP_BYTES + j * 8, 8);                                                \
                    memcpy(&h1, v + 4 * STEP_BYTES + (j + 4) * 8, 8);                                          \
                    const __m512i raw = _mm512_loadu_si512(v + j * STEP_BYTES);                                \
                    w0 = _mm512_and_si512(raw, low);                                                           \
                    w1 = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low);                                     \
                    w0 = _mm512_mask_add_epi8(w0, _cvtu64_mask64(h0), w0, sixteen);                            \
                    w1 = _mm512_mask_add_epi8(w1, _cvtu64_mask64(h1), w1, sixteen);                            \
                    j0 = j; j1 = j + 4;                                                                        \
                } else {                                                                                       \
                    w0 = _mm512_loadu_si512(v + 2 * j * STEP_BYTES);                                           \
                    w1 = _mm512_loadu_si512(v + (2 * j + 1) * STEP_BYTES);                                     \
                    j0 = 2 * j; j1 = 2 * j + 1;                                                                \
                }                                                                                              \
                for (int n = 0; n < N; n++) {                                                                  \
                    s[n] = _mm512_dpbusd_epi32(s[n], w0, _mm512_set1_epi32(four(&x[n][i], j0)));               \
                    t[n] = _mm512_dpbusd_epi32(t[n], w1, _mm512_set1_epi32(four(&x[n][i], j1)));               \
                }                                                                                              \
            }                                                                                                  \
            for (int n = 0; n < N; n++)                                                                        \
                acc[n] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s[n], t[n])),                     \
                                         _mm512_mul_ps(dw, _mm512_set1_ps(xd[n][i])), acc[n]);                 \
        }                                                                                                      \
        for (int n = 0; n < N; n++) _mm512_storeu_ps(out[n], acc[n]);                                          \
    }
SL_PACKED_VNNI(q8_vnni_8, 8, 0)
SL_PACKED_VNNI(q8_vnni_4, 4, 0)
SL_PACKED_VNNI(q8_vnni_2, 2, 0)
SL_PACKED_VNNI(q8_vnni_1, 1, 0)
SL_PACKED_VNNI(q5_vnni_8, 8, 1)
SL_PACKED_VNNI(q5_vnni_4, 4, 1)
SL_PACKED_VNNI(q5_vnni_2, 2, 1)
SL_PACKED_VNNI(q5_vnni_1, 1, 1)

typedef void (*group_kernel)(const uint8_t *, int64_t, const q8_0_t *const *, const float *const *,
                             const int32_t *const *, float[][GROUP]);

/// The kernel for `width` activation rows (1, 2, 4 or 8) on the active path, or 0 for the
/// portable path.
static group_kernel kernel_for(int type, int isa, int width) {
    static const group_kernel vnni[2][4] = { { q8_vnni_1, q8_vnni_2, q8_vnni_4, q8_vnni_8 },
                                             { q5_vnni_1, q5_vnni_2, q5_vnni_4, q5_vnni_8 } };
    static const group_kernel avx2[2][3] = { { q8_avx2_1, q8_avx2_2, q8_avx2_4 }, { q5_avx2_1, q5_avx2_2, q5_avx2_4 } };
    const int t = type == SL_TYPE_Q5_0, w = width == 8 ? 3 : width == 4 ? 2 : width == 2 ? 1 : 0;
    if (isa >= SL_ISA_AVX512_VNNI) return vnni[t][w];
    if (isa >= SL_ISA_AVX2) return avx2[t][w < 3 ? w : 2];
    return 0;
}

/// The per-block terms of sl_matmul_packed with F16C and AVX2 (exact conversions and
/// integer sums: the portable loop's values).
__attribute__((target("avx2,f16c")))
static void block_terms_avx2(const q8_0_t *x, int64_t count, int bias, float *xd, int32_t *offsets) {
    const __m256i ones = _mm256_set1_epi8(1), pairs = _mm256_set1_epi16(1);
    for (int64_t i = 0; i < count; i++) {
        xd[i] = _cvtsh_ss(x[i].d);
        // Σ of the 32 signed bytes: 1 · a in pairs (maddubs), then in fours (madd).
        const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(ones, _mm256_loadu_si256((const __m256i *)x[i].qs)), pairs);
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
        offsets[i] = -bias * _mm_cvtsi128_si32(s);
    }
}

int sl_packed_activation_terms(int type, const void *xq, int64_t blocks, float *xd, int32_t *offsets) {
    layout l;
    if (!layout_of(type, &l)) return -1;
    const q8_0_t *xb = xq;
    if (sl_isa_active() >= SL_ISA_AVX2) {
        block_terms_avx2(xb, blocks, l.bias, xd, offsets);
        return 0;
    }
    for (int64_t i = 0; i < blocks; i++) {
        xd[i] = sl_f16_to_f32(xb[i].d);
        int32_t sum = 0;
        for (int e = 0; e < QK; e++) sum += xb[i].qs[e];
        offsets[i] = -l.bias * sum;
    }
    return 0;
}

int sl_matmul_packed(int type, const void *packed, int64_t k, int64_t rows, int64_t row_begin, int64_t row_end,
                     const void *xq, const float *xd, const int32_t *offsets, int64_t batch, float *y, int64_t ldy) {
    const int64_t group_bytes = sl_packed_group_bytes(type, k);
    if (group_bytes == 0 || row_begin % GROUP != 0 || row_end > rows || row_begin > row_end) return -1;
    const int64_t nb = k / QK;
    const int isa = sl_isa_active();
    const q8_0_t *xb = xq;
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
                offs[n] = offsets + (b + n) * nb;
            }
            float out[8][GROUP];
            const group_kernel kernel = kernel_for(type, isa, width);
            if (kernel) kernel(base, nb, xs, xds, offs, out);
            else group_portable(type, base, nb, width, xs, xds, out);
            for (int n = 0; n < width; n++)
                for (int r = 0; r < live; r++) y[(b + n) * ldy + g * GROUP + r] = out[n][r];
            b += width;
        }
    }
    return 0;
}
