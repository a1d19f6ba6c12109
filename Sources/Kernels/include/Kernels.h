#ifndef SLUICE_KERNELS_H
#define SLUICE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Every kernel has a portable C path that defines its bits; each SIMD path reproduces them
// exactly (a fixed order of float operations, fused multiply-adds where the portable path
// calls fmaf, exact integer sums). Results therefore do not depend on the instruction set,
// the batch composition or the thread count.

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

// MARK: - Instruction sets

/// The kernel paths, in increasing order of what they need from the CPU.
typedef enum {
    SL_ISA_PORTABLE = 0,     ///< C only
    SL_ISA_AVX2 = 1,         ///< AVX2 + FMA + F16C
    SL_ISA_AVX512 = 2,       ///< and AVX-512 F/BW/VL
    SL_ISA_AVX512_VNNI = 3,  ///< and AVX-512 VNNI
} sl_isa;

/// The best path this CPU supports.
int sl_isa_supported(void);
/// The path in use: the supported one, capped by `SLUICE_ISA` (portable, avx2, avx512,
/// avx512vnni) at start-up or by sl_isa_set_limit.
int sl_isa_active(void);
/// Caps the path in use (tests run every path on the same inputs); returns the active one.
/// Safe at any time: every path gives the same bits, so a concurrent computation that sees
/// the change half-way gives the same result.
int sl_isa_set_limit(int limit);
/// The name of a path: "portable", "avx2", "avx512", "avx512vnni".
const char *sl_isa_name(int isa);
/// The name of the active path (kept for `sluice model info`).
const char *sl_simd_level(void);

// MARK: - Blocks and conversions

/// Elements per block of `type` (1 for float types), or 0 when unsupported.
int sl_block_elements(int type);
/// Bytes per block of `type`, or 0 when unsupported.
int sl_block_bytes(int type);

/// Dequantizes `n` elements (a multiple of the block size) starting at `src` into `dst`.
/// Returns 0, or -1 for an unsupported type.
int sl_dequantize_row(int type, const void *src, float *dst, int64_t n);

/// IEEE half and bfloat16 conversions.
float sl_f16_to_f32(uint16_t h);
uint16_t sl_f32_to_f16(float f);
float sl_bf16_to_f32(uint16_t h);

// MARK: - Float products

/// Dot product of two float vectors of length n. Bits: element i is added (fused
/// multiply-add) to partial sum i mod 32 for the first n − n mod 32 elements; the partials
/// are reduced pairwise (p + p+16, then +8, +4, +2, +1); the remaining elements are
/// accumulated in order into a separate sum, added last.
float sl_dot_f32(const float *a, const float *b, int64_t n);

/// Y[b * ldy + r] = dot(W row r, X[b * k .. b * k + k)) for r in [row_begin, row_end), b in [0, batch).
/// W holds rows of `k` elements of `type`, row after row. `scratch` holds at least k floats.
int sl_matmul_rows(int type, const void *w, int64_t k, int64_t row_begin, int64_t row_end,
                   const float *x, int64_t batch, float *y, int64_t ldy, float *scratch);

/// Float matrix product against dequantized weight rows (long prompts):
/// Y[b * ldy + r] = Σ_j X[b * k + j] · W[r][j] for r in [row_begin, row_end), b in [0, batch).
/// Bits: every output is one chain of fused multiply-adds in j order starting from +0, so it
/// depends neither on the instruction set nor on the tiling. Returns 0, or -1 for an
/// unsupported type or an allocation failure.
int sl_matmul_rows_dense(int type, const void *w, int64_t k, int64_t row_begin, int64_t row_end,
                         const float *x, int64_t batch, float *y, int64_t ldy);

// MARK: - Integer products

/// Bytes of one activation row of k elements quantized for dot products with `weight_type`
/// (Q8_0 blocks for Q4_0/Q5_0/Q8_0 weights, Q8_K blocks for K-quants), or 0 when the
/// weight type multiplies float activations.
int64_t sl_activation_row_bytes(int weight_type, int64_t k);

/// Quantizes `batch` activation rows of k floats for `weight_type` (as llama.cpp does, so
/// results stay close to the reference).
void sl_quantize_activations(int weight_type, const float *x, int64_t batch, int64_t k, void *out);

/// Like sl_matmul_rows, with activations quantized by sl_quantize_activations: integer dot
/// products of weight blocks with activation blocks. Bits: Q8_0-family rows add each
/// block's eight 4-byte integer sums, times the two scales' product, to eight lane sums
/// (fused multiply-add), reduced as (l + l+4), then (+2), then (+1); K-quant rows add one
/// float term per 256-element super-block, in order.
int sl_matmul_rows_quantized(int type, const void *w, int64_t k, int64_t row_begin, int64_t row_end,
                             const void *xq, int64_t batch, float *y, int64_t ldy);

// MARK: - Packed Q8_0 and Q5_0 products

/// Bytes of a Q8_0 or Q5_0 (`type`) matrix of `rows` rows of k elements (k a multiple of
/// 32) repacked by sl_pack: groups of sixteen rows, each sl_packed_group_bytes(type, k)
/// (Q5_0: the file's 22 bytes per row and block). 0 for another type or a bad k.
int64_t sl_packed_group_bytes(int type, int64_t k);
int64_t sl_packed_bytes(int type, int64_t rows, int64_t k);

/// Repacks the groups [group_begin, group_end) of the Q8_0 or Q5_0 matrix `w` into `out`
/// (which holds sl_packed_bytes(type, rows, k)): sixteen rows interleaved four values at a
/// time, so that one vector lane is one weight row. Returns 0, or -1 for a bad type or k.
int sl_pack(int type, const void *w, int64_t rows, int64_t k, int64_t group_begin, int64_t group_end, void *out);

/// Row `row` of a packed matrix, dequantized (the same values as sl_dequantize_row).
void sl_packed_row(int type, const void *packed, int64_t k, int64_t row, float *out);

/// The per-block terms sl_matmul_packed needs, for `blocks` activation blocks from
/// sl_quantize_activations(type): each block's scale as a float (xd) and −bias · Σ of its
/// values (offsets; bias 128 for Q8_0, 16 for Q5_0: the stored bytes are w + bias). Computed
/// once per product and shared by every row range. Returns 0, or -1 for another type.
int sl_packed_activation_terms(int type, const void *xq, int64_t blocks, float *xd, int32_t *offsets);

/// Y[b * ldy + r] = W row r · activation row b for r in [row_begin, row_end) (row_begin a
/// multiple of 16), with activations from sl_quantize_activations(type) and their terms
/// from sl_packed_activation_terms (batch · k / 32 blocks). Bits: each output starts from
/// +0 and, for block i in order, adds (fused multiply-add) the exact integer sum of the
/// block's 32 products times d_w[i] · d_x[i]: the same on every path and for every batch
/// composition. Returns 0, or -1 for bad arguments.
int sl_matmul_packed(int type, const void *packed, int64_t k, int64_t rows, int64_t row_begin, int64_t row_end,
                     const void *xq, const float *xd, const int32_t *offsets, int64_t batch, float *y, int64_t ldy);

/// sl_matmul_rows_dense on a packed matrix (the same bits: its rows dequantize to the
/// file's values), so that dense products do not map the file's copy back in.
int sl_matmul_packed_dense(int type, const void *packed, int64_t k, int64_t row_begin, int64_t row_end,
                           const float *x, int64_t batch, float *y, int64_t ldy);

// MARK: - Element-wise operations and attention

/// out = x / rms(x) * w over n elements (out may equal x).
void sl_rmsnorm(const float *x, const float *w, int64_t n, float eps, float *out);

/// g[i] = gelu_tanh(g[i]) * u[i].
void sl_gelu_mul(float *g, const float *u, int64_t n);
/// The same product with a polynomial exp for tanh (relative error ~1e-6 instead of a
/// correctly rounded tanhf): for rows computed in float (dense prefill), whose rounding need
/// not match llama.cpp's. Same bits on every path.
void sl_gelu_mul_fast(float *g, const float *u, int64_t n);

/// g[i] = silu(g[i]) * u[i].
void sl_silu_mul(float *g, const float *u, int64_t n);

/// Rotates `heads` heads of `head_dim` (NEOX layout: pairs (i, i + head_dim/2)) at `position`.
void sl_rope_neox(float *x, int64_t heads, int64_t head_dim, int64_t position, float base);

/// Rotates `heads` heads of `head_dim` (GPT-J/llama layout: adjacent pairs (2i, 2i+1)).
void sl_rope_norm(float *x, int64_t heads, int64_t head_dim, int64_t position, float base);

/// The rotations of one position: cs[2i] = cos θ_i, cs[2i + 1] = sin θ_i for i < head_dim/2
/// (head_dim floats), θ_i = position · base^(−2i/head_dim) built by repeated multiplication.
/// Computed once per position and reused by every layer and head: sl_rope_apply(x, …, cs)
/// gives sl_rope_neox's (neox = 1) or sl_rope_norm's (neox = 0) bits.
void sl_rope_angles(int64_t head_dim, int64_t position, float base, float *cs);
void sl_rope_apply(float *x, int64_t heads, int64_t head_dim, const float *cs, int neox);

/// Attention of one query row over cached keys/values.
/// q: [n_head, head_dim]; k_cache/v_cache: [capacity, n_head_kv * head_dim] ring buffers;
/// the keys of positions first..last (inclusive) are at slot (pos % capacity).
/// out: [n_head, head_dim]. scores: scratch of (last - first + 1) floats.
void sl_attention(const float *q, const float *k_cache, const float *v_cache, int64_t capacity,
                  int64_t first, int64_t last, int64_t n_head, int64_t n_head_kv, int64_t head_dim,
                  float scale, float *out, float *scores);

/// Index of the largest of n values.
int64_t sl_argmax(const float *x, int64_t n);

/// log(sum(exp(x))) over n values, computed stably.
float sl_logsumexp(const float *x, int64_t n);

// MARK: - Threads and memory

/// Runs body(context, i) for i in 0..<count on up to `threads` threads: the caller and a
/// persistent pool (workers spin briefly between loops, then sleep). Items are handed out
/// one by one; a loop submitted while another runs is executed by its caller alone.
typedef void (*sl_parallel_body)(void *context, int64_t index);
void sl_parallel_for(int threads, int64_t count, sl_parallel_body body, void *context);

/// Process-wide allocator policy for inference: blocks up to 256 MB come from the heap and
/// freed memory is kept for reuse (glibc mallopt), instead of fresh zeroed mappings per call.
/// Peak RSS then stays at its high-water mark. Call once at start-up.
void sl_reuse_large_allocations(void);

#ifdef __cplusplus
}
#endif

#endif
