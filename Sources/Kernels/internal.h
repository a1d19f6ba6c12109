// Shared by the kernel files; not part of the module's interface.
#ifndef SLUICE_KERNELS_INTERNAL_H
#define SLUICE_KERNELS_INTERNAL_H

#include "Kernels.h"

// No implicit fused multiply-adds: the compiler may not turn a * b + c into one instruction
// where the target has FMA (it would there and not in the portable path, and the bits would
// part). Every fused multiply-add is written out: fmaf in C, _mm*_fmadd_ps in SIMD code.
#pragma STDC FP_CONTRACT OFF

/// Whether the active path is at least `isa` (one relaxed atomic load).
int sl_isa_at_least(int isa);

#endif
