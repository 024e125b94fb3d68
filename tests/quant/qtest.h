/* qtest.h — shared by the quant tests (header-only: the Makefile builds one binary per
 * tests/<area>/test_*.c): deterministic data sets, the sample model's weights, a
 * synthetic importance matrix, and the llama.cpp oracle (libggml-base, libggml-cpu). */
#ifndef SMELT_TESTS_QTEST_H
#define SMELT_TESTS_QTEST_H

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
static inline int *qt_all_types(size_t *n)
{
    size_t k = smelt_q_n_types();
    int *p = cr_malloc(k * sizeof(int));
    for (size_t i = 0; i < k; i++) p[i] = smelt_q_type_at(i);
    *n = k;
    return p;
}

/* Block-quantized types smelt can encode (the ones llama-quantize produces). */
static inline int *qt_quant_types(size_t *n)
{
    size_t k = smelt_q_n_types(), m = 0;
    int *p = cr_malloc(k * sizeof(int));
    for (size_t i = 0; i < k; i++) {
        int t = smelt_q_type_at(i);
        const smelt_qtype_ops *o = smelt_q_ops(t);
        if (o->quantize && smelt_type_is_quantized(t)) p[m++] = t;
    }
    *n = m;
    return p;
}

static inline void qt_free_params(struct criterion_test_params *p) { cr_free(p->params); }

static inline const char *qt_name(int t) { return smelt_type_name(t); }
static inline uint32_t qt_blck(int t) { return smelt_type_get(t)->blck; }
static inline size_t qt_bytes(int t, size_t n) { return n / smelt_type_get(t)->blck * smelt_type_get(t)->bytes; }

/* ==== deterministic data ==== */

typedef struct {
    uint64_t s;
} qt_rng;

static inline uint64_t qt_next(qt_rng *r)
{
    uint64_t x = r->s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return r->s = x;
}
static inline double qt_unif(qt_rng *r) { return (double)(qt_next(r) >> 11) * (1.0 / 9007199254740992.0); }
static inline double qt_norm(qt_rng *r)
{
    double u = qt_unif(r) + 1e-300, v = qt_unif(r);
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

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

static inline const char *qt_kind_name(int k)
{
    static const char *n[] = {"normal", "heavy-tailed", "zero blocks", "tiny", "tinier",
                              "outliers", "shifted", "large", "constant blocks"};
    return n[k];
}

static inline void qt_fill(float *x, size_t n, int kind, uint64_t seed)
{
    qt_rng r = {seed * 0x9E3779B97F4A7C15ull + 88172645463325252ull};
    for (size_t i = 0; i < n; i++) {
        double v = qt_norm(&r) * 0.02;
        switch (kind) {
        case QT_HEAVY: {
            double c = qt_norm(&r), d = qt_norm(&r);
            v = 0.01 * qt_norm(&r) / sqrt((c * c + d * d) / 2 + 1e-12);
            break;
        }
        case QT_ZERO_BLOCKS: v = (i / 256) % 3 == 1 ? 0 : v; break;
        case QT_TINY: v *= 5e-5; break;
        case QT_TINIER: v *= 5e-8; break;
        case QT_OUTLIER: v = i % 32 == (i / 32) % 32 ? v * 40 : v; break;
        case QT_SHIFTED: v = 0.05 + fabs(v); break;
        case QT_LARGE: v *= 15000; break;
        case QT_CONSTANT: {
            qt_rng b = {(i / 32 + 1) * 0x2545F4914F6CDD1Dull};
            v = qt_norm(&b) * 0.02;
            break;
        }
        default: break;
        }
        x[i] = (float)v;
    }
}

/* Importance of each column as llama-imatrix would measure it: the mean square of the
 * activations feeding that column, over 64 random tokens whose channels have log-normal
 * scales and a few strong outlier channels. */
static inline void qt_imatrix(float *w, size_t ncols, uint64_t seed)
{
    qt_rng r = {seed * 0xD1B54A32D192ED03ull + 1};
    for (size_t j = 0; j < ncols; j++) {
        double sc = exp(0.8 * qt_norm(&r)) * (qt_unif(&r) < 0.01 ? 12 : 1);
        double s = 0;
        for (int t = 0; t < 64; t++) {
            double a = sc * qt_norm(&r);
            s += a * a;
        }
        w[j] = (float)(s / 64);
    }
}

/* ==== the sample model ==== */

typedef struct {
    char name[160];
    int64_t rows, cols;
    float *x; /* rows * cols, row-major */
} qt_matrix;

/* Every 2-D weight of samples/tiny-mixtral as f32 (bf16 widened). Returns the count;
 * *out is malloc'd (free with qt_free_matrices). 0 if the sample is missing. */
static inline size_t qt_sample_matrices(qt_matrix **out)
{
    char dir[4096];
    tu_path(dir, sizeof dir, "samples/tiny-mixtral");
    smelt_stset *set = NULL;
    smelt_err e = {0};
    *out = NULL;
    if (smelt_stset_open(dir, &set, &e)) return 0;
    uint64_t nt = smelt_stset_n_tensors(set);
    qt_matrix *m = calloc(nt, sizeof *m);
    size_t k = 0;
    for (uint64_t i = 0; i < nt; i++) {
        const smelt_st_tensor *t = smelt_stset_tensor_at(set, i);
        if (t->n_dims != 2 || t->dtype != SMELT_DT_BF16) continue;
        qt_matrix *q = &m[k++];
        snprintf(q->name, sizeof q->name, "%s", t->name);
        q->rows = (int64_t)t->shape[0];
        q->cols = (int64_t)t->shape[1];
        q->x = malloc((size_t)(q->rows * q->cols) * sizeof(float));
        smelt_row_bf16_to_f32((const uint16_t *)t->data, q->x, (size_t)(q->rows * q->cols));
    }
    smelt_stset_close(set);
    *out = m;
    return k;
}

static inline void qt_free_matrices(qt_matrix *m, size_t n)
{
    for (size_t i = 0; i < n; i++) free(m[i].x);
    free(m);
}

/* ==== the oracle ==== */

typedef size_t (*qt_chunk_fn)(int type, const float *src, void *dst, int64_t start, int64_t nrows, int64_t n_per_row,
                              const float *imatrix);
typedef void (*qt_ref_fn)(const float *x, void *y, int64_t k);
typedef void (*qt_deq_fn)(const void *x, float *y, int64_t k);
typedef void (*qt_vec_dot_fn)(int n, float *s, size_t bs, const void *x, size_t bx, const void *y, size_t by, int nrc);
typedef struct {
    void *from_float;
    qt_vec_dot_fn vec_dot;
    int vec_dot_type;
    int64_t nrows;
} qt_cpu_traits;

static inline void *qt_ggml_sym(const char *name)
{
    void *h = tu_oracle_ggml();
    return h ? dlsym(h, name) : NULL;
}

/* llama.cpp's reference encoder / decoder of a type (NULL if it has none). The float
 * types map to ggml's row converters. */
static inline qt_ref_fn qt_ggml_ref(int t)
{
    char n[96];
    if (t == SMELT_TYPE_F16) return (qt_ref_fn)qt_ggml_sym("ggml_fp32_to_fp16_row");
    if (t == SMELT_TYPE_BF16) return (qt_ref_fn)qt_ggml_sym("ggml_fp32_to_bf16_row_ref");
    snprintf(n, sizeof n, "quantize_row_%s_ref", qt_name(t));
    void (*init)(int) = (void (*)(int))qt_ggml_sym("ggml_quantize_init");
    if (init) init(t); /* the grid types' tables (a no-op for the others) */
    return (qt_ref_fn)qt_ggml_sym(n);
}

static inline qt_deq_fn qt_ggml_deq(int t)
{
    char n[96];
    if (t == SMELT_TYPE_F16) return (qt_deq_fn)qt_ggml_sym("ggml_fp16_to_fp32_row");
    if (t == SMELT_TYPE_BF16) return (qt_deq_fn)qt_ggml_sym("ggml_bf16_to_fp32_row");
    snprintf(n, sizeof n, "dequantize_row_%s", qt_name(t));
    return (qt_deq_fn)qt_ggml_sym(n);
}

/* Every how many-th matrix of the sample a table-wide test encodes with type t: the grid
 * i-quants' searches (and llama.cpp's, which the tests run beside) are ten times slower than
 * the other types', so they see every 24th from the 12th (3 of the 70 matrices, none of them
 * the 1M-element output matrix), which keeps each type's share of `make test` within a few
 * seconds. Loops run j = stride / 2, + stride, ... */
static inline size_t qt_sample_stride(int t)
{
    switch (t) {
    case SMELT_TYPE_IQ3_XXS: case SMELT_TYPE_IQ3_S: case SMELT_TYPE_IQ2_XXS: case SMELT_TYPE_IQ2_XS:
    case SMELT_TYPE_IQ2_S: case SMELT_TYPE_IQ1_S: case SMELT_TYPE_IQ1_M: return 24;
    default: return 1;
    }
}

static inline qt_chunk_fn qt_ggml_chunk(void) { return (qt_chunk_fn)qt_ggml_sym("ggml_quantize_chunk"); }

/* ggml-cpu's type traits (generic x86-64 build), or NULL. */
static inline const qt_cpu_traits *qt_ggml_cpu_traits(int t)
{
    static void *h;
    static const qt_cpu_traits *(*get)(int);
    if (!h) {
        if (!tu_oracle_ggml() || !tu_oracle_libdir()) return NULL;
        char p[4300];
        snprintf(p, sizeof p, "%s/libggml-cpu-x64.so", tu_oracle_libdir());
        h = dlopen(p, RTLD_NOW | RTLD_GLOBAL);
        if (!h) return NULL;
        void (*init)(void) = (void (*)(void))dlsym(h, "ggml_cpu_init");
        get = (const qt_cpu_traits *(*)(int))dlsym(h, "ggml_get_type_traits_cpu");
        if (!init || !get) return NULL;
        init();
    }
    return get ? get(t) : NULL;
}

#define QT_NEED_ORACLE()                                                                                     \
    do {                                                                                                     \
        if (!tu_oracle_ggml()) cr_skip_test("llama.cpp oracle (libggml-base.so) not installed: make oracle"); \
    } while (0)

#endif
