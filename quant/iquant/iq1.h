/* iq1.h — IQ1_S and IQ1_M: runs of 8 elements name one point of a 2048-point codebook
 * whose coordinates are -1, 0 or 1; a run's values are shifted by +1/8 or -1/8 (one bit per
 * group of 32 in IQ1_S, per run in IQ1_M) and sized by a 3-bit scale per 32 (IQ1_S) or 16
 * (IQ1_M) times an f16 factor per 256. Layouts are format facts (identical to ggml's);
 * little-endian, f16 is IEEE binary16. Layer: quant. Includes quant/ only. */
#ifndef SMELT_QUANT_IQ1_H
#define SMELT_QUANT_IQ1_H

#include "iqgrid.h"

#define IQ1_DELTA 0.125f /* the run shift, in units of the step */

/* ==== IQ1_S: 1.5625 bits per weight (50 bytes / 256) ====
 *
 *   0      2                                 34                          50
 *   +------+---------------------------------+---------------------------+
 *   |  d   | qs[32]: low 8 bits of the point | qh[8] (u16): group j of 32|
 *   |      | of elements 8k..8k+7            | bits 3m..3m+2 = high bits |
 *   |      |                                 | of run m, 12..14 = scale  |
 *   |      |                                 | s, 15 = shift is -1/8     |
 *   +------+---------------------------------+---------------------------+
 *   x[i] = d * (2 s + 1) * (grid1s[point][i % 8] + shift) */
typedef struct {
    uint16_t d;
    uint8_t qs[32];
    uint16_t qh[8];
} smelt_block_iq1_s;
_Static_assert(sizeof(smelt_block_iq1_s) == 50, "iq1_s block is 50 bytes");

/* ==== IQ1_M: 1.75 bits per weight (56 bytes / 256) ====
 *
 *   0                                 32                 48             56
 *   +---------------------------------+------------------+--------------+
 *   | qs[32]: low 8 bits of the point | qh[16]: run 2h   | scales[8] as |
 *   | of elements 8k..8k+7            | (h = 0..15): bits| 4 u16: bits  |
 *   |                                 | 0..2 high bits,  | 3m..3m+2 =   |
 *   |                                 | 3 shift is -1/8; | scale of     |
 *   |                                 | run 2h+1: bits   | group 4u+m   |
 *   |                                 | 4..6, 7          | of 16        |
 *   +---------------------------------+------------------+--------------+
 *   the f16 factor d is the top nibbles of the 4 u16 (u16 0 holds d's low nibble);
 *   x[i] = d * (2 s + 1) * (grid1s[point][i % 8] + shift) */
typedef struct {
    uint8_t qs[32];
    uint8_t qh[16];
    uint8_t scales[8];
} smelt_block_iq1_m;
_Static_assert(sizeof(smelt_block_iq1_m) == 56, "iq1_m block is 56 bytes");

/* Decoded run: dl * (grid value + delta) for the 8 coordinates of `point`. */
void iq1_run(const iqg_grid *g, int point, float dl, float delta, float *y);

/* Indices of x[0..n) in ascending order of x, equal values in index order. */
void iq1_sort(const float *x, int n, int *idx);

/* llama.cpp's point of one run: the cube point of levels L (0..2) if it is on the grid,
 * else the neighbour with the least sum w (scale xx[level] - x)^2 (L updated). *on tells
 * which. */
int iq1_llama_point(const iqg_grid *g, const float *x, const float *w, float scale, const float *xx, int8_t *L,
                    bool *on);

/* The point whose decoded run dl * (value + delta) is nearest to x under w: the cube point
 * of the nearest levels when it is on the grid, else the nearest of its neighbours. Its
 * weighted squared error to *err. */
int iq1_pick(const iqg_grid *g, const float *x, const float *w, float dl, float delta, float *err);

/* Weighted squared error of run x against the decoded point. */
float iq1_run_err(const iqg_grid *g, int point, const float *x, const float *w, float dl, float delta);

/* One block's encoding: factor d (f16-exact; 0 = all zeros), the 3-bit scale of each
 * group (8 of 32 or 16 of 16), the shift sign and the point of each run of 8. */
typedef struct iq1_choice {
    float d;
    uint8_t l[16];
    uint8_t neg[32]; /* 1: the run's values are shifted by -1/8 */
    uint16_t pt[32];
} iq1_choice;

/* The shifted levels: iq1_lev[neg][level] = level - 1 +- 1/8. */
extern const float iq1_lev[2][3];

/* llama.cpp's least-squares sums over nrun runs of 8 (points pt, shifts neg): adds
 * sum w q x and sum w q^2 to *sqx, *sq2, q = mul * shifted level, in its order. */
void iq1_llama_sums(const iqg_grid *g, const uint16_t *pt, const uint8_t *neg, int nrun, const float *x,
                    const float *w, float mul, float *sqx, float *sq2);
/* llama.cpp's refit of a group's scale when some of its points fell off the grid: the
 * least-squares scale over the group's nrun runs, or `scale` when that is not positive. */
float iq1_llama_refit_scale(const iqg_grid *g, const uint16_t *pt, const uint8_t *neg, int nrun, const float *x,
                            const float *w, float scale);

/* Smelt's search from a starting choice c (llama.cpp's block): at c's factor, per group
 * the scales around the start and both shifts (per group of `gsize`, or per run when
 * run_shift), each run's nearest point at those decoded values; then the factor refitted
 * by least squares to the chosen points and the groups searched again, while the error
 * falls. c is replaced when the search finds a lower weighted error; returns c's error. */
double iq1_refine(const iqg_grid *g, int gsize, bool run_shift, const float *x, const float *w, iq1_choice *c);

/* A type: its group size, shift per run or per group, llama.cpp's block encoder (qw NULL:
 * without importance), the packer and the decoder. */
typedef struct iq1_type {
    int gsize;
    bool run_shift;
    size_t bytes;
    void (*llama)(const float *x, const float *qw, iq1_choice *c);
    void (*pack)(const iq1_choice *c, void *blk);
    void (*deq)(const void *src, float *y, size_t n);
} iq1_type;

/* llama.cpp's blocks of k elements (a multiple of 256) without importance. */
void iq1_llama_rows(const iq1_type *t, const float *x, void *dst, int64_t k);

/* One block of 256: llama.cpp's block (importance qw) refined by iq1_refine under weights
 * w; llama.cpp's own block when that decodes closer. */
void iq1_encode(const iq1_type *t, const float *x, const float *w, const float *qw, void *dst);

#endif
