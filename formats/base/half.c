/* half.c — row converters and FP8 decoding. Includes base/ only. */
#include "half.h"

#include <math.h>

float smelt_f8e4m3_to_f32(uint8_t v)
{
    uint32_t sign = (uint32_t)(v & 0x80) << 24;
    uint32_t exp = (v >> 3) & 0xf;
    uint32_t man = v & 7;
    if (exp == 0xf && man == 7) return smelt_bits_f32(sign | 0x7fc00000u);
    float r;
    if (exp == 0)
        r = ldexpf((float)man, -9); /* subnormal: man/8 * 2^-6 */
    else
        r = ldexpf(1.0f + (float)man / 8.0f, (int)exp - 7);
    return sign ? -r : r;
}

float smelt_f8e5m2_to_f32(uint8_t v)
{
    /* E5M2 is the top byte of an IEEE binary16 */
    return smelt_f16_to_f32((uint16_t)((uint16_t)v << 8));
}

void smelt_row_f16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = smelt_f16_to_f32(src[i]);
}

void smelt_row_bf16_to_f32(const uint16_t *src, float *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = smelt_bf16_to_f32(src[i]);
}

/* float bits read through an aliasing-safe integer view, so the loops vectorize */
typedef uint32_t __attribute__((may_alias)) u32_alias;

/* Branch-free form of smelt_f32_to_f16 (same results for every input; NaNs become the
 * canonical quiet NaN with their sign) so the compiler can vectorize the row loop.
 * Subnormal results: adding 0.5 (as a float with exponent 2^-1) makes the FPU do the
 * round-to-nearest-even shift; normal results: rebias and round on the integer bits. */
static inline uint16_t f16_select(uint32_t u)
{
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    uint32_t inf_or_nan = a > 0x7f800000u ? 0x7e00u : 0x7c00u;
    float sub_f = smelt_bits_f32(a) + 0.5f;
    uint32_t sub = smelt_f32_bits(sub_f) - 0x3f000000u;
    uint32_t nor = (a + 0xc8000fffu + ((a >> 13) & 1)) >> 13;
    uint32_t r = a >= 0x477ff000u ? inf_or_nan : (a < 0x38800000u ? sub : nor);
    return (uint16_t)(r | sign);
}

size_t smelt_row_f32_to_f16(const float *src, uint16_t *dst, size_t n, int overflow_mode)
{
    size_t over = 0;
    const u32_alias *s = (const u32_alias *)(const void *)src;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = s[i];
        uint32_t a = u & 0x7fffffffu;
        uint16_t h = f16_select(u);
        /* finite but rounds beyond 65504 */
        uint32_t ov = (a >= 0x477ff000u) & (a < 0x7f800000u);
        over += ov;
        uint16_t clamped = (uint16_t)((h & 0x8000u) | 0x7bffu);
        dst[i] = (ov && overflow_mode == SMELT_F16_OVERFLOW_CLAMP) ? clamped : h;
    }
    return over;
}


void smelt_row_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
    const u32_alias *s = (const u32_alias *)(const void *)src;
    for (size_t i = 0; i < n; i++) {
        uint32_t u = s[i];
        uint16_t nan = (uint16_t)((u >> 16) | 0x40);
        uint16_t r = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
        dst[i] = (u & 0x7fffffffu) > 0x7f800000u ? nan : r;
    }
}
