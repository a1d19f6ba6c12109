// Which kernel path runs: the best the CPU supports, capped by SLUICE_ISA or by tests.
#include "internal.h"
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = { "portable", "avx2", "avx512", "avx512vnni" };

static int detect(void) {
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")))
        return SL_ISA_PORTABLE;
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")))
        return SL_ISA_AVX2;
    return __builtin_cpu_supports("avx512vnni") ? SL_ISA_AVX512_VNNI : SL_ISA_AVX512;
}

int sl_isa_supported(void) {
    static _Atomic int supported = -1;
    int value = atomic_load_explicit(&supported, memory_order_relaxed);
    if (value < 0) {
        value = detect();
        atomic_store_explicit(&supported, value, memory_order_relaxed);
    }
    return value;
}

static _Atomic int active = -1;

/// The limit named by SLUICE_ISA, or the supported path when it is unset or unknown.
static int environment_limit(void) {
    const char *value = getenv("SLUICE_ISA");
    if (value) {
        for (int isa = 0; isa < 4; isa++) if (strcmp(value, names[isa]) == 0) return isa;
    }
    return SL_ISA_AVX512_VNNI;
}

int sl_isa_active(void) {
    int value = atomic_load_explicit(&active, memory_order_relaxed);
    if (value < 0) {
        const int limit = environment_limit(), supported = sl_isa_supported();
        value = limit < supported ? limit : supported;
        atomic_store_explicit(&active, value, memory_order_relaxed);
    }
    return value;
}

int sl_isa_at_least(int isa) { return sl_isa_active() >= isa; }

int sl_isa_set_limit(int limit) {
    const int supported = sl_isa_supported();
    const int value = limit < 0 ? 0 : limit < supported ? limit : supported;
    atomic_store_explicit(&active, value, memory_order_relaxed);
    return value;
}

const char *sl_isa_name(int isa) { return isa >= 0 && isa < 4 ? names[isa] : "unknown"; }

const char *sl_simd_level(void) { return sl_isa_name(sl_isa_active()); }
