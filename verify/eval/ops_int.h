/* ops_int.h — private to verify/ops*.c: the kernel table each instruction set fills.
 * Every kernel has one exact definition of its arithmetic (stated below); the portable
 * versions in ops.c and the AVX2 versions in ops_avx2.c follow it operation for operation,
 * so both give bit-identical results. */
#ifndef SMELT_FWD_OPS_INT_H
#define SMELT_FWD_OPS_INT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/base/half.h"

/* GEMM micro-tile: 6 rows of X times a packed panel of 16 weight rows.
 * wp holds the panel transposed, wp[k*16 + j]. For i < 6, j < 16:
 *   c[i*ldc + j] = fma chain over k = 0..kc-1 of x[i*ldx + k] * wp[k*16 + j],
 *   starting from c[i*ldc + j] when acc, else from +0. */
#define SMELT_MR 6
#define SMELT_NR 16

/* Cody–Waite exp: n = rint(x·log2e); r = x - n·C1 - n·C2 (fma); degree-6 polynomial in
 * Horner form with fma; scaled by 2^n through the exponent bits. x < EXP_LO gives 0,
 * x > EXP_HI gives +inf. NaN gives NaN. */
#define SMELT_EXP_LO (-87.33654f)
#define SMELT_EXP_HI 88.37626f

/* The exp above for one value: the portable kernels and the tails of the vector ones. */
static inline float smelt_exp1(float x)
{
    if (x != x) return x;
    if (x < SMELT_EXP_LO) return 0.0f;
    if (x > SMELT_EXP_HI) return INFINITY;
    float t = x * 1.44269504088896341f;
    float nf = (t + 12582912.0f) - 12582912.0f;
    float r = fmaf(nf, -0.693359375f, x);
    r = fmaf(nf, 2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    float r2 = r * r;
    float y = fmaf(p, r2, r);
    y = y + 1.0f;
    int n = (int)nf;
    return y * smelt_bits_f32((uint32_t)(n + 127) << 23);
}

typedef struct smelt_fwd_kernels {
    const char *name;
    void (*gemm)(size_t kc, const float *x, size_t ldx, const float *wp, float *c, size_t ldc, int acc);
    /* Transpose-pack rows of f32 (`rows` rows, row stride lds floats, kc columns) into a
     * 16-wide panel; rows >= `rows` are zero. */
    void (*pack_f32)(const float *src, size_t lds, size_t rows, size_t kc, float *wp);
    /* Same from IEEE f16 rows, and from bfloat16 rows (exact conversions). */
    void (*pack_f16)(const uint16_t *src, size_t lds, size_t rows, size_t kc, float *wp);
    void (*pack_bf16)(const uint16_t *src, size_t lds, size_t rows, size_t kc, float *wp);
    /* y[i] = exp(x[i] - sub)  (the subtraction rounded once, then the exp above) */
    void (*exp_sub)(const float *x, float sub, float *y, size_t n);
    /* 8 lane sums, lane l = sum of x[i] for i % 8 == l in order of i; then
     * ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)). */
    float (*sum)(const float *x, size_t n);
    /* g[i] = (g[i] / (1 + exp(-g[i]))) * u[i] */
    void (*swiglu)(float *g, const float *u, size_t n);
    /* s[i*lds + j] = fma chain over d = 0..hd-1 of q[i*ldq + d] * kt[d*ldk + j], from +0;
     * i < m (m <= 4), j < n. */
    void (*scores)(const float *q, size_t ldq, size_t m, size_t hd, const float *kt, size_t ldk, size_t n,
                   float *s, size_t lds);
    /* o[d] = fma chain over j = 0..n-1 of p[j] * v[j*ldv + d], from +0; d < hd. */
    void (*wsum)(const float *p, size_t n, const float *v, size_t ldv, size_t hd, float *o);
} smelt_fwd_kernels;

extern const smelt_fwd_kernels smelt_fwd_kernels_portable;
/* NULL-named (unusable) when the compiler cannot build AVX2 code. */
extern const smelt_fwd_kernels smelt_fwd_kernels_avx2;

/* The lane tree shared by every sum kernel. */
static inline float smelt_lane_tree(const float l[8])
{
    float a0 = l[0] + l[4], a1 = l[1] + l[5], a2 = l[2] + l[6], a3 = l[3] + l[7];
    float b0 = a0 + a2, b1 = a1 + a3;
    return b0 + b1;
}

#endif
