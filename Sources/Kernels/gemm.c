// Float matrix products against dequantized weight rows, for long prompts (dense prefill).
// Every output is one chain of fused multiply-adds over k in order, starting from +0:
// y = fma(x[k-1], w[k-1], … fma(x[1], w[1], fma(x[0], w[0], 0))). A vector lane holds one
// output, so the vector width never changes a result, and splitting k into blocks only
// stores and reloads the running sum (exact). The portable path computes exactly that chain
// with fmaf; the AVX2 micro-kernel computes MR × NR of them at once, the AVX-512 one
// MR512 × 2·NR (two panels side by side, one 16-lane vector each: its 32 registers hold
// 28 accumulators).
#include "simd.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NR 16   // weight rows per packed panel: two AVX2 vectors of outputs
#define MR 6    // activation rows per micro-kernel: 12 accumulators, 2 weight vectors, 1 broadcast
#define KC 256  // k per block: one panel block is 16 KB
#define NC 8    // panels per block: 128 KB of weights for one k block stay in L2

/// The running sums of an mr × nr block of outputs (row stride ldc), advanced by kc steps
/// of k: a = activations [mr][lda] at the block's first k, b = a panel [kc][NR] there.
typedef void (*micro_kernel)(const float *a, int64_t lda, const float *b, int64_t kc, float *c, int64_t ldc, int first);

static void kernel_portable(int mr, int nr, const float *a, int64_t lda, const float *b, int64_t kc, float *c,
                            int64_t ldc, int first) {
    for (int i = 0; i < mr; i++) {
        for (int j = 0; j < nr; j++) {
            float sum = first ? 0.0f : c[i * ldc + j];
            for (int64_t kk = 0; kk < kc; kk++) sum = fmaf(a[i * lda + kk], b[kk * NR + j], sum);
            c[i * ldc + j] = sum;
        }
    }
}

__attribute__((target("avx2,fma"), always_inline))
static inline void kernel_avx2(const int mr, const float *a, int64_t lda, const float *b, int64_t kc, float *c,
                               int64_t ldc, int first) {
    __m256 acc[MR][2];
    for (int i = 0; i < mr; i++) {
        acc[i][0] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(c + i * ldc);
        acc[i][1] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(c + i * ldc + 8);
    }
    for (int64_t kk = 0; kk < kc; kk++) {
        const __m256 b0 = _mm256_load_ps(b + kk * NR), b1 = _mm256_load_ps(b + kk * NR + 8);
        for (int i = 0; i < mr; i++) {
            const __m256 ai = _mm256_broadcast_ss(a + i * lda + kk);
            acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    for (int i = 0; i < mr; i++) {
        _mm256_storeu_ps(c + i * ldc, acc[i][0]);
        _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]);
    }
}

#define SL_KERNEL_AVX2(M)                                                                                  \
    __attribute__((target("avx2,fma"))) static void kernel_avx2_##M(const float *a, int64_t lda,          \
                                                                     const float *b, int64_t kc, float *c, \
                                                                     int64_t ldc, int first) {             \
        kernel_avx2(M, a, lda, b, kc, c, ldc, first);                                                      \
    }
SL_KERNEL_AVX2(1)
SL_KERNEL_AVX2(2)
SL_KERNEL_AVX2(3)
SL_KERNEL_AVX2(4)
SL_KERNEL_AVX2(5)
SL_KERNEL_AVX2(6)
static const micro_kernel kernels_avx2[MR + 1] = { 0, kernel_avx2_1, kernel_avx2_2, kernel_avx2_3,
                                                    kernel_avx2_4, kernel_avx2_5, kernel_avx2_6 };

#define MR512 14  // activation rows per AVX-512 micro-kernel: 28 accumulators, 2 weight vectors

/// Like micro_kernel, over two full panels: b and b + panel (their outputs at c and c + NR).
typedef void (*pair_kernel)(const float *a, int64_t lda, const float *b, int64_t panel, int64_t kc, float *c, int64_t ldc, int first);

__attribute__((target("avx512f"), always_inline))
static inline void kernel_avx512(const int mr, const float *a, int64_t lda, const float *b, int64_t panel, int64_t kc,
                                 float *c, int64_t ldc, int first) {
    __m512 acc[MR512][2];
    for (int i = 0; i < mr; i++) {
        acc[i][0] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(c + i * ldc);
        acc[i][1] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(c + i * ldc + NR);
    }
    for (int64_t kk = 0; kk < kc; kk++) {
        const __m512 b0 = _mm512_load_ps(b + kk * NR), b1 = _mm512_load_ps(b + panel + kk * NR);
        for (int i = 0; i < mr; i++) {
            const __m512 ai = _mm512_set1_ps(a[i * lda + kk]);
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
    }
    for (int i = 0; i < mr; i++) {
        _mm512_storeu_ps(c + i * ldc, acc[i][0]);
        _mm512_storeu_ps(c + i * ldc + NR, acc[i][1]);
    }
}

#define SL_KERNEL_AVX512(M)                                                                                         \
    __attribute__((target("avx512f"))) static void kernel_avx512_##M(const float *a, int64_t lda, const float *b,  \
                                                                      int64_t panel, int64_t kc, float *c,          \
                                                                      int64_t ldc, int first) {                     \
        kernel_avx512(M, a, lda, b, panel, kc, c, ldc, first);                                                      \
    }
SL_KERNEL_AVX512(1)
SL_KERNEL_AVX512(2)
SL_KERNEL_AVX512(3)
SL_KERNEL_AVX512(4)
SL_KERNEL_AVX512(5)
SL_KERNEL_AVX512(6)
SL_KERNEL_AVX512(7)
SL_KERNEL_AVX512(8)
SL_KERNEL_AVX512(9)
SL_KERNEL_AVX512(10)
SL_KERNEL_AVX512(11)
SL_KERNEL_AVX512(12)
SL_KERNEL_AVX512(13)
SL_KERNEL_AVX512(14)
static const pair_kernel kernels_avx512[MR512 + 1] = {
    0, kernel_avx512_1, kernel_avx512_2, kernel_avx512_3, kernel_avx512_4, kernel_avx512_5, kernel_avx512_6, kernel_avx512_7,
    kernel_avx512_8, kernel_avx512_9, kernel_avx512_10, kernel_avx512_11, kernel_avx512_12, kernel_avx512_13, kernel_avx512_14 };

/// One block of outputs through the chosen path. A panel with fewer than NR rows (the
/// tile's last) runs on a full-width copy of its outputs.
static void run_block(int simd, int mr, int nr, const float *a, int64_t lda, const float *b, int64_t kc, float *c,
                      int64_t ldc, int first) {
    if (!simd) {
        kernel_portable(mr, nr, a, lda, b, kc, c, ldc, first);
        return;
    }
    if (nr == NR) {
        kernels_avx2[mr](a, lda, b, kc, c, ldc, first);
        return;
    }
    float part[MR * NR];
    if (!first) for (int i = 0; i < mr; i++) memcpy(part + i * NR, c + i * ldc, sizeof(float) * (size_t)nr);
    kernels_avx2[mr](a, lda, b, kc, part, NR, first);
    for (int i = 0; i < mr; i++) memcpy(c + i * ldc, part + i * NR, sizeof(float) * (size_t)nr);
}

/// The dense product of rows [row_begin, row_end) of `w`: the file's encoding, or (packed)
/// sl_pack's, whose rows dequantize to the same values.
static int dense_rows(int type, int packed_weights, const void *w, int64_t k, int64_t row_begin, int64_t row_end,
                      const float *x, int64_t batch, float *y, int64_t ldy) {
    const int64_t per = sl_block_elements(type);
    if (per == 0 || k % per != 0 || (packed_weights && sl_packed_group_bytes(type, k) == 0)) return -1;
    const int64_t row_bytes = k / per * sl_block_bytes(type);
    const int64_t count = row_end - row_begin;
    const int64_t panels = (count + NR - 1) / NR;
    if (count <= 0 || batch <= 0) return 0;
    // Panel p holds weight rows p·NR ..< p·NR + NR as [k][NR] floats (zeros past the tile).
    float *packed = aligned_alloc(64, sizeof(float) * (size_t)(panels * NR * k));
    float *row = malloc(sizeof(float) * (size_t)k);
    if (!packed || !row) {
        free(packed);
        free(row);
        return -1;
    }
    for (int64_t r = 0; r < panels * NR; r++) {
        if (r < count && packed_weights) sl_packed_row(type, w, k, row_begin + r, row);
        else if (r < count) sl_dequantize_row(type, (const char *)w + (row_begin + r) * row_bytes, row, k);
        else memset(row, 0, sizeof(float) * (size_t)k);
        float *panel = packed + (r / NR) * NR * k + r % NR;
        for (int64_t kk = 0; kk < k; kk++) panel[kk * NR] = row[kk];
    }
    free(row);
    const int simd = sl_isa_at_least(SL_ISA_AVX2);
    const int wide = sl_isa_at_least(SL_ISA_AVX512);
    for (int64_t p0 = 0; p0 < panels; p0 += NC) {
        const int64_t p1 = p0 + NC < panels ? p0 + NC : panels;
        for (int64_t k0 = 0; k0 < k; k0 += KC) {
            const int64_t kc = k0 + KC < k ? KC : k - k0;
            // AVX-512: pairs of full panels, MR512 rows at a time; a partial panel (the
            // tile's last) and an unpaired one through the AVX2 kernels, MR rows at a time.
            for (int64_t m0 = 0; wide && m0 < batch; m0 += MR512) {
                const int mr = (int)(m0 + MR512 < batch ? MR512 : batch - m0);
                int64_t p = p0;
                for (; p + 1 < p1 && count - (p + 1) * NR >= NR; p += 2) {
                    kernels_avx512[mr](x + m0 * k + k0, k, packed + p * NR * k + k0 * NR, NR * k, kc,
                                       y + m0 * ldy + row_begin + p * NR, ldy, k0 == 0);
                }
                for (; p < p1; p++) {
                    const int nr = (int)(count - p * NR < NR ? count - p * NR : NR);
                    for (int i0 = 0; i0 < mr; i0 += MR) {
                        run_block(simd, mr - i0 < MR ? mr - i0 : MR, nr, x + (m0 + i0) * k + k0, k, packed + p * NR * k + k0 * NR, kc,
                                  y + (m0 + i0) * ldy + row_begin + p * NR, ldy, k0 == 0);
                    }
                }
            }
            for (int64_t m0 = 0; !wide && m0 < batch; m0 += MR) {
                const int mr = (int)(m0 + MR < batch ? MR : batch - m0);
                for (int64_t p = p0; p < p1; p++) {
                    const int nr = (int)(count - p * NR < NR ? count - p * NR : NR);
                    run_block(simd, mr, nr, x + m0 * k + k0, k, packed + p * NR * k + k0 * NR, kc,
                              y + m0 * ldy + row_begin + p * NR, ldy, k0 == 0);
                }
            }
        }
    }
    free(packed);
    return 0;
}

int sl_matmul_rows_dense(int type, const void *w, int64_t k, int64_t row_begin, int64_t row_end,
                         const float *x, int64_t batch, float *y, int64_t ldy) {
    return dense_rows(type, 0, w, k, row_begin, row_end, x, batch, y, ldy);
}

int sl_matmul_packed_dense(int type, const void *packed, int64_t k, int64_t row_begin, int64_t row_end,
                           const float *x, int64_t batch, float *y, int64_t ldy) {
    return dense_rows(type, 1, packed, k, row_begin, row_end, x, batch, y, ldy);
}
