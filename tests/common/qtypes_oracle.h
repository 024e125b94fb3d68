/* qtypes_oracle.h — shared by the quant tests: deterministic data sets, the sample model's
 * weights, a synthetic importance matrix, and llama.cpp's type functions (libggml-base,
 * through tests/common/testutil.h's loader). */
#ifndef SMELT_TESTS_QTYPES_ORACLE_H
#define SMELT_TESTS_QTYPES_ORACLE_H

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dlfcn.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/base/half.h"
#include "formats/safetensors.h"
#include "quant/qtypes.h"
#include "tests/common/testutil.h"

/* ==== the traits table as test parameters ==== */

/* Every type of the table (for tests that cover all of them). */
int *qt_all_types(size_t *n);

/* Block-quantized types smelt can encode (the ones llama-quantize produces). */
int *qt_quant_types(size_t *n);

void qt_free_params(struct criterion_test_params *p);

const char *qt_name(int t);
uint32_t qt_blck(int t);
size_t qt_bytes(int t, size_t n);

/* ==== deterministic data ==== */

typedef struct {
    uint64_t s;
} qt_rng;

uint64_t qt_next(qt_rng *r);
double qt_unif(qt_rng *r);
double qt_norm(qt_rng *r);

enum {
    QT_NORMAL,      /* N(0, 0.02) */
    QT_HEAVY,       /* Student-t with 2 degrees of freedom, scaled */
    QT_ZERO_BLOCKS, /* normal, with every third 256-block all zero */
    QT_TINY,        /* N(0, 1e-6): scales near the bottom of f16 */
    QT_TINIER,      /* N(0, 1e-9): scales that underflow f16 */
    QT_OUTLIER,     /* normal with one element per 32 scaled by 40 */
    QT_SHIFTED,     /* all positive: 0.05 + |N(0, 0.02)| */
    QT_LARGE,       /* N(0, 300) */
    QT_CONSTANT,    /* each 32-block constant (values differ per block) */
    QT_N_KINDS
};

const char *qt_kind_name(int k);

void qt_fill(float *x, size_t n, int kind, uint64_t seed);

/* Importance of each column as llama-imatrix would measure it: the mean square of the
 * activations feeding that column, over 64 random tokens whose channels have log-normal
 * scales and a few strong outlier channels. */
void qt_imatrix(float *w, size_t ncols, uint64_t seed);

/* ==== the sample model ==== */

typedef struct {
    char name[160];
    int64_t rows, cols;
    float *x; /* rows * cols, row-major */
} qt_matrix;

/* Every 2-D weight of samples/tiny-mixtral as f32 (bf16 widened). Returns the count;
 * *out is malloc'd (free with qt_free_matrices). 0 if the sample is missing. */
size_t qt_sample_matrices(qt_matrix **out);

void qt_free_matrices(qt_matrix *m, size_t n);

/* ==== the oracle ==== */

typedef size_t (*qt_chunk_fn)(int type, const float *src, void *dst, int64_t start, int64_t nrows, int64_t n_per_row,
                              const float *imatrix);
typedef void (*qt_ref_fn)(const float *x, void *y, int64_t k);
typedef void (*qt_deq_fn)(const void *x, float *y, int64_t k);

void *qt_ggml_sym(const char *name);

/* llama.cpp's reference encoder / decoder of a type (NULL if it has none). The float
 * types map to ggml's row converters. */
qt_ref_fn qt_ggml_ref(int t);

qt_deq_fn qt_ggml_deq(int t);

/* Every how many-th matrix of the sample a table-wide test encodes with type t: the grid
 * i-quants' searches (and llama.cpp's, which the tests run beside) are ten times slower than
 * the other types', so they see every 24th from the 12th (3 of the 70 matrices, none of them
 * the 1M-element output matrix), which keeps each type's share of `make test` within a few
 * seconds. Loops run j = stride / 2, + stride, ... */
size_t qt_sample_stride(int t);

qt_chunk_fn qt_ggml_chunk(void);


#define QT_NEED_ORACLE()                                                                                     \
    do {                                                                                                     \
        if (!tu_oracle_ggml()) cr_skip_test("llama.cpp oracle (libggml-base.so) not installed: make oracle"); \
    } while (0)

#endif
