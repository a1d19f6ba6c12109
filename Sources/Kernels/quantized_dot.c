// Integer dot products of quantized weight rows with quantized activations (Q8_0 / Q8_K),
// the scheme llama.cpp's CPU backend uses. AVX2 kernels (the sign trick with maddubs) are
// chosen at run time, with portable fallbacks.
#include "Kernels.h"
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QK 32
#define QK_K 256


typedef struct { uint16_t d; int8_t qs[QK]; } q8_0_t;
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
        if (uses_q8_0(weight_type)) quantize_q8_0(x + b * k, (q8_0_t *)row, k);
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
    int32_t *gscale;  // K family: [k/16] integer scale of each 16-element group
    int32_t *gmin;    // K family: [k/16] integer min of each 16-element group
    float *sd, *smin; // K family: [k/256] super-block scale and min scale
} unpacked_row;

/// AVX2 unpacking of Q4_0 / Q5_0 blocks (32 values each): nibbles, plus the fifth bit
/// spread from the 32-bit `qh` to one byte per value.
__attribute__((target("avx2")))
static void unpack_q4_q5_0_avx2(int type, const void *row, int64_t nb, unpacked_row *u) {
    const __m256i low_mask = _mm256_set1_epi8(0x0F);
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit_of_byte = _mm256_set1_epi64x(0x8040201008040201LL);
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *qs;
        uint16_t d;
        uint32_t qh = 0;
        if (type == SL_TYPE_Q5_0) {
            const q5_0_t *b = (const q5_0_t *)row + i;
            qs = b->qs; d = b->d;
            memcpy(&qh, b->qh, 4);
        } else {
            const q4_0_t *b = (const q4_0_t *)row + i;
            qs = b->qs; d = b->d;
        }
        u->dw[i] = sl_f16_to_f32(d);
        const __m128i packed = _mm_loadu_si128((const __m128i *)qs);
        // bytes 0..15: low nibbles (values 0..15), bytes 16..31: high nibbles (values 16..31)
        const __m256i nibbles = _mm256_and_si256(
            _mm256_inserti128_si256(_mm256_castsi128_si256(packed), _mm_srli_epi16(packed, 4), 1), low_mask);
        __m256i values;
        if (type == SL_TYPE_Q5_0) {
            __m256i bits = _mm256_shuffle_epi8(_mm256_set1_epi32((int)qh), spread);
            bits = _mm256_cmpeq_epi8(_mm256_and_si256(bits, bit_of_byte), bit_of_byte);
            values = _mm256_sub_epi8(_mm256_or_si256(nibbles, _mm256_and_si256(bits, _mm256_set1_epi8(0x10))), _mm256_set1_epi8(16));
        } else {
            values = _mm256_sub_epi8(nibbles, _mm256_set1_epi8(8));
        }
        _mm256_storeu_si256((__m256i *)(u->v + i * QK), values);
    }
}

static int has_avx2(void);

static void unpack_row(int type, const void *row, int64_t k, unpacked_row *u) {
    if ((type == SL_TYPE_Q5_0 || type == SL_TYPE_Q4_0) && has_avx2()) {
        unpack_q4_q5_0_avx2(type, row, k / QK, u);
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
                int32_t *gs = u->gscale + i * 16 + 4 * j, *gm = u->gmin + i * 16 + 4 * j;
                gs[0] = gs[1] = sc0; gs[2] = gs[3] = sc1;
                gm[0] = gm[1] = m0; gm[2] = gm[3] = m1;
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

__attribute__((target("avx2")))
static inline float hsum_f32_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
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

/// Q8_0 weight blocks used in place (no unpacking needed).
__attribute__((target("avx2,fma")))
static float dot_q8_0_blocks_avx2(const q8_0_t *w, const float *wd, const q8_0_t *x, const float *xd, int64_t nb) {
    // Per-lane float accumulation, one horizontal sum per row (as llama.cpp's kernels do).
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const __m256i wv = _mm256_loadu_si256((const __m256i *)w[i].qs);
        const __m256i a = _mm256_loadu_si256((const __m256i *)x[i].qs);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mul_sum_i8_avx2(wv, a)), _mm256_set1_ps(wd[i] * xd[i]), acc);
    }
    return hsum_f32_avx2(acc);
}

static float dot_unpacked_q8_0_portable(const unpacked_row *u, const q8_0_t *x, const float *xd, int64_t nb) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int s = 0;
        for (int j = 0; j < QK; j++) s += u->v[i * QK + j] * x[i].qs[j];
        sum += (float)s * (u->dw[i] * xd[i]);
    }
    return sum;
}

/// K-quant row · Q8_K activations: per 16-element group an integer scale (and min).
__attribute__((target("avx2,fma")))
static float dot_unpacked_q8_K_avx2(const unpacked_row *u, const q8_K_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        __m256i acc = _mm256_setzero_si256();
        for (int g = 0; g < 16; g += 2) {
            const __m256i w = _mm256_loadu_si256((const __m256i *)(u->v + i * QK_K + 16 * g));
            const __m256i a = _mm256_loadu_si256((const __m256i *)(x[i].qs + 16 * g));
            const __m256i scales = _mm256_setr_epi32(
                u->gscale[i * 16 + g], u->gscale[i * 16 + g], u->gscale[i * 16 + g], u->gscale[i * 16 + g],
                u->gscale[i * 16 + g + 1], u->gscale[i * 16 + g + 1], u->gscale[i * 16 + g + 1], u->gscale[i * 16 + g + 1]);
            acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(mul_sum_i8_avx2(w, a), scales));
        }
        const int sumi = hsum_i32_avx2(acc);
        int summ = 0;
        for (int g = 0; g < 16; g++) summ += u->gmin[i * 16 + g] * x[i].bsums[g];
        sum += u->sd[i] * x[i].d * (float)sumi - u->smin[i] * x[i].d * (float)summ;
    }
    return sum;
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

static int has_avx2(void) {
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return known;
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
    const int q8_0 = uses_q8_0(type);
    // Activation block scales as floats, once per call (Q8_0 stores them as halves).
    float *xd = 0;
    if (q8_0) {
        xd = malloc(sizeof(float) * (size_t)(batch * nb));
        for (int64_t b = 0; b < batch; b++) {
            const q8_0_t *x = (const q8_0_t *)((const char *)xq + b * x_bytes);
            for (int64_t i = 0; i < nb; i++) xd[b * nb + i] = sl_f16_to_f32(x[i].d);
        }
    }
    // Each weight row is unpacked once to int8 values and group scales, then multiplied
    // with every activation row; the integer sums and float expressions are the same for
    // every batch size, so results do not depend on batching.
    int8_t v[k] __attribute__((aligned(32)));
    float dw[k / QK + 1], sd[k / QK_K + 1], smin[k / QK_K + 1];
    int32_t gscale[k / 16 + 1], gmin[k / 16 + 1];
    unpacked_row u = { v, dw, gscale, gmin, sd, smin };
    for (int64_t r = row_begin; r < row_end; r++) {
        if (type == SL_TYPE_Q8_0 && simd) {
            const q8_0_t *row = (const q8_0_t *)(base + r * row_bytes);
            for (int64_t i = 0; i < nb; i++) dw[i] = sl_f16_to_f32(row[i].d);
            for (int64_t b = 0; b < batch; b++) {
                y[b * ldy + r] = dot_q8_0_blocks_avx2(row, dw, (const q8_0_t *)((const char *)xq + b * x_bytes), xd + b * nb, nb);
            }
            continue;
        }
        unpack_row(type, base + r * row_bytes, k, &u);
        for (int64_t b = 0; b < batch; b++) {
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
