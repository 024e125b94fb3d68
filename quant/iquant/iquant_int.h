/* iquant_int.h — private to quant/iquant/: the grid searches shared by IQ4_NL and IQ4_XS,
 * llama.cpp's encoder of both (reference blocks, and the candidate smelt's encoders must
 * never do worse than), and the rows loop. Layer: quant. Includes quant/ only. */
#ifndef SMELT_QUANT_IQUANT_INT_H
#define SMELT_QUANT_IQUANT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "iquant.h"
#include "quant/quant_int.h"

#define IQ4_GROUP 32 /* elements per grid scale */

/* Midpoints between neighbouring grid levels, ascending. */
extern const float iq4_mid[15];

/* Index of the grid level nearest to y (ties go up): the number of midpoints <= y, by a
 * branch-free binary search. 0 for NaN. */
static inline int iq4_index(float y)
{
    int k = y >= iq4_mid[7] ? 8 : 0;
    k += y >= iq4_mid[k + 3] ? 4 : 0;
    k += y >= iq4_mid[k + 1] ? 2 : 0;
    k += y >= iq4_mid[k] ? 1 : 0;
    return k;
}

/* The grid values of one group's 32 packed indices (16 bytes). */
static inline void iq4_group_values(const uint8_t *qs, int *v)
{
    for (int l = 0; l < 16; l++) {
        v[l] = smelt_iq4_grid[qs[l] & 15];
        v[l + 16] = smelt_iq4_grid[qs[l] >> 4];
    }
}

/* The best continuous scale of one group of IQ4_GROUP values under weights w (> 0): a
 * grid of inverse scales that map the largest |x| near either end of the grid (llama.cpp's
 * 15 candidates among them), the best refined by "fit the scale, re-pick the nearest
 * levels" until the error stops falling. 0 for a group that is all (nearly) zero. */
float iq4_group_scale(const float *x, const float *w);

/* Levels nearest to x / D (written to L when L is not NULL) and their weighted squared
 * error with the decoded values D * grid[L]. D = 0 gives level 8 (grid value 1, decoding
 * to 0) and the error of all zeros. */
float iq4_fit(const float *x, const float *w, float D, uint8_t *L);

/* Weighted squared error in f64 of n decoded values y against x (w NULL = ones). */
double iq4_error(const float *x, const float *y, const float *w, int n);

/* llama.cpp's encoder of one block of nsub groups (1: IQ4_NL, 8: IQ4_XS) with its own
 * weighting (x^2 without qw, qw * sqrt(2 mean(x^2) + x^2) with it) and `ntry` extra scales
 * per group (7; -1 for IQ4_NL's reference encoder, which keeps the first levels). L holds
 * 32 * nsub levels across calls: ggml leaves an all-zero IQ4_NL reference block's levels
 * as the previous block's, and so does this. sh / sl are NULL for IQ4_NL. */
void iq4_llama_block(int nsub, const float *x, const float *qw, int ntry, uint8_t *L, uint16_t *dh, uint8_t *qs,
                     uint16_t *sh, uint8_t *sl);

/* Pack 32 * ngroups levels into nibbles: qs[16g + l] = L[32g + l] | L[32g + 16 + l] << 4. */
void iq4_pack(uint8_t *qs, const uint8_t *L, int ngroups);

/* One type's block encoder: x (finite) and weights w of one block, raw importance qw (or
 * NULL, for llama.cpp's candidate); writes the block. */
typedef void (*iq4_block_fn)(const float *x, const float *w, const float *qw, void *blk);

/* What the rows loop needs of a type: its block encoder, or for the grid types their
 * description for the shared grid encoder (iqgrid.h: iqg_encode). */
typedef struct iq4_type {
    int blck;
    size_t bytes;
    iq4_block_fn enc; /* NULL when grid is set */
    void (*ref)(const float *x, void *dst, int64_t k);
    void (*dequantize)(const void *src, float *dst, size_t n);
    const struct iqg_type *grid;
    /* multiply a block's factor by c (unbiased rows), for a type whose f16 factor is not
     * at byte 0 (IQ1_M); NULL: the f16 at byte 0 */
    void (*scale_d)(void *blk, double c);
} iq4_type;

/* Rows loop: per block the non-finite values are read as 0 and the weights built (the
 * imatrix with a small floor, or ones; times the magnitude term of model m). m->ref
 * writes llama.cpp's reference blocks instead; m->unbias rescales each row's factors d to
 * an unbiased projection (quant/search.h). */
void iq4_quantize_rows(const iq4_type *t, const float *src, void *dst, int64_t n_rows, int64_t row_len,
                       const float *imx, const smelt_qerr *m);

#endif
