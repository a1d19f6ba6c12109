// Shared by the kernel files; not part of the module's interface.
#ifndef SLUICE_KERNELS_INTERNAL_H
#define SLUICE_KERNELS_INTERNAL_H

#include "Kernels.h"

// No implicit fused multiply-adds: the compiler may not turn a * b + c into one instruction
// where the target has FMA (it would there and not in the portable path, and the bits would
// part). Every fused multiply-add is written out: fmaf in C, _mm*_fmadd_ps in SIMD code.
#pragma STDC FP_CONTRACT OFF

#include <stdint.h>

/// Elements per Q4_0 / Q5_0 / Q8_0 block.
#define QK 32
/// A Q8_0 block (weights, and activations for Q8_0-family products): 32 int8 values, an f16 scale.
typedef struct { uint16_t d; int8_t qs[QK]; } q8_0_t;

/// Whether the active path is at least `isa` (one relaxed atomic load).
int sl_isa_at_least(int isa);

#endif
