/* plain_avx2.c — AVX2 dot products of the float types (F32, F16, BF16): four registers
 * accumulated with separate multiply and add, reduced as in qtypes.c, the tail added
 * last — operation for operation the portable kernels. Built with -mavx2 -mfma -mf16c;
 * used only after runtime detection. */
#include <immintrin.h>

#include "quant_int.h"

#ifndef __STRICT_ANSI__
#error "build with -std=c11: GNU modes let the compiler fuse mul+add, breaking parity"
#endif

/* Four registers = 32 lanes; register r lane j holds elements 32 i + 8 r + j. */
static inline float reduce4(const __m256 *a)
{
    float v[8];
    _mm256_storeu_ps(v, _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3])));
    return q_lanes_sum(v);
}

static inline __m256 ld_f32(const void *p) { return _mm256_loadu_ps(p); }
static inline __m256 ld_f16(const void *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline __m256 ld_bf16(const void *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

#define ID(v) (v)
#define FLOAT_DOT(name, T, LD, CONV)                                                                         \
    static float name(const void *vx, const void *vy, size_t n)                                              \
    {                                                                                                        \
        const T *x = vx, *y = vy;                                                                            \
        __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()}; \
        size_t i = 0;                                                                                        \
        for (; i + 32 <= n; i += 32)                                                                         \
            for (int r = 0; r < 4; r++)                                                                      \
                a[r] = _mm256_add_ps(a[r], _mm256_mul_ps(LD(x + i + 8 * r), LD(y + i + 8 * r)));             \
        float s = reduce4(a);                                                                                \
        for (; i < n; i++) s = s + CONV(x[i]) * CONV(y[i]);                                                  \
        return s;                                                                                            \
    }
FLOAT_DOT(dot_f32, float, ld_f32, ID)
FLOAT_DOT(dot_f16, uint16_t, ld_f16, smelt_f16_to_f32)
FLOAT_DOT(dot_bf16, uint16_t, ld_bf16, smelt_bf16_to_f32)

static const smelt_qtype_ops k_avx2[] = {
    {SMELT_TYPE_F32, NULL, NULL, NULL, dot_f32, 0, false, false, NULL},
    {SMELT_TYPE_F16, NULL, NULL, NULL, dot_f16, 0, false, false, NULL},
    {SMELT_TYPE_BF16, NULL, NULL, NULL, dot_bf16, 0, false, false, NULL},
};
const smelt_qfamily smelt_plain_family_avx2 = {k_avx2, sizeof k_avx2 / sizeof k_avx2[0]};
