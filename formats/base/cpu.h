/* cpu.h — which SIMD kernel set this CPU and OS can run: the one place smelt asks the
 * CPU (CPUID, and XGETBV for the OS's support of the AVX state) and reads SMELT_NO_SIMD.
 * Layer: formats/base. libc + pthreads only.
 *
 * Every stage with SIMD kernels (quant/ encoders and dots, verify/ matrix products,
 * convert/ LoRA merge) picks its kernel set here; each SIMD set gives the same bits as
 * the portable one, so the choice changes speed only. */
#ifndef SMELT_BASE_CPU_H
#define SMELT_BASE_CPU_H

#include <stdbool.h>

/* Kernel sets. SMELT_ISA_AVX2 needs AVX2, FMA and F16C, with the YMM state enabled by
 * the OS. */
enum smelt_isa { SMELT_ISA_PORTABLE = 0, SMELT_ISA_AVX2 = 1, SMELT_ISA_COUNT };

enum {
    SMELT_CPU_AVX2 = 1 << 0,
    SMELT_CPU_FMA = 1 << 1,
    SMELT_CPU_F16C = 1 << 2,
};

/* Bit set of SMELT_CPU_* features this CPU and OS support (AVX state enabled by the OS
 * is checked through XGETBV). Computed once; thread-safe. Setting the environment
 * variable SMELT_NO_SIMD to anything but "" or "0" before the first call reports no
 * features, so every stage runs its portable kernels. */
unsigned smelt_cpu_features(void);
/* True if the AVX2 kernel set (which also uses FMA and F16C instructions) may run. */
bool smelt_cpu_has_avx2(void);
/* The kernel set to use when `isa` is asked for: the fastest this CPU runs when isa < 0,
 * else isa itself if this CPU runs it, else SMELT_ISA_PORTABLE. */
int smelt_cpu_isa(int isa);
/* "portable", "avx2"; "unknown" for anything else. */
const char *smelt_isa_name(int isa);

#endif
