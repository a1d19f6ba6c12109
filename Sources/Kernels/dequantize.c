// Dequantizers for the GGUF block formats Sluice supports. Layouts follow the GGUF/ggml
// specification (block structs below); written from the format description, checked against
// the `gguf` Python package's numpy dequantizers by the test suite.
#include "internal.h"
#include <string.h>

#define QK_K 256

typedef struct { uint16_t d; int8_t qs[QK]; } block_q8_0;                       // 34 bytes
typedef struct { uint16_t d; uint8_t qs[QK / 2]; } block_q4_0;                  // 18 bytes
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[QK / 2]; } block_q5_0;   // 22 bytes
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } block_q4_K;                   // 144
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K; // 176
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } block_q6_K;     // 210

_Static_assert(sizeof(block_q8_0) == 34, "q8_0");
_Static_assert(sizeof(block_q4_0) == 18, "q4_0");
_Static_assert(sizeof(block_q5_0) == 22, "q5_0");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K");

static float f16_table[65536];
static int f16_table_ready = 0;

static float f16_to_f32_compute(uint16_t h);

/// Builds the half → float table once (256 KB; a lookup beats bit twiddling in hot loops).
static void f16_table_init(void) {
    for (uint32_t i = 0; i < 65536; i++) f16_table[i] = f16_to_f32_compute((uint16_t)i);
    __atomic_store_n(&f16_table_ready, 1, __ATOMIC_RELEASE);
}

float sl_f16_to_f32(uint16_t h) {
    if (__builtin_expect(!__atomic_load_n(&f16_table_ready, __ATOMIC_ACQUIRE), 0)) f16_table_init();
    return f16_table[h];
}

static float f16_to_f32_compute(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1F;
    uint32_t mantissa = h & 0x3FF;
    uint32_t bits;
    if (exponent == 0) {
        if (mantissa == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            exponent = 127 - 15 + 1;
            while ((mantissa & 0x400) == 0) { mantissa <<= 1; exponent--; }
            mantissa &= 0x3FF;
            bits = sign | (exponent << 23) | (mantissa << 13);
        }
    } else if (exponent == 31) {
        bits = sign | 0x7F800000 | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t sl_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000;
    int32_t exponent = (int32_t)((x >> 23) & 0xFF) - 127 + 15;
    uint32_t mantissa = x & 0x7FFFFF;
    if (((x >> 23) & 0xFF) == 0xFF) return (uint16_t)(sign | 0x7C00 | (mantissa ? 0x200 : 0));
    if (exponent >= 31) return (uint16_t)(sign | 0x7C00);
    if (exponent <= 0) {
        if (exponent < -10) return (uint16_t)sign;
        mantissa |= 0x800000;
        const int shift = 14 - exponent;
        uint32_t half = mantissa >> shift;
        const uint32_t rest = mantissa & ((1u << shift) - 1);
        const uint32_t halfway = 1u << (shift - 1);
        if (rest > halfway || (rest == halfway && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)exponent << 10) | (mantissa >> 13);
    const uint32_t rest = mantissa & 0x1FFF;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++;
    return (uint16_t)half;
}

float sl_bf16_to_f32(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

int sl_block_elements(int type) {
    switch (type) {
    case SL_TYPE_F32: case SL_TYPE_F16: case SL_TYPE_BF16: return 1;
    case SL_TYPE_Q4_0: case SL_TYPE_Q5_0: case SL_TYPE_Q8_0: return QK;
    case SL_TYPE_Q4_K: case SL_TYPE_Q5_K: case SL_TYPE_Q6_K: return QK_K;
    default: return 0;
    }
}

int sl_block_bytes(int type) {
    switch (type) {
    case SL_TYPE_F32: return 4;
    case SL_TYPE_F16: case SL_TYPE_BF16: return 2;
    case SL_TYPE_Q4_0: return sizeof(block_q4_0);
    case SL_TYPE_Q5_0: return sizeof(block_q5_0);
    case SL_TYPE_Q8_0: return sizeof(block_q8_0);
    case SL_TYPE_Q4_K: return sizeof(block_q4_K);
    case SL_TYPE_Q5_K: return sizeof(block_q5_K);
    case SL_TYPE_Q6_K: return sizeof(block_q6_K);
    default: return 0;
    }
}

static void dequantize_q8_0(const block_q8_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = sl_f16_to_f32(x[i].d);
        for (int j = 0; j < QK; j++) y[i * QK + j] = x[i].qs[j] * d;
    }
}

static void dequantize_q4_0(const block_q4_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = sl_f16_to_f32(x[i].d);
        for (int j = 0; j < QK / 2; j++) {
            y[i * QK + j] = ((x[i].qs[j] & 0x0F) - 8) * d;
            y[i * QK + j + QK / 2] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void dequantize_q5_0(const block_q5_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = sl_f16_to_f32(x[i].d);
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < QK / 2; j++) {
            const uint8_t high0 = ((qh >> j) << 4) & 0x10;
            const uint8_t high1 = (qh >> (j + 12)) & 0x10;
            y[i * QK + j] = (((x[i].qs[j] & 0x0F) | high0) - 16) * d;
            y[i * QK + j + QK / 2] = (((x[i].qs[j] >> 4) | high1) - 16) * d;
        }
    }
}

/// The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block.
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *scale, uint8_t *min) {
    if (j < 4) {
        *scale = q[j] & 63;
        *min = q[j + 4] & 63;
    } else {
        *scale = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void dequantize_q4_K(const block_q4_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = sl_f16_to_f32(x[i].d);
        const float dmin = sl_f16_to_f32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int j = 0; j < QK_K; j += 64) {
            uint8_t sc, m;
            scale_min_k4(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0x0F) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

static void dequantize_q5_K(const block_q5_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = sl_f16_to_f32(x[i].d);
        const float dmin = sl_f16_to_f32(x[i].dmin);
        const uint8_t *ql = x[i].qs;
        const uint8_t *qh = x[i].qh;
        int is = 0;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < QK_K; j += 64) {
            uint8_t sc, m;
            scale_min_k4(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0x0F) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            ql += 32;
            is += 2;
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

static void dequantize_q6_K(const block_q6_K *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float d = sl_f16_to_f32(x[i].d);
        const uint8_t *ql = x[i].ql;
        const uint8_t *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int n = 0; n < QK_K; n += 128) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int8_t q1 = (int8_t)((ql[l + 0] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int8_t q2 = (int8_t)((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int8_t q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

int sl_dequantize_row(int type, const void *src, float *dst, int64_t n) {
    const int64_t per = sl_block_elements(type);
    if (per == 0 || n % per != 0) return -1;
    const int64_t nb = n / per;
    switch (type) {
    case SL_TYPE_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case SL_TYPE_F16: {
        const uint16_t *h = src;
        for (int64_t i = 0; i < n; i++) dst[i] = sl_f16_to_f32(h[i]);
        return 0;
    }
    case SL_TYPE_BF16: {
        const uint16_t *h = src;
        for (int64_t i = 0; i < n; i++) dst[i] = sl_bf16_to_f32(h[i]);
        return 0;
    }
    case SL_TYPE_Q4_0: dequantize_q4_0(src, dst, nb); return 0;
    case SL_TYPE_Q5_0: dequantize_q5_0(src, dst, nb); return 0;
    case SL_TYPE_Q8_0: dequantize_q8_0(src, dst, nb); return 0;
    case SL_TYPE_Q4_K: dequantize_q4_K(src, dst, nb); return 0;
    case SL_TYPE_Q5_K: dequantize_q5_K(src, dst, nb); return 0;
    case SL_TYPE_Q6_K: dequantize_q6_K(src, dst, nb); return 0;
    default: return -1;
    }
}
