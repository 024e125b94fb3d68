/* kern.h — the inner loops of the scalar scale search (search.h: smelt_qs_sym, used for
 * the k-quant super-block factors), one implementation per instruction set
 * (kern.c portable, kern_avx2.c AVX2). Private to quant/. Layer: quant.
 *
 * Every kernel works on a group of n = 8, 16 or 32 values and returns bit-identical
 * results on every instruction set: per element the same f32 operations (no fused
 * multiply-add), levels rounded half to even after clamping, and fixed summation orders:
 *   - the score kernels add over the elements in order (a SIMD lane per candidate);
 *   - the round kernels accumulate in 8 lanes (lane j takes elements j, j+8, ...), then
 *     add the lanes ((0+4)+(2+6))+((1+5)+(3+7)).
 * Inputs must be finite (the encoders replace NaN and infinities by 0 first). */
#ifndef SMELT_QUANT_KERN_H
#define SMELT_QUANT_KERN_H

#include <stdint.h>

typedef struct smelt_search_kernels {
    /* Signed levels: for each s[k], l = round(clamp(x * s[k], lo, hi));
     * out[2k..2k+1] = sum w l^2, sum w x l. */
    void (*sym_score)(int n, const float *x, const float *w, int lo, int hi, const float *s, int K, float *out);
    /* Levels for a fixed scale: l = round(clamp(x * id, lo, hi)), r = d l - x.
     * Stores L; returns sum w r^2; sums[0..2] = sum w l, sum w l^2, sum w x l. */
    float (*sym_round)(int n, const float *x, const float *w, float d, float id, int lo, int hi, int8_t *L,
                       float *sums);
} smelt_search_kernels;

extern const smelt_search_kernels smelt_search_kernels_portable;
extern const smelt_search_kernels smelt_search_kernels_avx2; /* only on CPUs with AVX2, FMA and F16C */

#endif
