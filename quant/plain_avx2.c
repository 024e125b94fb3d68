/* plain_avx2.c — AVX2 dot products of the float types (F32, F16, BF16): eight lanes
 * accumulated with separate multiply and add, reduced ((0+4)+(2+6))+((1+5)+(3+7)), the
 * tail added last — operation for operation the portable kernels of qtypes.c. Built with
 * -mavx2 -mfma -mf16c; used only after runtime detection. */
#include <immintrin.h>

#include "quant_int.h"

#ifndef __STRICT_ANSI__
#error "build with -std=c11: GNU modes let the compiler fuse mul+add, breaking parity"
#endif

static inline float reduce(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

static inline __m256 bf16x8(const uint16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static float dot_f32(const void *vx, const void *vy, size_t n)
{
    const float *x = vx, *y = vy;
    __m256 acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    float s = reduce(acc);
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

static float dot_f16(const void *vx, const void *vy, size_t n)
{
    const uint16_t *x = vx, *y = vy;
    __m256 acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i)));
        __m256 b = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(y + i)));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(a, b));
    }
    float s = reduce(acc);
    for (; i < n; i++) s += smelt_f16_to_f32(x[i]) * smelt_f16_to_f32(y[i]);
    return s;
}

static float dot_bf16(const void *vx, const void *vy, size_t n)
{
    const uint16_t *x = vx, *y = vy;
    __m256 acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_add_ps(acc, _mm256_mul_ps(bf16x8(x + i), bf16x8(y + i)));
    float s = reduce(acc);
    for (; i < n; i++) s += smelt_bf16_to_f32(x[i]) * smelt_bf16_to_f32(y[i]);
    return s;
}

static const smelt_qtype_ops k_avx2[] = {
    {SMELT_TYPE_F32, NULL, NULL, NULL, dot_f32, 0, false, false},
    {SMELT_TYPE_F16, NULL, NULL, NULL, dot_f16, 0, false, false},
    {SMELT_TYPE_BF16, NULL, NULL, NULL, dot_bf16, 0, false, false},
};
const smelt_qfamily smelt_plain_family_avx2 = {k_avx2, sizeof k_avx2 / sizeof k_avx2[0]};
