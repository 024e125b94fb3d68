/* iqgrid.h — the grid i-quants (IQ3_XXS, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_S): elements travel in
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

/* ==== IQ2_S: 2.5625 bits per weight (82 bytes / 256) ====
 *
 *   0      2          34         66      74          82
 *   +------+----------+----------+-------+-----------+
 *   |  d   | qs[32]   | signs[32]| qh[8] | scales[8] |
 *   +------+----------+----------+-------+-----------+
 *   point of elements 8k..8k+7 = qs[k] | bits 2(k % 4).. of qh[k / 4] << 8 (10 bits);
 *   signs: bit i % 8 of signs[i / 8] (all 8 stored); elements 16h..16h+15 use scale
 *   s = nibble h % 2 of scales[h / 2]:  x[i] = d * (2 s + 1) / 8 * grid2s[point][i % 8] * sign */
typedef struct {
    uint16_t d;
    uint8_t qs[32];
    uint8_t signs[32];
    uint8_t qh[8];
    uint8_t scales[8];
} smelt_block_iq2_s;
_Static_assert(sizeof(smelt_block_iq2_s) == 82, "iq2_s block is 82 bytes");

/* The full sign byte of 7 stored bits: the 8th bit makes the number of set bits even
 * (ggml's ksigns_iq2xs table, computed). */
static inline unsigned iqg_signs8(unsigned s7) { return s7 | (unsigned)__builtin_parity(s7) << 7; }

/* Little-endian 32-bit words inside blocks. */
static inline uint32_t iqg_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void iqg_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}

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
    float *model;       /* n * dim model levels 2l + 1 of every point (llama.cpp's search) */
    int32_t *map;       /* cube code -> point (>= 0) or -(1 + start of its neighbour list) */
    uint16_t *nbr;      /* neighbour lists: count, then points by (distance, index) */
    size_t nbr_cap, nbr_len;
} iqg_grid;

enum { IQG_2XXS, IQG_2XS, IQG_2S, IQG_3XXS, IQG_3S, IQG_1S, IQG_COUNT }; /* IQG_1S: IQ1_S and IQ1_M */

/* The codebook `which` with its tables built (thread-safe). */
const iqg_grid *iqg_get(int which);

/* ==== llama.cpp's search, shared by its grid encoders ====
 * Its points are levels 2l + 1 (l = level index), whatever the decoded values. */

/* Signs of n elements (a multiple of 8) in n / 8 bytes, magnitudes to xv. With parity a
 * byte keeps 7 bits: an odd count of negatives among 8 flips the one with the least w x^2
 * back (its magnitude turns negative). */
void iqg_llama_signs(const float *x, const float *w, int n, bool parity, float *xv, uint8_t *signs);

/* How llama.cpp searches one group's scale (per type). */
typedef enum { IQG_REPICK_OFF_GRID, IQG_REPICK_ALL_IF_OFF, IQG_REPICK_ALL } iqg_repick;
typedef struct iqg_llama_plan {
    int kmax;          /* model levels 2l + 1, l < kmax */
    int tmax;          /* trial inverse scales (2 kmax - 1 + t tstep) / m, t = -tmax..tmax, */
    float tstep;       /* m = the largest magnitude, or with qp_start kmax times ... */
    bool qp_start;     /* ... the scale of make_qp_quants on kmax + 1 levels (IQ2_XXS) */
    float eps;         /* a group whose largest magnitude is below this is skipped */
    bool on_init;      /* a point counts as on the grid until a trial says otherwise */
    iqg_repick repick; /* after the trials, which points are re-picked at the fitted scale */
} iqg_llama_plan;

/* llama.cpp's scale search of one group of n magnitudes xv (from iqg_llama_signs) under
 * weights w: the points (idx, one per dim elements) and the fitted scale, which may be
 * negative (the caller flips the signs). false for a skipped group (idx untouched). */
bool iqg_llama_group(const iqg_grid *g, const iqg_llama_plan *p, int n, const float *xv, const float *w, int *idx,
                     float *scale);

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

/* llama.cpp's block encoder of the types without cursor quirks (IQ2_XXS, IQ2_XS, IQ2_S,
 * IQ3_XXS): per group of `gsize` its weights, signs and iqg_llama_group; the factor maps
 * the largest group scale on 31 (times dmul in the stored d). */
typedef enum {
    IQG_NOQW_SQRT,  /* weights without importance: sqrt(sigma2 + x^2) (importance one) */
    IQG_NOQW_X2,    /* x^2 */
    IQG_NOQW_FLOOR, /* sigma2 / 4 + x^2 */
} iqg_noqw;
typedef struct iqg_llama_spec {
    int grid;      /* IQG_* */
    int gsize;     /* elements per scale: 16 or 32 */
    float sigma;   /* sigma2 = sigma * mean(x^2); with importance qw: qw * sqrt(sigma2 + x^2) */
    iqg_noqw noqw;
    bool parity;   /* sign bytes of 7 bits */
    float dmul;    /* stored d = dmul * largest scale / 31 */
    iqg_llama_plan plan;
} iqg_llama_spec;

/* One block of 256 by llama.cpp's encoder (qw NULL: no importance), as a choice for the
 * type's packer (d = 0: the block is all zeros). */
void iqg_llama_block(const iqg_llama_spec *sp, const float *x, const float *qw, iqg_choice *c);

/* Search the super-block x (finite) under weights w (> 0). Returns the weighted error. */
double iqg_search(const iqg_fit *f, const float *x, const float *w, iqg_choice *c);

/* How a grid type stores one group of 32 elements: their signed grid values (levels, the
 * point's coordinates, with signs) and the integer scale 2s + 1 of each half of 16 (equal
 * for types with one scale per 32). A block starts with its f16 factor d; the element is
 * d * scale * unit * value, which is bit for bit ggml's d * (s + 1/2) * 2 unit * |value| * sign. */
typedef struct iqg_layout {
    int grid;   /* IQG_* */
    size_t bytes;
    float unit; /* 1/4, 1/8 or 1 */
    void (*group)(const iqg_grid *g, const uint8_t *blk, int j, int *q, int *ls);
} iqg_layout;

/* The signed values of one run (dim elements) of point `point`, sign i in bit i. */
void iqg_signed_run(const iqg_grid *g, int point, unsigned signs, int *q);

/* Decode n elements (a multiple of 256). */
void iqg_dequantize(const iqg_layout *l, const void *src, float *y, size_t n);

/* A grid type's encoder: smelt's search (`fit`, its grid filled in at use) packed by `put`,
 * and llama.cpp's encoder beside it (`spec` packed by `put`, or its own `llama`). */
typedef struct iqg_type {
    int grid; /* IQG_* */
    iqg_fit fit;
    size_t bytes;
    void (*put)(const iqg_choice *c, void *blk);
    const iqg_llama_spec *spec;
    void (*llama)(const float *x, const float *qw, void *blk); /* when spec is NULL */
    void (*deq)(const void *src, float *y, size_t n);
} iqg_type;

/* llama.cpp's encoder of the type on k elements (a multiple of 256) without importance:
 * its reference blocks (or, for the types ggml has no reference encoder for, what
 * ggml_quantize_chunk writes for an importance of ones). */
void iqg_llama_rows(const iqg_type *t, const float *x, void *dst, int64_t k);

/* One block of 256 (finite x, weights w > 0, raw importance qw or NULL): smelt's search,
 * or llama.cpp's block when that decodes closer under w. */
void iqg_encode(const iqg_type *t, const float *x, const float *w, const float *qw, void *dst);

/* dst = whichever of two blocks of 256 (`bytes` each) decodes closer to x under w; `mine`
 * on a tie or when `theirs` does not decode to finite values. */
void iqg_keep_better(const float *x, const float *w, void (*deq)(const void *, float *, size_t), const void *mine,
                     const void *theirs, size_t bytes, void *dst);

#endif
