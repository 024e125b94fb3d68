/* cpu.h — runtime CPU feature detection for choosing SIMD kernels.
 * Layer: quant. libc only. */
#ifndef SMELT_QUANT_CPU_H
#define SMELT_QUANT_CPU_H

#include <stdbool.h>

enum {
    SMELT_CPU_AVX2 = 1 << 0,
    SMELT_CPU_FMA = 1 << 1,
    SMELT_CPU_F16C = 1 << 2,
};

/* Bit set of SMELT_CPU_* features this CPU and OS support (AVX state enabled by the OS
 * is checked through XGETBV). Computed once; thread-safe. Setting the environment
 * variable SMELT_NO_SIMD=1 before the first call reports no features. */
unsigned smelt_cpu_features(void);
/* True if the AVX2 kernels (which also use FMA and F16C instructions) may run. */
bool smelt_cpu_has_avx2(void);

#endif
