// Integer dot products of quantized weight rows with quantized activations (Q8_0 / Q8_K),
// the scheme llama.cpp's CPU backend uses. Loops are written to auto-vectorise; each
// function is compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time.
#include "Kernels.h"
#include <math.h>
#include <string.h>

#define QK 32
#define QK_K 256

#if defined(__x86_64__)
#define SL_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SL_CLONES
#endif

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

SL_CLONES
static float dot_q8_0(const q8_0_t *w, const q8_0_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int s = 0;
        for (int j = 0; j < QK; j++) s += w[i].qs[j] * x[i].qs[j];
        sum += (float)s * (sl_f16_to_f32(w[i].d) * sl_f16_to_f32(x[i].d));
    }
    return sum;
}

SL_CLONES
static float dot_q4_0(const q4_0_t *w, const q8_0_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int s = 0;
        for (int j = 0; j < QK / 2; j++) {
            s += ((w[i].qs[j] & 0x0F) - 8) * x[i].qs[j];
            s += ((w[i].qs[j] >> 4) - 8) * x[i].qs[j + QK / 2];
        }
        sum += (float)s * (sl_f16_to_f32(w[i].d) * sl_f16_to_f32(x[i].d));
    }
    return sum;
}

SL_CLONES
static float dot_q5_0(const q5_0_t *w, const q8_0_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        uint32_t qh;
        memcpy(&qh, w[i].qh, 4);
        int s = 0;
        for (int j = 0; j < QK / 2; j++) {
            const int high0 = ((qh >> j) << 4) & 0x10;
            const int high1 = (qh >> (j + 12)) & 0x10;
            s += (((w[i].qs[j] & 0x0F) | high0) - 16) * x[i].qs[j];
            s += (((w[i].qs[j] >> 4) | high1) - 16) * x[i].qs[j + QK / 2];
        }
        sum += (float)s * (sl_f16_to_f32(w[i].d) * sl_f16_to_f32(x[i].d));
    }
    return sum;
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

SL_CLONES
static float dot_q4_K(const q4_K_t *w, const q8_K_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < QK_K / 64; j++) {
            int sc0, m0, sc1, m1;
            scale_min(2 * j, w[i].scales, &sc0, &m0);
            scale_min(2 * j + 1, w[i].scales, &sc1, &m1);
            const uint8_t *q = w[i].qs + 32 * j;
            const int8_t *a = x[i].qs + 64 * j;
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) {
                s0 += (q[l] & 0x0F) * a[l];
                s1 += (q[l] >> 4) * a[l + 32];
            }
            sumi += sc0 * s0 + sc1 * s1;
            summ += m0 * (x[i].bsums[4 * j] + x[i].bsums[4 * j + 1]) + m1 * (x[i].bsums[4 * j + 2] + x[i].bsums[4 * j + 3]);
        }
        sum += sl_f16_to_f32(w[i].d) * x[i].d * (float)sumi - sl_f16_to_f32(w[i].dmin) * x[i].d * (float)summ;
    }
    return sum;
}

SL_CLONES
static float dot_q5_K(const q5_K_t *w, const q8_K_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0, summ = 0;
        for (int j = 0; j < QK_K / 64; j++) {
            int sc0, m0, sc1, m1;
            scale_min(2 * j, w[i].scales, &sc0, &m0);
            scale_min(2 * j + 1, w[i].scales, &sc1, &m1);
            const uint8_t *q = w[i].qs + 32 * j;
            const int8_t *a = x[i].qs + 64 * j;
            const int bit0 = 2 * j, bit1 = 2 * j + 1;
            int s0 = 0, s1 = 0;
            for (int l = 0; l < 32; l++) {
                s0 += ((q[l] & 0x0F) + (((w[i].qh[l] >> bit0) & 1) << 4)) * a[l];
                s1 += ((q[l] >> 4) + (((w[i].qh[l] >> bit1) & 1) << 4)) * a[l + 32];
            }
            sumi += sc0 * s0 + sc1 * s1;
            summ += m0 * (x[i].bsums[4 * j] + x[i].bsums[4 * j + 1]) + m1 * (x[i].bsums[4 * j + 2] + x[i].bsums[4 * j + 3]);
        }
        sum += sl_f16_to_f32(w[i].d) * x[i].d * (float)sumi - sl_f16_to_f32(w[i].dmin) * x[i].d * (float)summ;
    }
    return sum;
}

SL_CLONES
static float dot_q6_K(const q6_K_t *w, const q8_K_t *x, int64_t nb) {
    float sum = 0;
    for (int64_t i = 0; i < nb; i++) {
        int sumi = 0;
        for (int n = 0; n < 2; n++) {  // two halves of 128
            const uint8_t *ql = w[i].ql + 64 * n;
            const uint8_t *qh = w[i].qh + 32 * n;
            const int8_t *sc = w[i].scales + 8 * n;
            const int8_t *a = x[i].qs + 128 * n;
            for (int half = 0; half < 2; half++) {  // l in [0,16) and [16,32): scale index is + half
                int s1 = 0, s2 = 0, s3 = 0, s4 = 0;
                for (int l = 16 * half; l < 16 * half + 16; l++) {
                    s1 += ((int)((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32) * a[l];
                    s2 += ((int)((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32) * a[l + 32];
                    s3 += ((int)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32) * a[l + 64];
                    s4 += ((int)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32) * a[l + 96];
                }
                sumi += sc[half] * s1 + sc[half + 2] * s2 + sc[half + 4] * s3 + sc[half + 6] * s4;
            }
        }
        sum += sl_f16_to_f32(w[i].d) * x[i].d * (float)sumi;
    }
    return sum;
}

int sl_matmul_rows_quantized(int type, const void *w, int64_t k, int64_t row_begin, int64_t row_end,
                             const void *xq, int64_t batch, float *y, int64_t ldy) {
    const int64_t per = sl_block_elements(type);
    const int64_t x_bytes = sl_activation_row_bytes(type, k);
    if (per == 0 || k % per != 0 || x_bytes == 0) return -1;
    const int64_t nb = k / per;
    const int64_t row_bytes = nb * sl_block_bytes(type);
    const char *base = (const char *)w;
    for (int64_t r = row_begin; r < row_end; r++) {
        const void *row = base + r * row_bytes;
        for (int64_t b = 0; b < batch; b++) {
            const void *x = (const char *)xq + b * x_bytes;
            float v;
            switch (type) {
            case SL_TYPE_Q8_0: v = dot_q8_0(row, x, nb); break;
            case SL_TYPE_Q4_0: v = dot_q4_0(row, x, nb); break;
            case SL_TYPE_Q5_0: v = dot_q5_0(row, x, nb); break;
            case SL_TYPE_Q4_K: v = dot_q4_K(row, x, nb / 1); break;
            case SL_TYPE_Q5_K: v = dot_q5_K(row, x, nb); break;
            case SL_TYPE_Q6_K: v = dot_q6_K(row, x, nb); break;
            default: return -1;
            }
            y[b * ldy + r] = v;
        }
    }
    return 0;
}
