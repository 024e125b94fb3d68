/* search.h — scale searches shared by the quant families: given a small group of values
 * x[] with importance weights w[] (> 0, finite), find the scale (and offset) and the
 * integer levels that minimise the weighted squared error  sum w[i] (x[i] - xhat[i])^2.
 * Layer: quant. Private to quant/. Two users:
 *   - smelt_qs_sym below: one group at a time (the k-quant super-block factors), on the
 *     kernels of kern.h;
 *   - the lane searches of lsearch.inc: 8 groups at a time (legacy blocks, k-quant
 *     sub-blocks), which take the same plans.
 *
 * A search walks a plan: a grid of inverse scales around the one that maps the extreme
 * value to the extreme level, each scored by the error left after a least-squares fit of
 * its levels; optionally an exact sweep; then rounds of "re-fit the scale to the levels,
 * re-round the levels to the scale" while the error drops.
 *
 * The exact sweep: levels round(s x) only change at the thresholds s = (k - 1/2) / |x_i|,
 * so walking the thresholds of a window in order (a k-way merge over the elements) visits
 * every distinct level assignment of the window once, each scored in O(1) from running
 * f64 sums. The least-squares optimum over (scale, levels) for a fixed rounding offset is
 * such an assignment, so a window that contains it finds it exactly.
 *
 * Deterministic, allocation-free, thread-safe; n <= SMELT_QS_MAX and, for the kernels, a
 * multiple of 8. Results do not depend on the kernel set (kern.h guarantees parity). */
#ifndef SMELT_QUANT_SEARCH_H
#define SMELT_QUANT_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kern.h"

#define SMELT_QS_MAX 32

typedef struct smelt_qs_plan {
    float win_lo, win_hi; /* grid window, relative to the natural inverse scale */
    int ncand;            /* grid points (>= 1; 1 = the natural scale only) */
    float sweep;          /* smelt_qs_sym: exact-sweep half-width around the best grid
                             point, in grid steps; lane offset searches: > 0 replaces
                             the grids by exact sweeps of their windows (0: no sweep) */
    int polish;           /* re-fit / re-round rounds (>= 1) */
    int recentre;         /* lane searches: zoom passes, further grids around the best
                             scale, the first an eighth of the window wide (+-), each
                             next 0.4 times the last; offset searches also re-centre the
                             rounding on the fitted offset */
    int offsets;          /* lane offset searches: first passes with the rounding grid
                             shifted up by k/4 of a level, k = 0 .. offsets-1 (0/1: one) */
} smelt_qs_plan;

typedef struct smelt_qs_fit {
    float a, b;          /* x ~ a L + b (b = 0 for symmetric searches) */
    float err;           /* weighted squared error of L with a, b (f32 kernels) */
    float sl, sl2, sxl;  /* sum w L, sum w L^2, sum w x L of the levels */
    float sw, sx;        /* sum w, sum w x of the group */
} smelt_qs_fit;

/* Symmetric: x ~ a L, integer L in [lo, hi] with lo <= 0 <= hi (for example [-8, 7] for
 * Q4_0, [0, 63] for non-negative sub-block scales). Both signs of a are tried when the
 * range is not symmetric. An all-zero group gives a = 0, L = 0. */
void smelt_qs_sym(const smelt_search_kernels *k, int n, int lo, int hi, const float *x, const float *w,
                  const smelt_qs_plan *p, int8_t *L, smelt_qs_fit *f);

/* Exact sweep of one offset group (scalar, f64 sums), for the lane searches: the
 * inverse scale s in [s_lo, s_hi] whose levels l = clamp(round((x - base) s), 0, nmax)
 * leave the least error after their least-squares fit x ~ a l + b (b <= 0 if b_nonpos),
 * or -1 if none is admissible. w may be NULL (all ones). */
float smelt_qs_sweep_asym(int n, int nmax, const float *x, const float *w, float base, float s_lo, float s_hi,
                          bool b_nonpos);

/* ==== importance weights ==== */

/* A small positive floor for the weights of one imatrix row (1e-6 of its mean), so that
 * no element's weight is exactly zero and all-zero blocks stay well defined. */
float smelt_qs_weight_floor(const float *imx, int64_t row_len);
/* An error model's imatrix lift for a row whose floor is `floor` (from
 * smelt_qs_weight_floor): a times the row's mean. */
float smelt_qs_weight_lift(float floor, float a);
/* Error models' magnitude term: w[i] *= (c * s2 + x[i]^2)^(p/2) + 1e-30, s2 = the mean of
 * x^2 over the n values (non-finite x read as 0); n <= SMELT_QS_MAX_GROUP. */
#define SMELT_QS_MAX_GROUP 256
void smelt_qs_magnitude(const float *x, int n, float p, float c, float *w);
/* w[j] = imx[j] (negative or non-finite read as 0) + floor; all ones if imx is NULL. */
void smelt_qs_block_weights(const float *imx, float floor, int n, float *w);
/* Copy n values replacing NaN and infinities by 0; returns true if any was replaced. */
bool smelt_qs_sanitize(const float *x, int n, float *out);

/* ==== unbiased rows (smelt_qerr.unbias) ====
 * Error-minimizing scales shrink a decoded row towards zero (it is the projection of the
 * source, shortened by the error). The row is rescaled so that its importance-weighted
 * projection on the source is 1: sum a x q = sum a x x. */

/* Add a group's sum a x x and sum a x q to s[0], s[1] (a NULL = ones; n a multiple of 8,
 * n <= SMELT_QS_MAX_GROUP). */
void smelt_qs_unbias_sums(const float *x, const float *a, const float *q, int n, double s[2]);
/* The row's correction c = s[0] / s[1], if it is a plausible one (in (0.5, 2); false for
 * all-zero rows and rows without importance): the rule both rescaling paths follow. */
bool smelt_qs_unbias_scale(const double s[2], double *c);
/* Multiply the f16 factors at byte offsets off[0 .. nf) of nb blocks of `bytes` bytes each
 * (the factors that scale a whole block: d, and the min or dmin) by s[0] / s[1], when that
 * is a plausible correction (in (0.5, 2); all-zero rows are left alone). */
void smelt_qs_unbias_apply(uint8_t *blocks, int64_t nb, size_t bytes, const size_t *off, int nf, const double s[2]);

#endif
