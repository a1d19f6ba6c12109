#ifndef SLUICE_KERNELS_H
#define SLUICE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Tensor element types, numbered as in GGUF (ggml_type).
typedef enum {
    SL_TYPE_F32 = 0,
    SL_TYPE_F16 = 1,
    SL_TYPE_Q4_0 = 2,
    SL_TYPE_Q5_0 = 6,
    SL_TYPE_Q8_0 = 8,
    SL_TYPE_Q4_K = 12,
    SL_TYPE_Q5_K = 13,
    SL_TYPE_Q6_K = 14,
    SL_TYPE_BF16 = 30,
} sl_type;

/// Elements per block of `type` (1 for float types), or 0 when unsupported.
int sl_block_elements(int type);
/// Bytes per block of `type`, or 0 when unsupported.
int sl_block_bytes(int type);

/// Dequantizes `n` elements (a multiple of the block size) starting at `src` into `dst`.
/// Returns 0, or -1 for an unsupported type.
int sl_dequantize_row(int type, const void *src, float *dst, int64_t n);

/// Dot product of two float vectors of length n (AVX-512 / AVX2+FMA / portable, chosen at run time).
float sl_dot_f32(const float *a, const float *b, int64_t n);

/// Y[b * ldy + r] = dot(W row r, X[b * k .. b * k + k)) for r in [row_begin, row_end), b in [0, batch).
/// W holds rows of `k` elements of `type`, row after row. `scratch` holds at least k floats.
int sl_matmul_rows(int type, const void *w, int64_t k, int64_t row_begin, int64_t row_end,
                   const float *x, int64_t batch, float *y, int64_t ldy, float *scratch);

/// The SIMD level chosen at run time: "avx512", "avx2" or "portable".
const char *sl_simd_level(void);

/// IEEE half and bfloat16 conversions.
float sl_f16_to_f32(uint16_t h);
uint16_t sl_f32_to_f16(float f);
float sl_bf16_to_f32(uint16_t h);

#ifdef __cplusplus
}
#endif

#endif
