/* quant_int.h — private helpers shared by the quant/ families: rounding, f16 access,
 * weight preparation, family tables. Not installed; never included outside quant/.
 * Layer: quant. Includes formats/ only. */
#ifndef SMELT_QUANT_INT_H
#define SMELT_QUANT_INT_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "formats/base/half.h"
#include "quant/qtypes.h"


/* Round to nearest, ties to even, for |v| < 2^22: adding 1.5·2^23 leaves the integer in
 * the low mantissa bits. The reference quantizers of llama.cpp round this way, and
 * so do the SIMD round instructions, which keeps every path bit-identical. */
static inline int q_nearest(float v)
{
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int q_clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static inline float q_f16(const void *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return smelt_f16_to_f32(h);
}

static inline void q_put_f16(void *p, float v)
{
    uint16_t h = smelt_f32_to_f16(v);
    memcpy(p, &h, 2);
}

/* The element of largest magnitude, with its sign (the first of equals; 0 for all zeros):
 * what ggml's reference encoders scale a block by. */
static inline float q_signed_absmax(const float *x, int n)
{
    float amax = 0, v = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            v = x[j];
        }
    return v;
}

/* f32 → f16 → f32: the value a stored f16 field will decode to. */
static inline float q_as_f16(float v) { return smelt_f16_to_f32(smelt_f32_to_f16(v)); }

/* The sum of 8 partial sums in one fixed order, ((0+4)+(2+6))+((1+5)+(3+7)), the order an
 * AVX2 register's halves are added in: loops that keep 8 lanes give the same float in
 * every kernel set. */
static inline float q_lanes_sum(const float *a)
{
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* A family's contribution to the traits table: n entries, either an array of ops or (for
 * families whose descriptors live one per file) an array of pointers to them. */
typedef struct smelt_qfamily {
    const smelt_qtype_ops *ops;
    size_t n;
    const smelt_qtype_ops *const *each; /* used when ops is NULL */
} smelt_qfamily;

static inline const smelt_qtype_ops *smelt_qfamily_at(const smelt_qfamily *f, size_t i)
{
    return f->ops ? &f->ops[i] : f->each[i];
}

/* Portable kernels of each family, and the AVX2 overrides (entries whose function
 * pointers are non-NULL replace the portable ones when the CPU has AVX2+FMA+F16C). */
extern const smelt_qfamily smelt_legacy_family, smelt_legacy_family_avx2;
extern const smelt_qfamily smelt_kquant_family, smelt_kquant_family_avx2;
extern const smelt_qfamily smelt_iquant_family;
extern const smelt_qfamily smelt_ternary_family, smelt_mxfp_family;

#endif
