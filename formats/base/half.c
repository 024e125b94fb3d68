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

size_t smelt_row_f32_to_f16(const float *src, uint16_t *dst, size_t n, int overflow_mode)
{
    size_t over = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t h = smelt_f32_to_f16(src[i]);
        if ((h & 0x7fff) == 0x7c00 && isfinite(src[i])) {
            over++;
            if (overflow_mode == SMELT_F16_OVERFLOW_CLAMP) h = (uint16_t)((h & 0x8000) | 0x7bff);
        }
        dst[i] = h;
    }
    return over;
}

void smelt_row_f32_to_bf16(const float *src, uint16_t *dst, size_t n)
{
    for (size_t i = 0; i < n; i++) dst[i] = smelt_f32_to_bf16(src[i]);
}
