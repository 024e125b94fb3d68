/* half.h — 16-bit and 8-bit float formats to and from f32.
 * Layer: formats/base. libc only.
 * All narrowing conversions round to nearest, ties to even. NaN stays NaN (quiet),
 * infinities stay infinite. f32→f16 values beyond ±65504 are counted by the row
 * converters; the caller chooses to clamp them or let them become ±inf. */
#ifndef SMELT_HALF_H
#define SMELT_HALF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t smelt_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float smelt_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE binary16 → f32 (exact). */
static inline float smelt_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);
    } else if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else {
        u = sign | ((exp + 112) << 23) | (man << 13);
    }
    return smelt_bits_f32(u);
}

/* f32 → IEEE binary16, round to nearest even; overflow gives ±inf. */
static inline uint16_t smelt_f32_to_f16(float f)
{
    uint32_t u = smelt_f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00 | ((a >> 13) & 0x3ff)); /* NaN, quiet */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* rounds to >= 65520: inf */
    if (a < 0x38800000u) {                                  /* below smallest normal 2^-14 */
        if (a < 0x33000000u) return sign;                   /* < 2^-25: rounds to 0 */
        uint32_t e = a >> 23;
        uint32_t m = (a & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = a - 0x38000000u; /* rebias exponent 127 → 15 */
    uint32_t rem = r & 0x1fff;
    r >>= 13;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

static inline float smelt_bf16_to_f32(uint16_t h) { return smelt_bits_f32((uint32_t)h << 16); }

/* f32 → bfloat16, round to nearest even; NaN → quiet NaN with the same sign. */
static inline uint16_t smelt_f32_to_bf16(float f)
{
    uint32_t u = smelt_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1)) >> 16);
}

/* OCP FP8 E4M3FN (no infinities, 0x7f/0xff NaN, max 448) and E5M2 (IEEE-like) → f32. */
float smelt_f8e4m3_to_f32(uint8_t v);
float smelt_f8e5m2_to_f32(uint8_t v);

/* ==== row converters ==== */

enum { SMELT_F16_OVERFLOW_INF = 0, SMELT_F16_OVERFLOW_CLAMP = 1 };

void smelt_row_f16_to_f32(const uint16_t *src, float *dst, size_t n);
void smelt_row_bf16_to_f32(const uint16_t *src, float *dst, size_t n);
/* Returns the number of finite inputs whose magnitude exceeds the f16 range (they became
 * ±inf, or ±65504 with SMELT_F16_OVERFLOW_CLAMP). */
size_t smelt_row_f32_to_f16(const float *src, uint16_t *dst, size_t n, int overflow_mode);
void smelt_row_f32_to_bf16(const float *src, uint16_t *dst, size_t n);

#endif
