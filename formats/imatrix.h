/* imatrix.h — importance matrices (per-column sums of squared activations seen by each
 * weight) in llama.cpp's two file formats: the GGUF imatrix of current llama-imatrix and
 * the legacy .dat. Reading and writing. Layer: formats. Includes base/ and gguf.h.
 *
 * GGUF imatrix: KVs general.type = "imatrix", imatrix.datasets [string],
 * imatrix.chunk_count u32, imatrix.chunk_size u32; for every weight W two f32 tensors,
 * "W.in_sum2" [n_cols, n_mat] (raw sums of x², one row per expert of a 3-D MoE weight)
 * and "W.counts" [1, n_mat] (tokens that reached each matrix).
 *
 * Legacy .dat (all little-endian): i32 n_entries; per entry i32 name_len, name bytes,
 * i32 ncall, i32 n_values, f32 values[n_values] (= sums/count × ncall); then optionally
 * i32 chunk_count, i32 len, dataset bytes.
 *
 * Importance weights for quantizing (smelt_imx_weights) follow llama-quantize: each
 * matrix's sums divided by its count; a matrix with count 0 (an expert no calibration
 * token was routed to) gets uniform weights 1. */
#ifndef SMELT_IMATRIX_H
#define SMELT_IMATRIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/err.h"

enum smelt_imx_format {
    SMELT_IMX_GGUF = 0,   /* sums are raw Σx², counts per matrix */
    SMELT_IMX_LEGACY = 1, /* values are (Σx²/count)·ncall, one ncall per entry */
};

typedef struct smelt_imx_entry {
    char *name;        /* weight tensor name, e.g. "blk.0.ffn_down_exps.weight" (owned) */
    uint64_t n_values; /* n_mat × columns of the weight */
    uint64_t n_mat;    /* matrices (experts of a 3-D weight); 1 for legacy entries */
    float *sums;       /* n_values (owned) */
    int64_t *counts;   /* n_mat (owned): GGUF token counts, or {ncall} for legacy */
    uint64_t *exact;   /* NULL, or 2 x n_values (owned): the sums in exact fixed point
                        * (see "exact sums" below), when the file or the run kept them */
} smelt_imx_entry;

typedef struct smelt_imx {
    int format;                /* enum smelt_imx_format of the source (or of the data) */
    smelt_imx_entry *entries;  /* sorted by name (strcmp), unique */
    size_t n_entries;
    char **datasets;           /* calibration file names */
    size_t n_datasets;
    uint32_t chunk_count;      /* chunks the sums were collected over */
    uint32_t chunk_size;       /* tokens per chunk (GGUF only; 0 if unknown) */
    bool has_metadata;         /* GGUF: datasets, chunk_count and chunk_size keys present */
    bool write_exact;          /* smelt_imx_write: also store the entries' exact sums */
} smelt_imx;

/* ==== exact sums ====
 * A sum of squares in 128-bit fixed point: lo holds the fraction in units of 2^-64, hi the
 * integer part. Every x² (exact in double for an f32 x) is added after truncation to
 * 2^-64, so the sum is exact integer arithmetic: it does not depend on the order or the
 * grouping of the additions, and sums of slices of a run add up to the run's bit for bit.
 * In a GGUF imatrix written by smelt for a slice, "W.in_sum2.exact" is an i64 tensor
 * [2, n_values] of (lo, hi) pairs beside W.in_sum2 (llama.cpp ignores it). */
/* a += v for a finite v >= 0 below 2^64. Returns false (a unchanged) otherwise. */
static inline bool smelt_imx_fixed_add_double(uint64_t *a, double v)
{
    uint64_t b;
    memcpy(&b, &v, 8);
    const unsigned ex = (unsigned)(b >> 52); /* sign bit included: v < 0 fails below */
    if (!ex) return v == 0; /* zero (an f32 square is never subnormal in double) */
    if (ex > 1023 + 63) return false;       /* >= 2^64, negative, Inf or NaN */
    const uint64_t m = (b & ((1ull << 52) - 1)) | (1ull << 52);
    const int s = (int)ex - 1011; /* v = m x 2^(s - 64) */
    uint64_t lo, hi;
    if (s <= -53) return true;  /* below 2^-64: truncated to 0 */
    if (s < 0) lo = m >> -s, hi = 0;
    else if (s == 0) lo = m, hi = 0;
    else if (s < 64) lo = m << s, hi = m >> (64 - s);
    else lo = 0, hi = m << (s - 64);
    const bool carry = __builtin_add_overflow(a[0], lo, &a[0]);
    return !__builtin_add_overflow(a[1], hi + carry, &a[1]); /* hi < 2^64 - 1 */
}
/* a += b (pairs); false on overflow of the integer part. */
static inline bool smelt_imx_fixed_add(uint64_t *a, const uint64_t *b)
{
    const bool carry = __builtin_add_overflow(a[0], b[0], &a[0]);
    const bool o1 = __builtin_add_overflow(a[1], b[1], &a[1]);
    const bool o2 = __builtin_add_overflow(a[1], (uint64_t)carry, &a[1]);
    return !o1 && !o2;
}
/* The f32 a file stores for an exact sum (a fixed function of the pair). */
static inline float smelt_imx_fixed_f32(const uint64_t *a)
{
    return (float)((double)a[1] + (double)a[0] * 0x1p-64);
}

/* Read an imatrix file, GGUF (by its magic) or legacy. *out is NULL on error.
 * Errors: EIO; EFORMAT naming the file, the entry and the byte offset (truncated data,
 * unpaired in_sum2/counts, non-f32 tensors, shapes that disagree, negative or
 * non-finite counts, duplicate or empty entries, no entries at all). Caller frees. */
int smelt_imx_read(const char *path, smelt_imx **out, smelt_err *e);
/* Same on a buffer (not retained); `name` is used in errors. */
int smelt_imx_read_mem(const void *buf, size_t size, const char *name, smelt_imx **out,
                       smelt_err *e);
void smelt_imx_free(smelt_imx *m); /* NULL is a no-op */

/* Entry for a weight name, or NULL. */
const smelt_imx_entry *smelt_imx_find(const smelt_imx *m, const char *name);

/* Importance weights of an entry as llama-quantize uses them, into out[n_values]:
 * GGUF: sums of matrix j divided by counts[j], uniform 1 for a matrix whose count is 0;
 * legacy: values / ncall (as stored when ncall <= 0). *n_zero (may be NULL) receives the
 * number of matrices with count 0. EFORMAT if a weight is NaN, infinite or negative. */
int smelt_imx_weights(const smelt_imx *m, const smelt_imx_entry *en, float *out, uint64_t *n_zero,
                      smelt_err *e);

/* ==== building and writing (smelt-imatrix) ==== */

/* An empty GGUF-semantics imatrix (format SMELT_IMX_GGUF). NULL on ENOMEM. */
smelt_imx *smelt_imx_new(void);
/* Add or accumulate raw sums and counts for a weight: n_values = n_mat × n_cols. An
 * existing entry must have the same n_values and n_mat (EMISMATCH otherwise); its sums
 * and counts are added to. Only for format SMELT_IMX_GGUF imatrices (EUSAGE otherwise). */
int smelt_imx_add(smelt_imx *m, const char *name, uint64_t n_values, uint64_t n_mat,
                  const float *sums, const int64_t *counts, smelt_err *e);
int smelt_imx_add_dataset(smelt_imx *m, const char *dataset, smelt_err *e);

/* Write m as `format` (atomic: temporary file + rename). Converting needs chunk_size > 0
 * (EUSAGE otherwise): GGUF → legacy stores (sums/count)·ncall with
 * ncall = ceil(max count / chunk_size), skipping entries with no data and giving
 * count-0 matrices 1·ncall, as llama-imatrix does; legacy → GGUF stores
 * sums·chunk_size with counts ncall·chunk_size. Entries are written sorted by name. */
int smelt_imx_write(const smelt_imx *m, const char *path, int format, smelt_err *e);

/* ==== combining and statistics ==== */

/* The sum of n imatrices (slices of one run, or runs over different texts), GGUF
 * semantics: raw sums and per-matrix counts added — exactly when every input of an entry
 * has exact sums (slices written by smelt-imatrix: the result is then the single run's,
 * bit for bit, and keeps them), otherwise in double from the f32 sums, rounded once. Legacy
 * inputs are converted as llama-imatrix loads them (sums = values x chunk_size, counts =
 * ncall x chunk_size, the one ncall spread over the matrices of an entry that another
 * input stores per expert). chunk_size: the GGUF inputs' (they must agree), else the
 * argument (0: 512). Entries are the union of the inputs' (sorted by name); datasets the
 * union in order of appearance; chunk_count = largest count / chunk_size, as a single run
 * over all the chunks stores it. `paths` name the inputs in errors. Errors: EMISMATCH
 * naming the file and entry whose shape differs from an earlier input's, or the file whose
 * chunk size differs; ENOMEM. Caller frees *out. */
int smelt_imx_combine(smelt_imx *const *in, const char *const *paths, size_t n, uint32_t chunk_size, smelt_imx **out,
                      smelt_err *e);

/* Per-entry importance summary (what llama-imatrix --show-statistics reports), over the
 * per-value mean squared activations a = sums / count of the matrices that received data
 * (legacy: values / ncall). */
typedef struct smelt_imx_stat {
    const char *name;        /* the entry's (points into the imatrix) */
    int layer;               /* N of "blk.N.", -1 otherwise */
    uint64_t n_mat, n_mat_empty; /* matrices, and those with count 0 (left out) */
    uint64_t n_values;       /* values a summarised (0: no data; the figures below are 0) */
    double sum, min, max, mean, stddev; /* of a (population standard deviation) */
    double active;           /* fraction of a > 1e-5 */
    double entropy;          /* bits, of the distribution a / sum */
    double entropy_norm;     /* entropy / log2(n_values), 0..1 */
    double z_above_1;        /* fraction of values more than one stddev above the mean */
    double cossim;           /* cosine of the raw sums with the same weight of the block before;
                              * NAN without one (or with another shape) */
} smelt_imx_stat;

/* One smelt_imx_stat per entry of m, in m's order. ENOMEM. Caller frees *out (one free). */
int smelt_imx_stats(const smelt_imx *m, smelt_imx_stat **out, smelt_err *e);

#endif
