/* iqgrid.h — the grid i-quants (IQ3_XXS, IQ2_XXS, IQ2_XS, IQ3_S): elements travel in
 * groups of 4 or 8 magnitudes that together name one point of a fixed codebook (a "grid"),
 * signs apart; a 4-bit scale per 16 or 32 elements times an f16 factor per 256 sizes them.
 * Layouts are format facts (identical to ggml's); little-endian, f16 is IEEE binary16.
 * Also the codebooks, their nearest-point search, and the parts every grid type's encoder
 * shares. Layer: quant. Includes quant/ only. */
#ifndef SMELT_QUANT_IQGRID_H
#define SMELT_QUANT_IQGRID_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "iquant_int.h"

/* ==== IQ3_XXS: 3.0625 bits per weight (98 bytes / 256) ====
 *
 *   0      2                  66                                      98
 *   +------+------------------+---------------------------------------+
 *   |  d   | qs[64]: point of | ss[8] (u32, little-endian): group j   |
 *   |      | elements 4k..4k+3|  bits 7m..7m+6 = signs of 8 elements  |
 *   |      |                  |  32j+8m.., bits 28..31 = scale s[j]   |
 *   +------+------------------+---------------------------------------+
 *   x[i] = d * (2 s[j] + 1) / 4 * grid3xxs[qs[i / 4]][i % 4] * sign
 *   A sign byte stores 7 bits; the 8th makes the count of minus signs even. */
typedef struct {
    uint16_t d;
    uint8_t qs[96];
} smelt_block_iq3_xxs;
_Static_assert(sizeof(smelt_block_iq3_xxs) == 98, "iq3_xxs block is 98 bytes");

/* ==== IQ2_XXS: 2.0625 bits per weight (66 bytes / 256) ====
 *
 *   0      2                                                        66
 *   +------+--------------------------------------------------------+
 *   |  d   | per group j of 32: u32 a = 4 point indices (byte m:    |
 *   |      | elements 32j+8m..+7), u32 b = 4 x 7 sign bits, s in    |
 *   |      | bits 28..31                                            |
 *   +------+--------------------------------------------------------+
 *   x[i] = d * (2 s[j] + 1) / 8 * grid2xxs[point][i % 8] * sign */
typedef struct {
    uint16_t d;
    uint16_t qs[32];
} smelt_block_iq2_xxs;
_Static_assert(sizeof(smelt_block_iq2_xxs) == 66, "iq2_xxs block is 66 bytes");

/* ==== IQ2_XS: 2.3125 bits per weight (74 bytes / 256) ====
 *
 *   0      2                                   66          74
 *   +------+-----------------------------------+-----------+
 *   |  d   | qs[32] (u16): bits 0..8 point of  | scales[8] |
 *   |      | elements 8k..8k+7, 9..15 signs    | 2 x 4 bits|
 *   +------+-----------------------------------+-----------+
 *   elements 16h..16h+15 use scale s = nibble h % 2 of scales[h / 2] (low nibble first):
 *   x[i] = d * (2 s + 1) / 8 * grid2xs[point][i % 8] * sign */
typedef struct {
    uint16_t d;
    uint16_t qs[32];
    uint8_t scales[8];
} smelt_block_iq2_xs;
_Static_assert(sizeof(smelt_block_iq2_xs) == 74, "iq2_xs block is 74 bytes");

/* ==== IQ3_S: 3.4375 bits per weight (110 bytes / 256) ====
 *
 *   0      2          66      74          106        110
 *   +------+----------+-------+-----------+----------+
 *   |  d   | qs[64]   | qh[8] | signs[32] | scales[4]|
 *   +------+----------+-------+-----------+----------+
 *   point of elements 4k..4k+3 = qs[k] | bit (k % 8) of qh[k / 8] << 8 (9 bits);
 *   signs: bit i % 8 of signs[i / 8] (all 8 stored); group j of 32 has scale
 *   s = nibble j % 2 of scales[j / 2]:  x[i] = d * (2 s + 1) * grid3s[point][i % 4] * sign */
typedef struct {
    uint16_t d;
    uint8_t qs[64];
    uint8_t qh[8];
    uint8_t signs[32];
    uint8_t scales[4];
} smelt_block_iq3_s;
_Static_assert(sizeof(smelt_block_iq3_s) == 110, "iq3_s block is 110 bytes");

/* The full sign byte of 7 stored bits: the 8th bit makes the number of set bits even
 * (ggml's ksigns_iq2xs table, computed). */
static inline unsigned iqg_signs8(unsigned s7) { return s7 | (unsigned)__builtin_parity(s7) << 7; }

/* ==== codebooks ==== */

#define IQG_MAX_DIM 8

/* A codebook and its search tables. The tables are built once per process at first use
 * (iqg_get), read-only after. */
typedef struct iqg_grid {
    int dim;            /* coordinates per point: 4 or 8 */
    int bits;           /* bits per coordinate in a code */
    int nlev;           /* levels a coordinate takes */
    int n;              /* points */
    int shells;         /* distance shells of neighbours kept for an off-grid cube point */
    const uint16_t *code;
    float level[8];     /* decoded level values */
    pthread_once_t *once;
    void (*init)(void);
    /* built: */
    float *val;         /* n * dim level values of every point */
    int32_t *map;       /* cube code -> point (>= 0) or -(1 + start of its neighbour list) */
    uint16_t *nbr;      /* neighbour lists: count, then points by (distance, index) */
    size_t nbr_cap, nbr_len;
} iqg_grid;

enum { IQG_2XXS, IQG_2XS, IQG_3XXS, IQG_3S, IQG_COUNT };

/* The codebook `which` with its tables built (thread-safe). */
const iqg_grid *iqg_get(int which);

/* ==== llama.cpp's search, shared by its grid encoders ====
 * Its points are levels 2l + 1 (l = level index), whatever the decoded values. */

/* Signs of 32 elements in 4 bytes of 7 bits, magnitudes to xv; an odd count of negatives
 * among 8 flips the one with the least w x^2 back (its magnitude turns negative). */
void iqg_llama_signs(const float *x, const float *w, float *xv, uint8_t *signs);

/* One point of `dim` magnitudes xv at inverse scale id: the cube point of levels
 * clamp(round((id xv - 1) / 2)), or, off the grid, the nearest of its neighbours under
 * weights wa at scale `scale`. Level indices to L; returns the point; *on tells which. */
int iqg_llama_point(const iqg_grid *g, const float *xv, const float *wa, float id, float scale, int8_t *L,
                    bool *on);

/* sum w xv q and sum w q^2 over n elements, q = 2 L + 1, in llama.cpp's order. */
void iqg_llama_sums(const float *w, const float *xv, const int8_t *L, int n, float *sqx, float *sq2);

/* ==== smelt's search ====
 * One super-block of 256 in groups of `gsize` elements, each with its own 4-bit scale s;
 * the group's step is d * (2 s + 1) * unit. */
typedef struct iqg_fit {
    const iqg_grid *g;
    int gsize;    /* elements per scale: 16 or 32 */
    float unit;   /* step of (2 s + 1) in units of d */
    bool parity;  /* sign bytes keep 7 bits (even count of minus signs) */
} iqg_fit;

/* The chosen encoding of one super-block. */
typedef struct iqg_choice {
    float d;           /* f16-exact, 0 for an all-zero block */
    uint8_t s[16];     /* scale per group */
    uint16_t pt[64];   /* point per dim elements */
    uint8_t sign[32];  /* sign bits per 8 elements (parity types: bit 7 implied) */
} iqg_choice;

/* Search the super-block x (finite) under weights w (> 0). Returns the weighted error. */
double iqg_search(const iqg_fit *f, const float *x, const float *w, iqg_choice *c);

#endif
