/* search.h — scale searches shared by the quant families: given a small group of values
 * x[] with importance weights w[] (> 0), find the scale (and offset) and the integer
 * levels that minimise the weighted squared error  sum w[i] * (x[i] - xhat[i])^2.
 * Layer: quant. Includes nothing from smelt but this directory's private header.
 *
 * All routines are deterministic, allocate nothing, are thread-safe and work on at most
 * SMELT_QS_MAX values. They return the continuous least-squares parameters for the
 * levels they chose; callers round those to the storage format and re-round the levels.
 *
 * The core is an exact sweep: the levels round(s * x) only change at the thresholds
 * s = (k - 1/2) / |x_i|, so walking the thresholds of a window of inverse scales in
 * order (a k-way merge over the elements) visits every distinct level assignment of the
 * window once, each scored in O(1) with running sums. The least-squares optimum over all
 * (scale, levels) lies in that family, so a wide enough window finds it exactly. */
#ifndef SMELT_QUANT_SEARCH_H
#define SMELT_QUANT_SEARCH_H

#include <stdbool.h>
#include <stdint.h>

#define SMELT_QS_MAX 32

/* Symmetric scale: x ~ d * L, integer L in [lo, hi] with lo <= 0 <= hi (for example
 * [-8, 7] for Q4_0, [0, 63] for a vector of non-negative sub-block scales). Both signs of
 * d are tried when the range is not symmetric. The inverse scale is swept over
 * [win_lo, win_hi] times the one mapping the largest |x| to its extreme level.
 * Returns d (0 and all L = 0 for an all-zero group). */
float smelt_qs_sym(int n, int lo, int hi, const float *x, const float *w, int8_t *L, float win_lo,
                   float win_hi);

/* Scale and offset: x ~ a * L + b, a > 0, integer L in [0, nmax]. With `b_nonpos` the
 * offset is kept <= 0 (the k-quant "- dmin * m" convention). `passes` (>= 1) sweeps
 * alternate with re-centring the rounding on the fitted offset. Returns a, stores b. */
float smelt_qs_asym(int n, int nmax, const float *x, const float *w, uint8_t *L, float *b, bool b_nonpos,
                    float win_lo, float win_hi, int passes);

/* Same problem, cheaper: ncand inverse scales spread evenly over the window around the
 * min/max mapping, each re-fitted by least squares; the best by exact error is kept,
 * then refined by alternating rounding and re-fitting. */
float smelt_qs_asym_grid(int n, int nmax, const float *x, const float *w, uint8_t *L, float *b, bool b_nonpos,
                         float win_lo, float win_hi, int ncand);

/* Weighted squared error of x ~ d * L (int8 levels) and of x ~ a * L + b (uint8 levels),
 * computing each reconstruction as the dequantizers do (d * L, a * L + b). */
double smelt_qs_err_sym(int n, const float *x, const float *w, float d, const int8_t *L);
double smelt_qs_err_asym(int n, const float *x, const float *w, float a, float b, const uint8_t *L);

/* Best levels for a fixed scale: L = clamp(round(x / d), lo, hi); returns the error. */
double smelt_qs_round_sym(int n, int lo, int hi, const float *x, const float *w, float d, int8_t *L);
/* Best levels for fixed a, b: L = clamp(round((x - b) / a), 0, nmax); returns the error. */
double smelt_qs_round_asym(int n, int nmax, const float *x, const float *w, float a, float b, uint8_t *L);

/* ==== importance weights ==== */

/* A small positive floor for the weights of one imatrix row (1e-6 of its mean), so that
 * no element's weight is exactly zero and all-zero blocks stay well defined. */
float smelt_qs_weight_floor(const float *imx, int64_t row_len);
/* w[j] = imx[j] (negative or non-finite read as 0) + floor; all ones if imx is NULL. */
void smelt_qs_block_weights(const float *imx, float floor, int n, float *w);

#endif
