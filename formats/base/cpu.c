/* cpu.c — CPUID/XGETBV feature detection (x86); no features elsewhere (see cpu.h). */
#include "cpu.h"

#include <pthread.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static unsigned detect(void)
{
    unsigned a, b, c, d, f = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12), f16c = c & (1u << 29);
    if (!osxsave || !avx) return 0;
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    if ((xlo & 6) != 6) return 0; /* XMM and YMM state not enabled by the OS */
    if (fma) f |= SMELT_CPU_FMA;
    if (f16c) f |= SMELT_CPU_F16C;
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, c, d);
        if (b & (1u << 5)) f |= SMELT_CPU_AVX2;
    }
    return f;
}
#else
static unsigned detect(void) { return 0; }
#endif

static unsigned g_features;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void init(void)
{
    const char *e = getenv("SMELT_NO_SIMD");
    g_features = (e && *e && *e != '0') ? 0 : detect();
}

unsigned smelt_cpu_features(void)
{
    pthread_once(&g_once, init);
    return g_features;
}

bool smelt_cpu_has_avx2(void)
{
    unsigned need = SMELT_CPU_AVX2 | SMELT_CPU_FMA | SMELT_CPU_F16C;
    return (smelt_cpu_features() & need) == need;
}

int smelt_cpu_isa(int isa)
{
    if (isa == SMELT_ISA_PORTABLE) return SMELT_ISA_PORTABLE;
    if ((isa < 0 || isa == SMELT_ISA_AVX2) && smelt_cpu_has_avx2()) return SMELT_ISA_AVX2;
    return SMELT_ISA_PORTABLE;
}

const char *smelt_isa_name(int isa)
{
    switch (isa) {
    case SMELT_ISA_PORTABLE: return "portable";
    case SMELT_ISA_AVX2: return "avx2";
    default: return "unknown";
    }
}
