// Integer dot products of quantized weight rows with quantized activations (Q8_0 / Q8_K),
// the scheme llama.cpp's CPU backend uses. AVX2 kernels (the sign trick with maddubs) are
// chosen at run time, with portable fallbacks.
#include "simd.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QK_K 256


typedef struct { uint16_t d; uint8_t qs[QK / 2]; } q4_0_t;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[QK / 2]; } q5_0_t;
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } q4_K_t;
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } q5_K_t;
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } q6_K_t;
/// Activations for K-quant dot products: a float scale, 256 int8 values, sums of each 16.
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } q8_K_t;

static int uses_q8_K(int type) { return type == SL_TYPE_Q4_K || type == SL_TYPE_Q5_K || type == SL_TYPE_Q6_K; }
static int uses_q8_0(int type) { return type == SL_TYPE_Q4_0 || type == SL_TYPE_Q5_0 || type == SL_TYPE_Q8_0; }

int64_t sl_activation_row_bytes(int weight_type, int64_t k) {
    if (uses_q8_0(weight_type)) return k / QK * (int64_t)sizeof(q8_0_t);
    if (uses_q8_K(weight_type)) return k / QK_K * (int64_t)sizeof(q8_K_t);
    return 0;
}

/// As ggml's x86 quantize_row_q8_0: d = amax/127 stored as f16, q = round-half-even(x·127/amax).
static void quantize_q8_0(const float *x, q8_0_t *y, int64_t k) {
    for (int64_t i = 0; i < k / QK; i++) {
        float amax = 0;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[i * QK + j]));
        y[i].d = sl_f32_to_f16(amax / 127.f);
        const float id = amax != 0 ? 127.f / amax : 0.f;
        for (int j = 0; j < QK; j++) y[i].qs[j] = (int8_t)nearbyintf(x[i * QK + j] * id);
    }
}

static int has_avx2(void);

/// quantize_q8_0, eight values per instruction: the same maximum (NaN ignored as fmaxf
/// does), the same scale expressions and the same round-half-even of the same products.
__attribute__((target("avx2")))
static void quantize_q8_0_avx2(const float *x, q8_0_t *y, int64_t k) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < k / QK; i++) {
        __m256 v[4];
        __m256 amax8 = _mm256_setzero_ps();
        for (int j = 0; j < 4; j++) {
            v[j] = _mm256_loadu_ps(x + i * QK + 8 * j);
            amax8 = _mm256_max_ps(_mm256_andnot_ps(sign, v[j]), amax8);  // a NaN operand yields amax8
        }
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax8), _mm256_extractf128_ps(amax8, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float amax = _mm_cvtss_f32(m);
        y[i].d = sl_f32_to_f16(amax / 127.f);
        const __m256 id = _mm256_set1_ps(amax != 0 ? 127.f / amax : 0.f);
        __m256i q[4];
        for (int j = 0; j < 4; j++) {
            q[j] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[j], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        }
        // |q| ≤ 127: the saturating packs are exact; the permutation undoes their lane order.
        const __m256i packed = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)y[i].qs, _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    }
}

/// As ggml's quantize_row_q8_K_ref: the signed extreme maps to -127.
static void quantize_q8_K(const float *x, q8_K_t *y, int64_t k) {
    for (int64_t i = 0; i < k / QK_K; i++) {
        const float *xb = x + i * QK_K;
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; j++) {
            const float ax = fabsf(xb[j]);
            if (ax > amax) { amax = ax; max = xb[j]; }
        }
        if (amax == 0) {
            memset(&y[i], 0, sizeof(q8_K_t));
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            const int v = (int)nearbyintf(iscale * xb[j]);
            y[i].qs[j] = (int8_t)(v > 127 ? 127 : v);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[j * 16 + l];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

void sl_quantize_activations(int weight_type, const float *x, int64_t batch, int64_t k, void *out) {
    const int64_t row_bytes = sl_activation_row_bytes(weight_type, k);
    for (int64_t b = 0; b < batch; b++) {
        char *row = (char *)out + b * row_bytes;
        if (uses_q8_0(weight_type)) {
            if (has_avx2()) quantize_q8_0_avx2(x + b * k, (q8_0_t *)row, k);
            else quantize_q8_0(x + b * k, (q8_0_t *)row, k);
        }
        else if (uses_q8_K(weight_type)) quantize_q8_K(x + b * k, (q8_K_t *)row, k);
    }
}

static inline void scale_min(int j, const uint8_t *q, int *scale, int *min) {
    if (j < 4) {
        *scale = q[j] & 63;
        *min = q[j + 4] & 63;
    } else {
        *scale = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/// A weight row unpacked once so that several activation rows can be multiplied with it:
/// int8 values plus the scales of each group, as the fused kernels above use them.
typedef struct {
    int8_t *v;        // [k]
    float *dw;        // Q8_0 family: [k/32] block scales
    int16_t *gscale;  // K family: [k/16] integer scale of each 16-element group
    int16_t *gmin;    // K family: [k/16] integer min of each 16-element group
    float *sd, *smin; // K family: [k/256] super-block scale and min scale
} unpacked_row;

/// Block i of a Q4_0 / Q5_0 row as 32 signed bytes (nibbles, plus for Q5_0 the fifth bit
/// spread from the 32-bit `qh` to one byte per value); its scale goes to *d.
__attribute__((target("avx2")))
static inline __m256i q4_q5_0_block_avx2(int type, const void *row, int64_t i, uint16_t *d) {
    const uint8_t *qs;
    uint32_t qh = 0;
    if (type == SL_TYPE_Q5_0) {
        const q5_0_t *b = (const q5_0_t *)row + i;
        qs = b->qs; *d = b->d;
        memcpy(&qh, b->qh, 4);
    } else {
        const q4_0_t *b = (const q4_0_t *)row + i;
        qs = b->qs; *d = b->d;
    }
    const __m128i packed = _mm_loadu_si128((const __m128i *)qs);
    // bytes 0..15: low nibbles (values 0..15), bytes 16..31: high nibbles (values 16..31)
    const __m256i nibbles = _mm256_and_si256(
        _mm256_inserti128_si256(_mm256_castsi128_si256(packed), _mm_srli_epi16(packed, 4), 1), _mm256_set1_epi8(0x0F));
    if (type != SL_TYPE_Q5_0) return _mm256_sub_epi8(nibbles, _mm256_set1_epi8(8));
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit_of_byte = _mm256_set1_epi64x(0x8040201008040201LL);
    __m256i bits = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), spread);
    bits = _mm256_cmpeq_epi8(_mm256_and_si256(bits, bit_of_byte), bit_of_byte);
    return _mm256_sub_epi8(_mm256_or_si256(nibbles, _mm256_and_si256(bits, _mm256_set1_epi8(0x10))), _mm256_set1_epi8(16));
}

/// AVX2 unpacking of Q4_0 / Q5_0 rows into int8 values and float block scales (converted by
/// F16C: exact, so sl_f16_to_f32's values).
__attribute__((target("avx2,f16c")))
static void unpack_q4_q5_0_avx2(int type, const void *row, int64_t nb, unpacked_row *u) {
    for (int64_t i = 0; i < nb; i++) {
        uint16_t d;
        _mm256_storeu_si256((__m256i *)(u->v + i * QK), q4_q5_0_block_avx2(type, row, i, &d));
        u->dw[i] = _cvtsh_ss(d);
    }
}

/// Values 64j..64j+63 of a Q4_K / Q5_K super-block (0..15, or 0..31 with the fifth bits of
/// `high`, the block's 32 qh bytes): the first 32 in *lo, the next 32 in *hi.
__attribute__((target("avx2")))
static inline void q4_q5_K_values_avx2(const uint8_t *qs, const __m256i *high, int j, __m256i *lo, __m256i *hi) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    const __m256i packed = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
    *lo = _mm256_and_si256(packed, low);
    *hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low);
    if (high) {
        const __m256i m0 = _mm256_set1_epi8((char)(1 << (2 * j))), m1 = _mm256_set1_epi8((char)(1 << (2 * j + 1)));
        const __m256i sixteen = _mm256_set1_epi8(0x10);
        *lo = _mm256_or_si256(*lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(*high, m0), m0), sixteen));
        *hi = _mm256_or_si256(*hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(*high, m1), m1), sixteen));
    }
}

/// AVX2 unpacking of Q4_K / Q5_K / Q6_K super-blocks (256 values): the same values and
/// group scales as the portable code below, 32 values per instruction.
__attribute__((target("avx2,f16c")))
static void unpack_k_avx2(int type, const void *row, int64_t nb, unpacked_row *u) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; i++) {
        int8_t *v = u->v + i * QK_K;
        if (type == SL_TYPE_Q6_K) {
            const q6_K_t *w = (const q6_K_t *)row + i;
            u->sd[i] = _cvtsh_ss(w->d); u->smin[i] = 0;
            for (int n = 0; n < 2; n++) {
                const __m256i a = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * n));
                const __m256i b = _mm256_loadu_si256((const __m256i *)(w->ql + 64 * n + 32));
                const __m256i h = _mm256_loadu_si256((const __m256i *)(w->qh + 32 * n));
                const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(0x03)), 4);
                const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(0x0C)), 2);
                const __m256i h2 = _mm256_and_si256(h, _mm256_set1_epi8(0x30));
                const __m256i h3 = _mm256_srli_epi16(_mm256_and_si256(h, _mm256_set1_epi8((char)0xC0)), 2);
                const __m256i bias = _mm256_set1_epi8(32);
                int8_t *o = v + 128 * n;
                _mm256_storeu_si256((__m256i *)o, _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(a, low), h0), bias));
                _mm256_storeu_si256((__m256i *)(o + 32), _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(b, low), h1), bias));
                _mm256_storeu_si256((__m256i *)(o + 64), _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), low), h2), bias));
                _mm256_storeu_si256((__m256i *)(o + 96), _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), low), h3), bias));
                for (int g = 0; g < 8; g++) { u->gscale[i * 16 + 8 * n + g] = w->scales[8 * n + g]; u->gmin[i * 16 + 8 * n + g] = 0; }
            }
            continue;
        }
        const uint8_t *scales, *qs, *qh = 0;
        if (type == SL_TYPE_Q4_K) {
            const q4_K_t *w = (const q4_K_t *)row + i;
            u->sd[i] = _cvtsh_ss(w->d); u->smin[i] = _cvtsh_ss(w->dmin);
            scales = w->scales; qs = w->qs;
        } else {
            const q5_K_t *w = (const q5_K_t *)row + i;
            u->sd[i] = _cvtsh_ss(w->d); u->smin[i] = _cvtsh_ss(w->dmin);
            scales = w->scales; qs = w->qs; qh = w->qh;
        }
        const __m256i high = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
        for (int j = 0; j < QK_K / 64; j++) {
            __m256i lo, hi;
            q4_q5_K_values_avx2(qs, qh ? &high : 0, j, &lo, &hi);
            _mm256_storeu_si256((__m256i *)(v + 64 * j), lo);
            _mm256_storeu_si256((__m256i *)(v + 64 * j + 32), hi);
            int sc0, m0, sc1, m1;
            scale_min(2 * j, scales, &sc0, &m0);
            scale_min(2 * j + 1, scales, &sc1, &m1);
            int16_t *gs = u->gscale + i * 16 + 4 * j, *gm = u->gmin + i * 16 + 4 * j;
            gs[0] = gs[1] = (int16_t)sc0; gs[2] = gs[3] = (int16_t)sc1;
            gm[0] = gm[1] = (int16_t)m0; gm[2] = gm[3] = (int16_t)m1;
        }
    }
}

static int has_avx2(void) { return sl_isa_at_least(SL_ISA_AVX2); }

static void unpack_row(int type, const void *row, int64_t k, unpacked_row *u) {
    if ((type == SL_TYPE_Q5_0 || type == SL_TYPE_Q4_0) && has_avx2()) {
        unpack_q4_q5_0_avx2(type, row, k / QK, u);
        return;
    }
    if ((type == SL_TYPE_Q4_K || type == SL_TYPE_Q5_K || type == SL_TYPE_Q6_K) && has_avx2()) {
        unpack_k_avx2(type, row, k / QK_K, u);
        return;
    }
    switch (type) {
    case SL_TYPE_Q8_0: {
        const q8_0_t *w = row;
        for (int64_t i = 0; i < k / QK; i++) {
            u->dw[i] = sl_f16_to_f32(w[i].d);
            memcpy(u->v + i * QK, w[i].qs, QK);
        }
        break;
    }
    case SL_TYPE_Q4_0: {
        const q4_0_t *w = row;
        for (int64_t i = 0; i < k / QK; i++) {
            u->dw[i] = sl_f16_to_f32(w[i].d);
            for (int j = 0; j < QK / 2; j++) {
                u->v[i * QK + j] = (int8_t)((w[i].qs[j] & 0x0F) - 8);
                u->v[i * QK + j + QK / 2] = (int8_t)((w[i].qs[j] >> 4) - 8);
            }
        }
        break;
    }
    case SL_TYPE_Q5_0: {
        const q5_0_t *w = row;
        for (int64_t i = 0; i < k / QK; i++) {
            u->dw[i] = sl_f16_to_f32(w[i].d);
            uint32_t qh;
            memcpy(&qh, w[i].qh, 4);
            for (int j = 0; j < QK / 2; j++) {
                u->v[i * QK + j] = (int8_t)(((w[i].qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10)) - 16);
                u->v[i * QK + j + QK / 2] = (int8_t)(((w[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16);
            }
        }
        break;
    }
    case SL_TYPE_Q4_K:
    case SL_TYPE_Q5_K: {
        for (int64_t i = 0; i < k / QK_K; i++) {
            const uint8_t *scales, *qs, *qh = 0;
            if (type == SL_TYPE_Q4_K) {
                const q4_K_t *w = (const q4_K_t *)row + i;
                u->sd[i] = sl_f16_to_f32(w->d); u->smin[i] = sl_f16_to_f32(w->dmin);
                scales = w->scales; qs = w->qs;
            } else {
                const q5_K_t *w = (const q5_K_t *)row + i;
                u->sd[i] = sl_f16_to_f32(w->d); u->smin[i] = sl_f16_to_f32(w->dmin);
                scales = w->scales; qs = w->qs; qh = w->qh;
            }
            for (int j = 0; j < QK_K / 64; j++) {
                int sc0, m0, sc1, m1;
                scale_min(2 * j, scales, &sc0, &m0);
                scale_min(2 * j + 1, scales, &sc1, &m1);
                int8_t *v = u->v + i * QK_K + 64 * j;
                for (int l = 0; l < 32; l++) {
                    v[l] = (int8_t)((qs[32 * j + l] & 0x0F) + (qh ? (((qh[l] >> (2 * j)) & 1) << 4) : 0));
                    v[l + 32] = (int8_t)((qs[32 * j + l] >> 4) + (qh ? (((qh[l] >> (2 * j + 1)) & 1) << 4) : 0));
                }
                int16_t *gs = u->gscale + i * 16 + 4 * j, *gm = u->gmin + i * 16 + 4 * j;
                gs[0] = gs[1] = (int16_t)sc0; gs[2] = gs[3] = (int16_t)sc1;
                gm[0] = gm[1] = (int16_t)m0; gm[2] = gm[3] = (int16_t)m1;
            }
        }
        break;
    }
    case SL_TYPE_Q6_K: {
        for (int64_t i = 0; i < k / QK_K; i++) {
            const q6_K_t *w = (const q6_K_t *)row + i;
            u->sd[i] = sl_f16_to_f32(w->d); u->smin[i] = 0;
            for (int n = 0; n < 2; n++) {
                const uint8_t *ql = w->ql + 64 * n, *qh = w->qh + 32 * n;
                int8_t *v = u->v + i * QK_K + 128 * n;
                for (int l = 0; l < 32; l++) {
                    v[l] = (int8_t)(((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32);
                    v[l + 32] = (int8_t)(((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32);
                    v[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                    v[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
                }
                // 16-element groups in order: (l<16, l>=16) for each of the four quarters.
                for (int g = 0; g < 8; g++) {
                    u->gscale[i * 16 + 8 * n + g] = w->scales[8 * n + (g % 2) + 2 * (g / 2)];
                    u->gmin[i * 16 + 8 * n + g] = 0;
                }
            }
        }
        break;
    }
    }
}


/// Sum of the products of 32 signed bytes, as 8 int32 lanes (lane i: bytes 4i..4i+3).
__attribute__((target("avx2")))
static inline __m256i mul_sum_i8_avx2(__m256i a, __m256i b) {
    const __m256i ax = _mm256_sign_epi8(a, a);       // |a| (unsigned)
    const __m256i sy = _mm256_sign_epi8(b, a);       // b with a's sign
    const __m256i dot16 = _mm256_maddubs_epi16(ax, sy);
    return _mm256_madd_epi16(dot16, _mm256_set1_epi16(1));
}

__attribute__((target("avx2")))
static inline int hsum_i32_avx2(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/// Q8_0-family row · Q8_0 activations; `xd` holds the activation block scales as floats.
__attribute__((target("avx2,fma")))
static float dot_unpacked_q8_0_avx2(const unpacked_row *u, const q8_0_t *x, const float *xd, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i w = _mm256_loadu_si256((const __m256i *)(u->v + i * QK));
        const __m256i a = _mm256_loadu_si256((const __m256i *)x[i].qs);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mul_sum_i8_avx2(w, a)), _mm256_set1_ps(u->dw[i] * xd[i]), acc);
    }
    return hsum_f32_avx2(acc);
}

/// The definition of every Q8_0-family product's bits: lane l of a block is the exact sum
/// of bytes 4l..4l+3's products; each lane sum, times the product of the block scales, is
/// added to lane accumulator l with one fused multiply-add; the lanes are reduced in the
/// eight-lane order. The AVX2 and AVX-512 VNNI kernels hold the eight lanes in a vector.
static float dot_unpacked_q8_0_portable(const unpacked_row *u, const q8_0_t *x, const float *xd, int64_t nb) {
    float acc[8] = { 0 };
    for (int64_t i = 0; i < nb; i++) {
        const float scale = u->dw[i] * xd[i];
        for (int l = 0; l < 8; l++) {
            int s = 0;
            for (int j = 4 * l; j < 4 * l + 4; j++) s += u->v[i * QK + j] * x[i].qs[j];
            acc[l] = fmaf((float)s, scale, acc[l]);
        }
    }
    return sl_hsum8(acc);
}

/// Block i's term of a K-quant row · Q8_K activations, from its exact scaled group sum `sumi`:
/// the block minimums' integer sum, then the one float expression every SIMD kernel uses.
__attribute__((target("avx2,fma")))
static inline float q8_K_block_term(const unpacked_row *u, const q8_K_t *x, int64_t i, int sumi) {
    const __m256i mins = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(u->gmin + i * 16)),
                                           _mm256_loadu_si256((const __m256i *)x[i].bsums));
    const int summ = hsum_i32_avx2(mins);
    return u->sd[i] * x[i].d * (float)sumi - u->smin[i] * x[i].d * (float)summ;
}

/// K-quant row · Q8_K activations: per 16-element group an integer scale (and min). The
/// 16-bit pair sums of maddubs are scaled and widened in one madd; the integer result is
/// exactly the portable one.
__attribute__((target("avx2,fma")))
static float dot_unpacked_q8_K_avx2(const unpacked_row *u, const q8_K_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        __m256i acc = _mm256_setzero_si256();
        const int16_t *gs = u->gscale + i * 16;
        for (int g = 0; g < 16; g += 2) {
            const __m256i w = _mm256_loadu_si256((const __m256i *)(u->v + i * QK_K + 16 * g));
            const __m256i a = _mm256_loadu_si256((const __m256i *)(x[i].qs + 16 * g));
            const __m256i dot16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
            const __m256i scales = _mm256_setr_m128i(_mm_set1_epi16(gs[g]), _mm_set1_epi16(gs[g + 1]));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(dot16, scales));
        }
        sum += q8_K_block_term(u, x, i, hsum_i32_avx2(acc));
    }
    return sum;
}

/// dot_unpacked_q8_K_avx2 for four activation rows at once: each weight vector and group
/// scale is loaded once; every row's sums and float expression are those of the one-row kernel.
__attribute__((target("avx2,fma")))
static void dot4_unpacked_q8_K_avx2(const unpacked_row *u, const q8_K_t *const x[4], int64_t nb, float out[4]) {
    float sum[4] = { 0, 0, 0, 0 };
    for (int64_t i = 0; i < nb; i++) {
        __m256i acc[4] = { _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256() };
        const int16_t *gs = u->gscale + i * 16;
        for (int g = 0; g < 16; g += 2) {
            const __m256i w = _mm256_loadu_si256((const __m256i *)(u->v + i * QK_K + 16 * g));
            const __m256i aw = _mm256_sign_epi8(w, w);
            const __m256i scales = _mm256_setr_m128i(_mm_set1_epi16(gs[g]), _mm_set1_epi16(gs[g + 1]));
            for (int n = 0; n < 4; n++) {
                const __m256i a = _mm256_loadu_si256((const __m256i *)(x[n][i].qs + 16 * g));
                acc[n] = _mm256_add_epi32(acc[n], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(a, w)), scales));
            }
        }
        for (int n = 0; n < 4; n++) sum[n] += q8_K_block_term(u, x[n], i, hsum_i32_avx2(acc[n]));
    }
    for (int n = 0; n < 4; n++) out[n] = sum[n];
}

/// dot4_unpacked_q8_K_avx2 with four 16-element groups per 512-bit step instead of two. The
/// block sums are exact integers however they are grouped (maddubs cannot saturate: |w| ≤ 63,
/// |a| ≤ 127), and the activation is negated where the weight is negative as vpsignb does
/// (a zero weight contributes 0 either way), so every float expression gets the same
/// operands: the bits are the AVX2 kernel's.
__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl")))
static void dot4_unpacked_q8_K_avx512(const unpacked_row *u, const q8_K_t *const x[4], int64_t nb, float out[4]) {
    float sum[4] = { 0, 0, 0, 0 };
    const __m512i zero = _mm512_setzero_si512();
    // Group scale j of four (16-bit) to every 16-bit lane of 128-bit lane j.
    const __m512i spread = _mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2,
                                            1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    for (int64_t i = 0; i < nb; i++) {
        __m512i acc[4] = { zero, zero, zero, zero };
        const int16_t *gs = u->gscale + i * 16;
        for (int g = 0; g < 16; g += 4) {
            const __m512i w = _mm512_loadu_si512((const void *)(u->v + i * QK_K + 16 * g));
            const __m512i aw = _mm512_abs_epi8(w);
            const __mmask64 negative = _mm512_movepi8_mask(w);
            const __m512i scales = _mm512_permutexvar_epi16(spread, _mm512_castsi128_si512(_mm_loadl_epi64((const __m128i *)(gs + g))));
            for (int n = 0; n < 4; n++) {
                const __m512i a = _mm512_loadu_si512((const void *)(x[n][i].qs + 16 * g));
                const __m512i signed_a = _mm512_mask_sub_epi8(a, negative, zero, a);
                acc[n] = _mm512_add_epi32(acc[n], _mm512_madd_epi16(_mm512_maddubs_epi16(aw, signed_a), scales));
            }
        }
        for (int n = 0; n < 4; n++) sum[n] += q8_K_block_term(u, x[n], i, _mm512_reduce_add_epi32(acc[n]));
    }
    for (int n = 0; n < 4; n++) out[n] = sum[n];
}

static float dot_unpacked_q8_K_portable(const unpacked_row *u, const q8_K_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0, summ = 0;
        for (int g = 0; g < 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += u->v[i * QK_K + 16 * g + l] * x[i].qs[16 * g + l];
            sumi += u->gscale[i * 16 + g] * s;
            summ += u->gmin[i * 16 + g] * x[i].bsums[g];
        }
        sum += u->sd[i] * x[i].d * (float)sumi - u->smin[i] * x[i].d * (float)summ;
    }
    return sum;
}

/// Q4_0 / Q5_0 row · Q8_0 activations without unpacking (one activation row: decoding),
/// the values built in registers exactly as unpack_q4_q5_0_avx2 stores them.
__attribute__((target("avx2,fma,f16c")))
static float dot_q4_q5_0_direct_avx2(int type, const void *row, const q8_0_t *x, const float *xd, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        uint16_t d;
        const __m256i w = q4_q5_0_block_avx2(type, row, i, &d);
        const __m256i a = _mm256_loadu_si256((const __m256i *)x[i].qs);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mul_sum_i8_avx2(w, a)), _mm256_set1_ps(_cvtsh_ss(d) * xd[i]), acc);
    }
    return hsum_f32_avx2(acc);
}

/// Q4_K / Q5_K row · Q8_K activations without unpacking (one activation row: decoding). The
/// values (0..31) are built in registers as unpack_k_avx2 stores them and multiplied
/// unsigned × signed directly; per 32-value sub-block one scale and one min. The integer
/// sums are exact, so they and the float expression are those of dot_unpacked_q8_K_*.
__attribute__((target("avx2,fma,f16c")))
static float dot_q4_q5_K_direct_avx2(int type, const void *row, const q8_K_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *scales, *qs, *qh = 0;
        float sd, smin;
        if (type == SL_TYPE_Q4_K) {
            const q4_K_t *w = (const q4_K_t *)row + i;
            sd = _cvtsh_ss(w->d); smin = _cvtsh_ss(w->dmin);
            scales = w->scales; qs = w->qs;
        } else {
            const q5_K_t *w = (const q5_K_t *)row + i;
            sd = _cvtsh_ss(w->d); smin = _cvtsh_ss(w->dmin);
            scales = w->scales; qs = w->qs; qh = w->qh;
        }
        const __m256i high = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
        __m256i acc = _mm256_setzero_si256();
        int summ = 0;
        for (int j = 0; j < QK_K / 64; j++) {
            __m256i lo, hi;
            q4_q5_K_values_avx2(qs, qh ? &high : 0, j, &lo, &hi);
            int sc0, m0, sc1, m1;
            scale_min(2 * j, scales, &sc0, &m0);
            scale_min(2 * j + 1, scales, &sc1, &m1);
            const __m256i a0 = _mm256_loadu_si256((const __m256i *)(x[i].qs + 64 * j));
            const __m256i a1 = _mm256_loadu_si256((const __m256i *)(x[i].qs + 64 * j + 32));
            // Values are unsigned (0..31): |pair sum| ≤ 2·31·127, no saturation.
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0), _mm256_set1_epi16((short)sc0)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1), _mm256_set1_epi16((short)sc1)));
            const int16_t *bs = x[i].bsums + 4 * j;
            summ += m0 * (bs[0] + bs[1]) + m1 * (bs[2] + bs[3]);
        }
        const int sumi = hsum_i32_avx2(acc);
        sum += sd * x[i].d * (float)sumi - smin * x[i].d * (float)summ;
    }
    return sum;
}

/// Q6_K row · Q8_K activations without unpacking: the 6-bit values are kept unsigned
/// (0..63) for maddubs and the bias of 32 is taken off once per group through the
/// activation sums, Σ (u − 32)·a = Σ u·a − 32·Σ a — exact in integers, so the sums and the
/// float expression are those of dot_unpacked_q8_K_*.
__attribute__((target("avx2,fma,f16c")))
static float dot_q6_K_direct_avx2(const q6_K_t *w, const q8_K_t *x, int64_t nb) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        const float sd = _cvtsh_ss(w[i].d), smin = 0;
        const int summ = 0;
        __m256i acc = _mm256_setzero_si256();
        for (int n = 0; n < 2; n++) {
            const __m256i a = _mm256_loadu_si256((const __m256i *)(w[i].ql + 64 * n));
            const __m256i b = _mm256_loadu_si256((const __m256i *)(w[i].ql + 64 * n + 32));
            const __m256i h = _mm256_loadu_si256((const __m256i *)(w[i].qh + 32 * n));
            __m256i u[4];
            u[0] = _mm256_or_si256(_mm256_and_si256(a, low), _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(0x03)), 4));
            u[1] = _mm256_or_si256(_mm256_and_si256(b, low), _mm256_slli_epi16(_mm256_and_si256(h, _mm256_set1_epi8(0x0C)), 2));
            u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), low), _mm256_and_si256(h, _mm256_set1_epi8(0x30)));
            u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), low),
                                   _mm256_srli_epi16(_mm256_and_si256(h, _mm256_set1_epi8((char)0xC0)), 2));
            const int8_t *sc = w[i].scales + 8 * n;
            for (int t = 0; t < 4; t++) {
                const __m256i act = _mm256_loadu_si256((const __m256i *)(x[i].qs + 128 * n + 32 * t));
                const __m256i scales = _mm256_setr_m128i(_mm_set1_epi16(sc[2 * t]), _mm_set1_epi16(sc[2 * t + 1]));
                // |pair sum| ≤ 2·63·127: no saturation.
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u[t], act), scales));
            }
        }
        // − 32 · Σ_g scale_g · bsum_g
        const __m256i scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[i].scales));
        const __m256i bias = _mm256_madd_epi16(scales16, _mm256_loadu_si256((const __m256i *)x[i].bsums));
        const int sumi = hsum_i32_avx2(acc) - 32 * hsum_i32_avx2(bias);
        sum += sd * x[i].d * (float)sumi - smin * x[i].d * (float)summ;
    }
    return sum;
}

/// Q8_0 weight blocks used in place, their scales converted by the F16C instruction.
__attribute__((target("avx2,fma,f16c")))
static float dot_q8_0_direct_avx2(const q8_0_t *w, const q8_0_t *x, const float *xd, int64_t nb) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i wv = _mm256_loadu_si256((const __m256i *)w[i].qs);
        const __m256i a = _mm256_loadu_si256((const __m256i *)x[i].qs);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mul_sum_i8_avx2(wv, a)), _mm256_set1_ps(_cvtsh_ss(w[i].d) * xd[i]), acc);
    }
    return hsum_f32_avx2(acc);
}

/// Two Q8_0-family rows · one activation row (decoding): the rows' accumulation chains run
/// side by side, each exactly as in dot_q8_0_direct_avx2 / dot_q4_q5_0_direct_avx2, so a
/// row's result does not depend on its neighbour.
__attribute__((target("avx2,fma,f16c")))
static void dot2_q8_0_family_direct_avx2(int type, const void *row0, const void *row1, const q8_0_t *x, const float *xd,
                                         int64_t nb, float out[2]) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        __m256i w0, w1;
        uint16_t d0, d1;
        if (type == SL_TYPE_Q8_0) {
            const q8_0_t *b0 = (const q8_0_t *)row0 + i, *b1 = (const q8_0_t *)row1 + i;
            w0 = _mm256_loadu_si256((const __m256i *)b0->qs); d0 = b0->d;
            w1 = _mm256_loadu_si256((const __m256i *)b1->qs); d1 = b1->d;
        } else {
            w0 = q4_q5_0_block_avx2(type, row0, i, &d0);
            w1 = q4_q5_0_block_avx2(type, row1, i, &d1);
        }
        const __m256i a = _mm256_loadu_si256((const __m256i *)x[i].qs);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mul_sum_i8_avx2(w0, a)), _mm256_set1_ps(_cvtsh_ss(d0) * xd[i]), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mul_sum_i8_avx2(w1, a)), _mm256_set1_ps(_cvtsh_ss(d1) * xd[i]), acc1);
    }
    out[0] = hsum_f32_avx2(acc0);
    out[1] = hsum_f32_avx2(acc1);
}

/// A Q8_0-family weight row as the tile kernels read it: block i's 32 int8 values at
/// v + i·stride, its scale either a half at the same stride from `half` or floats[i].
typedef struct { const int8_t *v; size_t stride; const uint16_t *half; const float *floats; } weight_view;

/// R weight rows × 4 activation rows per call (R = 1 or 2): each loaded block serves
/// several dot products and 4·R accumulation chains run side by side. Every output is
/// formed exactly as in the one-row kernels — the same exact integer block sums, the same
/// float operations in the same order — so results do not depend on how rows are grouped.
/// IDOT(u, s) is the 8-lane int32 sum of products of unsigned u and signed s bytes:
/// maddubs + madd on AVX2, one vpdpbusd with AVX-512 VNNI (no saturation is possible here:
/// |w|·|a| ≤ 127·127, so both give the same sums).
#define SL_IDOT_AVX2(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1))
#define SL_IDOT_VNNI(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))
#define SL_TILE_KERNEL(NAME, TARGET, IDOT, R, N)                                                               \
    __attribute__((target(TARGET)))                                                                           \
    static void NAME(const weight_view *w, const q8_0_t *const *x, const float *const *xd, int64_t nb,        \
                     float out[R][N]) {                                                                        \
        __m256 acc[R][N];                                                                                      \
        for (int r = 0; r < R; r++)                                                                            \
            for (int n = 0; n < N; n++) acc[r][n] = _mm256_setzero_ps();                                       \
        for (int64_t i = 0; i < nb; i++) {                                                                     \
            __m256i wv[R], aw[R];                                                                              \
            __m256 d[R];                                                                                       \
            for (int r = 0; r < R; r++) {                                                                      \
                wv[r] = _mm256_loadu_si256((const __m256i *)(w[r].v + (size_t)i * w[r].stride));               \
                aw[r] = _mm256_sign_epi8(wv[r], wv[r]);                                                        \
                d[r] = _mm256_set1_ps(w[r].half ? _cvtsh_ss(*(const uint16_t *)((const char *)w[r].half +      \
                                                                                 (size_t)i * w[r].stride))     \
                                                : w[r].floats[i]);                                             \
            }                                                                                                  \
            for (int n = 0; n < N; n++) {                                                                      \
                const __m256i a = _mm256_loadu_si256((const __m256i *)x[n][i].qs);                             \
                const __m256 xs = _mm256_broadcast_ss(xd[n] + i);                                              \
                for (int r = 0; r < R; r++) {                                                                  \
                    const __m256i sums = IDOT(aw[r], _mm256_sign_epi8(a, wv[r]));                              \
                    acc[r][n] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(d[r], xs), acc[r][n]); \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        for (int r = 0; r < R; r++)                                                                            \
            for (int n = 0; n < N; n++) out[r][n] = hsum_f32_avx2(acc[r][n]);                                  \
    }
#define SL_VNNI "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni"
SL_TILE_KERNEL(tile_1x4_avx2, "avx2,fma,f16c", SL_IDOT_AVX2, 1, 4)
SL_TILE_KERNEL(tile_2x4_avx2, "avx2,fma,f16c", SL_IDOT_AVX2, 2, 4)
SL_TILE_KERNEL(tile_1x4_vnni, SL_VNNI, SL_IDOT_VNNI, 1, 4)
SL_TILE_KERNEL(tile_2x4_vnni, SL_VNNI, SL_IDOT_VNNI, 2, 4)
// AVX-512 has 32 vector registers: room for 2 × 8 accumulators.
SL_TILE_KERNEL(tile_1x8_vnni, SL_VNNI, SL_IDOT_VNNI, 1, 8)
SL_TILE_KERNEL(tile_2x8_vnni, SL_VNNI, SL_IDOT_VNNI, 2, 8)

/// The same tiles with two activation rows in one 512-bit vector (row 2p in the low eight
/// lanes, 2p + 1 in the high eight; R weight rows × 2·P activation rows): every lane does
/// exactly what its lane of the 256-bit kernels does — the same integer block sums (the
/// activation negated where the weight is negative, as vpsignb does; a zero weight
/// contributes 0 either way), the same float operations in the same order, and each half
/// reduced by hsum_f32_avx2 — so the bits are the same, at half the instructions.
#define SL_TILE512_KERNEL(NAME, R, P)                                                                          \
    __attribute__((target(SL_VNNI)))                                                                          \
    static void NAME(const weight_view *w, const q8_0_t *const *x, const float *const *xd, int64_t nb,        \
                     float out[R][2 * P]) {                                                                    \
        __m512 acc[R][P];                                                                                      \
        for (int r = 0; r < R; r++)                                                                            \
            for (int p = 0; p < P; p++) acc[r][p] = _mm512_setzero_ps();                                       \
        const __m512i zero = _mm512_setzero_si512();                                                           \
        for (int64_t i = 0; i < nb; i++) {                                                                     \
            __m512i aw[R];                                                                                     \
            __mmask64 negative[R];                                                                             \
            __m512 d[R];                                                                                       \
            for (int r = 0; r < R; r++) {                                                                      \
                const __m512i wv = _mm512_broadcast_i64x4(                                                     \
                    _mm256_loadu_si256((const __m256i *)(w[r].v + (size_t)i * w[r].stride)));                  \
                aw[r] = _mm512_abs_epi8(wv);                                                                   \
                negative[r] = _mm512_movepi8_mask(wv);                                                         \
                d[r] = _mm512_set1_ps(w[r].half ? _cvtsh_ss(*(const uint16_t *)((const char *)w[r].half +      \
                                                                                 (size_t)i * w[r].stride))     \
                                                : w[r].floats[i]);                                             \
            }                                                                                                  \
            for (int p = 0; p < P; p++) {                                                                      \
                const __m512i a = _mm512_inserti64x4(                                                          \
                    _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x[2 * p][i].qs)),               \
                    _mm256_loadu_si256((const __m256i *)x[2 * p + 1][i].qs), 1);                               \
                const __m512 xs = _mm512_castpd_ps(_mm512_insertf64x4(                                         \
                    _mm512_castps_pd(_mm512_set1_ps(xd[2 * p][i])), _mm256_castps_pd(_mm256_set1_ps(xd[2 * p + 1][i])), 1)); \
                for (int r = 0; r < R; r++) {                                                                  \
                    const __m512i sums = _mm512_dpbusd_epi32(zero, aw[r], _mm512_mask_sub_epi8(a, negative[r], zero, a)); \
                    acc[r][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(d[r], xs), acc[r][p]); \
                }                                                                                              \
            }                                                                                                  \
        }                                                                                                      \
        for (int r = 0; r < R; r++)                                                                            \
            for (int p = 0; p < P; p++) {                                                                      \
                out[r][2 * p] = hsum_f32_avx2(_mm512_castps512_ps256(acc[r][p]));                              \
                out[r][2 * p + 1] = hsum_f32_avx2(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[r][p]), 1))); \
            }                                                                                                  \
    }
SL_TILE512_KERNEL(tile_1x16_zmm, 1, 8)
SL_TILE512_KERNEL(tile_2x16_zmm, 2, 8)

static int has_vnni(void) { return sl_isa_at_least(SL_ISA_AVX512_VNNI); }

/// Weight rows [r, r + R) × activation rows in blocks of sixteen and eight (AVX-512 VNNI) or four,
/// through the tile kernels;
/// leftover activation rows (fewer than four) go through the one-row kernels.
static void q8_0_family_tiles(const weight_view *w, int R, int64_t r, const void *xq, int64_t x_bytes, const float *xd,
                              int64_t nb, int64_t batch, float *y, int64_t ldy, int64_t *done) {
    const int vnni = has_vnni();
    int64_t b = 0;
    for (int width = vnni ? 16 : 4; width >= 4; width = width == 16 ? 8 : width - 4) {
        for (; b + width <= batch; b += width) {
            const q8_0_t *xs[16];
            const float *xds[16];
            for (int n = 0; n < width; n++) { xs[n] = (const q8_0_t *)((const char *)xq + (b + n) * x_bytes); xds[n] = xd + (b + n) * nb; }
            float out[2][16];
            if (width == 16) {
                float out16[2][16];
                if (R == 2) tile_2x16_zmm(w, xs, xds, nb, out16); else tile_1x16_zmm(w, xs, xds, nb, out16);
                for (int i = 0; i < R; i++) for (int n = 0; n < 16; n++) out[i][n] = out16[i][n];
            } else if (width == 8) {
                float out8[2][8];
                if (R == 2) tile_2x8_vnni(w, xs, xds, nb, out8); else tile_1x8_vnni(w, xs, xds, nb, out8);
                for (int i = 0; i < R; i++) for (int n = 0; n < 8; n++) out[i][n] = out8[i][n];
            } else {
                float out4[2][4];
                if (R == 2) {
                    if (vnni) tile_2x4_vnni(w, xs, xds, nb, out4); else tile_2x4_avx2(w, xs, xds, nb, out4);
                } else {
                    if (vnni) tile_1x4_vnni(w, xs, xds, nb, out4); else tile_1x4_avx2(w, xs, xds, nb, out4);
                }
                for (int i = 0; i < R; i++) for (int n = 0; n < 4; n++) out[i][n] = out4[i][n];
            }
            for (int i = 0; i < R; i++)
                for (int n = 0; n < width; n++) y[(b + n) * ldy + r + i] = out[i][n];
        }
    }
    *done = b;
}

/// The f16 scales of `count` consecutive Q8_0 blocks as floats, by the F16C instruction (the
/// conversion is exact, so these are sl_f16_to_f32's values).
__attribute__((target("f16c")))
static void q8_0_scales_f16c(const void *blocks, int64_t count, float *out) {
    const q8_0_t *x = blocks;
    for (int64_t i = 0; i < count; i++) out[i] = _cvtsh_ss(x[i].d);
}

int sl_matmul_rows_quantized(int type, const void *w, int64_t k, int64_t row_begin, int64_t row_end,
                             const void *xq, int64_t batch, float *y, int64_t ldy) {
    const int64_t per = sl_block_elements(type);
    const int64_t x_bytes = sl_activation_row_bytes(type, k);
    if (per == 0 || k % per != 0 || x_bytes == 0) return -1;
    const int64_t nb = k / per;
    const int64_t row_bytes = nb * sl_block_bytes(type);
    const char *base = (const char *)w;
    const int simd = has_avx2();
    const int wide = sl_isa_at_least(SL_ISA_AVX512);
    const int q8_0 = uses_q8_0(type);
    // Activation block scales as floats, once per call (Q8_0 stores them as halves).
    float *xd = 0;
    if (q8_0) {
        xd = malloc(sizeof(float) * (size_t)(batch * nb));
        if (simd) q8_0_scales_f16c(xq, batch * nb, xd);
        else {
            for (int64_t i = 0; i < batch * nb; i++) xd[i] = sl_f16_to_f32(((const q8_0_t *)xq)[i].d);
        }
    }
    // Weight blocks already holding int8 values (Q8_0), and any Q8_0-family row against a
    // single activation row, are multiplied in place. Otherwise each weight row is unpacked
    // once to int8 values and group scales, then multiplied with every activation row. The
    // integer sums and float expressions are the same on every path and for every batch
    // size, so results do not depend on batching.
    int8_t v[k] __attribute__((aligned(32)));
    float dw[k / QK + 1], sd[k / QK_K + 1], smin[k / QK_K + 1];
    int16_t gscale[k / 16 + 16] __attribute__((aligned(32))), gmin[k / 16 + 16] __attribute__((aligned(32)));
    unpacked_row u = { v, dw, gscale, gmin, sd, smin };
    int8_t v2[k] __attribute__((aligned(32)));
    float dw2[k / QK + 1];
    unpacked_row u2 = { v2, dw2, 0, 0, 0, 0 };
    int64_t r = row_begin;
    // Q8_0-family rows against four or more activation rows: pairs of weight rows through
    // the tile kernels (Q8_0 in place, Q4_0 / Q5_0 unpacked), leftover activation rows below.
    if (simd && q8_0 && batch >= 4) {
        for (; r < row_end; r += 2) {
            const int R = r + 1 < row_end ? 2 : 1;
            // Fetch the next pair of rows from memory while this one is multiplied.
            for (int64_t line = 0; r + 2 < row_end && line < 2 * row_bytes; line += 64) {
                _mm_prefetch(base + (r + 2) * row_bytes + line, _MM_HINT_T0);
            }
            weight_view views[2];
            for (int i = 0; i < R; i++) {
                const q8_0_t *row = (const q8_0_t *)(base + (r + i) * row_bytes);
                if (type == SL_TYPE_Q8_0) {
                    views[i] = (weight_view){ row->qs, sizeof(q8_0_t), &row->d, 0 };
                } else {
                    unpacked_row *target = i == 0 ? &u : &u2;
                    unpack_row(type, row, k, target);
                    views[i] = (weight_view){ target->v, QK, 0, target->dw };
                }
            }
            int64_t done = 0;
            q8_0_family_tiles(views, R, r, xq, x_bytes, xd, nb, batch, y, ldy, &done);
            for (int i = 0; i < R; i++) {
                for (int64_t b = done; b < batch; b++) {
                    const q8_0_t *x = (const q8_0_t *)((const char *)xq + b * x_bytes);
                    y[b * ldy + r + i] = type == SL_TYPE_Q8_0
                        ? dot_q8_0_direct_avx2((const q8_0_t *)(base + (r + i) * row_bytes), x, xd + b * nb, nb)
                        : dot_unpacked_q8_0_avx2(i == 0 ? &u : &u2, x, xd + b * nb, nb);
                }
            }
        }
    }
    for (; r < row_end; r++) {
        const void *row = base + r * row_bytes;
        if (simd && (type == SL_TYPE_Q8_0 || (q8_0 && batch == 1))) {
            // Rows stream from memory once: ask for the ones a few rows ahead.
            if (r + 4 < row_end) {
                for (int64_t line = 0; line < row_bytes; line += 64) _mm_prefetch(base + (r + 4) * row_bytes + line, _MM_HINT_T0);
            }
            if (batch == 1 && r + 1 < row_end) {
                if (r + 5 < row_end) {
                    for (int64_t line = 0; line < row_bytes; line += 64) _mm_prefetch(base + (r + 5) * row_bytes + line, _MM_HINT_T0);
                }
                float out[2];
                dot2_q8_0_family_direct_avx2(type, row, base + (r + 1) * row_bytes, xq, xd, nb, out);
                y[r] = out[0];
                y[r + 1] = out[1];
                r++;
                continue;
            }
            for (int64_t b = 0; b < batch; b++) {
                const q8_0_t *x = (const q8_0_t *)((const char *)xq + b * x_bytes);
                y[b * ldy + r] = type == SL_TYPE_Q8_0 ? dot_q8_0_direct_avx2(row, x, xd + b * nb, nb)
                                                      : dot_q4_q5_0_direct_avx2(type, row, x, xd + b * nb, nb);
            }
            continue;
        }
        if (simd && batch == 1 && (type == SL_TYPE_Q4_K || type == SL_TYPE_Q5_K || type == SL_TYPE_Q6_K)) {
            if (r + 4 < row_end) {
                for (int64_t line = 0; line < row_bytes; line += 64) _mm_prefetch(base + (r + 4) * row_bytes + line, _MM_HINT_T0);
            }
            y[r] = type == SL_TYPE_Q6_K ? dot_q6_K_direct_avx2(row, xq, nb) : dot_q4_q5_K_direct_avx2(type, row, xq, nb);
            continue;
        }
        unpack_row(type, row, k, &u);
        int64_t b = 0;
        if (simd && !q8_0) {
            for (; b + 4 <= batch; b += 4) {
                const q8_K_t *x4[4];
                float out[4];
                for (int n = 0; n < 4; n++) x4[n] = (const q8_K_t *)((const char *)xq + (b + n) * x_bytes);
                if (wide) dot4_unpacked_q8_K_avx512(&u, x4, nb, out); else dot4_unpacked_q8_K_avx2(&u, x4, nb, out);
                for (int n = 0; n < 4; n++) y[(b + n) * ldy + r] = out[n];
            }
        }
        for (; b < batch; b++) {
            const void *x = (const char *)xq + b * x_bytes;
            float value;
            if (q8_0) {
                value = simd ? dot_unpacked_q8_0_avx2(&u, x, xd + b * nb, nb) : dot_unpacked_q8_0_portable(&u, x, xd + b * nb, nb);
            } else {
                value = simd ? dot_unpacked_q8_K_avx2(&u, x, nb) : dot_unpacked_q8_K_portable(&u, x, nb);
            }
            y[b * ldy + r] = value;
        }
    }
    free(xd);
    return 0;
}
