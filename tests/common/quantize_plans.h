/* quantize_plans.h — helpers for the quantize-run tests and benchmarks: llama-shaped model
 * descriptions and their tensor lists,
 * GGUF files of those shapes (metadata-only, sparse, or with deterministic random data),
 * schema snapshot files (llama.cpp's tests/snapshots format), and the llama.cpp oracle
 * through libllama's C API (and the llama_quant_* test hooks it exports). */
#ifndef SMELT_TESTS_QUANT_PLANS_H
#define SMELT_TESTS_QUANT_PLANS_H

#include <dlfcn.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/base/ckd.h"
#include "formats/base/half.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"
#include "quant/policy.h"
#include "tests/common/bytes.h"
#include "tests/common/testutil.h"


#define QR_MAX_TENSORS 1400

/* ==== model shapes ==== */

/* tok_src value for qr_write_model(): a generated vocabulary of n_vocab tokens. */
#define QR_SMALL_VOCAB "<small-vocab>"

typedef struct qr_shape {
    const char *name;
    uint32_t n_layer, n_embd, n_ff, n_head, n_head_kv, n_expert, n_vocab;
    bool tied;       /* no output.weight */
    bool rope_freqs; /* a 1-D rope_freqs.weight (Llama 3.1) */
} qr_shape;

/* The shape sets the plan is pinned on (tests/quant/snapshots/<name>.schema). */
static const qr_shape qr_shapes[] = {
    {"moe-tiny", 4, 256, 512, 8, 2, 4, 32000, false, false},        /* samples/tiny-mixtral, Llama-2 vocab */
    {"mixtral-8x7b", 32, 4096, 14336, 32, 8, 8, 32000, false, false},
    {"llama-3.1-70b", 80, 8192, 28672, 64, 8, 0, 128256, false, true},
    {"dense-odd", 12, 2880, 1000, 8, 4, 0, 32000, true, false},    /* rows unfit for 256/32 blocks, tied */
};
/* samples/tiny-mixtral's own shapes (vocab 4096), for runs that quantize for real. */
static const qr_shape qr_tiny_mixtral = {"tiny-mixtral", 4, 256, 512, 8, 2, 4, 4096, false, false};
#define QR_N_SHAPES (sizeof qr_shapes / sizeof qr_shapes[0])

typedef struct qr_tensor {
    char name[64];
    uint64_t ne[4];
    int type;
} qr_tensor;

void qr_add(qr_tensor *t, size_t *n, const char *name, uint64_t a, uint64_t b, uint64_t c, int type);

/* Tensors of a shape in convert_hf_to_gguf's order (weights F16, norms/router F32). */
size_t qr_shape_tensors(const qr_shape *s, qr_tensor *t);

uint32_t qr_ndims(const uint64_t ne[4]);

uint64_t qr_nbytes(const qr_tensor *t);

/* ==== GGUF files of a shape ==== */

enum { QR_META, QR_SPARSE, QR_DATA };

void qr_kv_str(tb_buf *b, const char *k, const char *v);

void qr_kv_u32(tb_buf *b, const char *k, uint32_t v);

/* Deterministic pseudo-random weights (xorshift), roughly N(0, 0.02²)-sized. */
float qr_rand(uint64_t *s);

/* Write a model of shape s: QR_META (header only), QR_SPARSE (header + a hole as big as the
 * data, so llama.cpp's bounds checks pass) or QR_DATA (random weights; tokenizer KVs
 * copied from tok_src, a GGUF such as the ollama fixture, when given). 0 on success. */
int qr_write_model(const char *path, const qr_shape *s, int mode, const char *tok_src);

/* ==== schema snapshots (llama.cpp's format: "[FTYPE] default" then "tensor type" for
 * every quantizable tensor whose type differs from the default) ==== */

typedef struct qr_section {
    char ftype[16];
    char deflt[16];
    size_t n;
    char (*name)[64];
    char (*type)[16];
} qr_section;

typedef struct qr_schema {
    qr_section s[64];
    size_t n;
} qr_schema;

void qr_schema_free(qr_schema *sc);

int qr_schema_read(const char *path, qr_schema *sc);

const qr_section *qr_schema_find(const qr_schema *sc, const char *ftype);

/* Expected type of a tensor in a section (the default when not listed). */
const char *qr_section_type(const qr_section *s, const char *name);

/* The ftypes of a snapshot, in llama_ftype order like llama.cpp's generator. */
size_t qr_snapshot_ftypes(const smelt_ftype_info **out);

/* ==== llama.cpp oracle: libllama ==== */

typedef struct lq_params {
    int32_t nthread;
    int ftype, output_tensor_type, token_embedding_type;
    bool allow_requantize, quantize_output_tensor, only_copy, pure, keep_split, dry_run;
    const void *imatrix, *kv_overrides, *tt_overrides;
    const int32_t *prune_layers;
    size_t max_buf_size;
} lq_params;

typedef struct lq_imx {
    const char *name;
    const float *data;
    size_t size;
} lq_imx;

typedef struct lq_tt {
    const char *pattern;
    int type;
} lq_tt;

typedef struct lq_desc {
    const char *architecture;
    uint32_t n_embd, n_ff, n_layer, n_head, n_head_kv, n_expert, n_embd_head_k, n_embd_head_v;
} lq_desc;

typedef struct ggml_init_p {
    size_t mem_size;
    void *mem_buffer;
    bool no_alloc;
} ggml_init_p;

typedef struct lq_api {
    lq_params (*default_params)(void);
    uint32_t (*quantize)(const char *, const char *, const lq_params *);
    void (*log_set)(void (*)(int, const char *, void *), void *);
    void (*backend_init)(void);
    /* test hooks (C++ names) */
    void *(*model_from_meta)(const lq_desc *);
    void *(*qinit)(const void *, const lq_params *);
    void (*qfree)(void *);
    void (*compute)(void *, int, void **, int *, size_t);
    void (*model_free)(void *);
    /* ggml */
    void *(*ggml_init)(ggml_init_p);
    void (*ggml_free)(void *);
    size_t (*ggml_overhead)(void);
    void *(*new4d)(void *, int, int64_t, int64_t, int64_t, int64_t);
    void *(*set_name)(void *, const char *);
} lq_api;

void lq_quiet_cb(int level, const char *msg, void *ud);

/* Resolve the llama.cpp functions; NULL if the oracle libraries are absent. */
const lq_api *lq_get(void);

/* llama.cpp's plan for a tensor list (quantizable tensors, sorted like llama.cpp) through
 * its test hooks (no imatrix): types[i] for t[i]. `tweak` may adjust the params. */
int lq_mock_plan(const lq_api *a, const qr_shape *s, const qr_tensor *t, size_t n, int ftype,
                       void (*tweak)(lq_params *, void *), void *ud, int *types);

/* ==== llama.cpp oracle: llama_model_quantize's own log, parsed ==== */

typedef struct lq_log {
    char *text;
    size_t len, cap;
} lq_log;

void lq_log_cb(int level, const char *msg, void *ud);


/* Run llama_model_quantize; its log text is returned (caller frees) when log != NULL. */
uint32_t lq_quantize(const lq_api *a, const char *in, const char *out, const lq_params *p, char **log);

/* From a --dry-run log: the planned type of each tensor ("name type" per line into a
 * malloc'd list). Returns the count. */
size_t lq_parse_dry_run(const char *log, char (*names)[64], char (*types)[16], size_t max);

#endif
