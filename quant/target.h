/* target.h — per-tensor types chosen for the least expected error at a given size
 * (smelt-quantize --target-bpw / --target-size): estimate each candidate type's error on a
 * sample of a tensor's rows, weigh it by the tensor's class sensitivity, and solve the
 * size-constrained choice over the whole model. Layer: quant. Includes formats/ and quant/. */
#ifndef SMELT_TARGET_H
#define SMELT_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/base/err.h"
#include "formats/base/pool.h"
#include "quant/qtypes.h"

/* The stock types a plan chooses from, smallest first: every type smelt encodes that every
 * GGUF runtime reads and that needs no importance matrix to be usable. */
#define SMELT_TARGET_MAX_TYPES 20
size_t smelt_target_n_types(void);
int smelt_target_type_at(size_t i);

/* Sensitivity classes: which part of the network a tensor is. */
typedef enum smelt_target_class {
    SMELT_TC_TOKEN_EMBEDDING,
    SMELT_TC_OUTPUT,
    SMELT_TC_ATTN_Q,
    SMELT_TC_ATTN_K,
    SMELT_TC_ATTN_V,
    SMELT_TC_ATTN_OUTPUT,
    SMELT_TC_FFN_GATE,
    SMELT_TC_FFN_UP,
    SMELT_TC_FFN_DOWN,
    SMELT_TC_OTHER,
    SMELT_TC_COUNT
} smelt_target_class;

/* Class of a tensor name; its name as the command line spells it ("attn_v", …). */
smelt_target_class smelt_target_class_of(const char *tensor);
const char *smelt_target_class_name(smelt_target_class c);
/* Class by its name; -1 if unknown. */
int smelt_target_class_find(const char *name);
/* Default sensitivities, per class (docs/quantize.md, "Quantizing to a size"). */
double smelt_target_default_sensitivity(smelt_target_class c);

/* One tensor whose error is estimated: ne[0] columns × ne[1] rows × ne[2]·ne[3] matrices
 * of src_type at data (rows of src_row_bytes). imatrix: NULL or ne[0]·ne[2] weights (one
 * row of ne[0] per expert); error_model(type) gives the encoder's model for a candidate
 * (the one the quantization itself will use; NULL = plain). */
typedef struct smelt_target_source {
    const char *name;
    uint64_t ne[4];
    int src_type;
    const uint8_t *data;
    uint64_t src_row_bytes;
    const float *imatrix;
    const smelt_qerr *(*error_model)(void *user, int type);
    void *user;
    /* a first look: the slowest encoders (encode_cost ≥ SMELT_QTYPE_SLOW_ENCODER) see one
     * sampled row, enough to tell which of them may be chosen */
    bool coarse;
    /* otherwise they see at least this many sampled rows (0: 8; smelt_target_type_every) */
    uint64_t slow_rows;
} smelt_target_source;

/* Rows a tensor's errors are estimated on: every k-th row, k = ceil(rows / want) with
 * want = max(16, rows / 32) (all rows of a small tensor). */
uint64_t smelt_target_sample_step(uint64_t rows);
/* Of those n_sample rows (of row_len values), a type sees every m-th: m = 1 for the fast
 * encoders; for a slow one (encode_cost c ≥ 2 in its descriptor) the power of two nearest
 * below c / 2 (IQ4_XS: 4, the grid i-quants: 16), then doubled while it sees more than
 * 32768 values (128 blocks of 256), but never below 16 rows, slow_rows for the slowest
 * (encode_cost ≥ SMELT_QTYPE_SLOW_ENCODER; 0 means 8; all rows when there are fewer):
 * planning costs less than one quantization, on small models too. The rows seen are the
 * middle one of each m. */
uint64_t smelt_target_type_every(int type, uint64_t n_sample, uint64_t row_len, uint64_t slow_rows);

/* Relative importance-weighted error of each of the n types on a sample of the source's
 * rows: sum w (x - q)^2 / sum w x^2 with w the row's imatrix weights (1 without), after
 * encoding with the candidate's error model. rel_err[k] = +inf for a type whose block does
 * not divide the rows. Deterministic and independent of the thread count. Errors:
 * EFORMAT (naming the tensor) for NaN/Inf among the sampled values, ENOMEM. */
int smelt_target_estimate(const smelt_target_source *s, const int *types, size_t n, smelt_pool *pool,
                          double *rel_err, smelt_err *e);

/* One tensor of the choice: n_cand candidates (type, bytes counted against the budget,
 * cost = sensitivity × relative error); fixed tensors have one candidate. */
typedef struct smelt_target_item {
    size_t n_cand;
    int type[SMELT_TARGET_MAX_TYPES];
    uint64_t bytes[SMELT_TARGET_MAX_TYPES];
    double cost[SMELT_TARGET_MAX_TYPES];
    size_t chosen; /* out: index of the chosen candidate */
} smelt_target_item;

/* Choose one candidate per item so that the sum of bytes is at most `budget` and the sum
 * of costs is least, by the greedy walk on the lower convex hull of each item's (bytes,
 * cost) points (the Lagrangian solution at every budget it stops at), followed by a
 * filling pass that takes the best cost-per-byte move still fitting. Deterministic
 * (ties: lower item index). *total receives the bytes. EUSAGE when even the smallest
 * candidates exceed the budget (the message gives the smallest possible total). */
int smelt_target_solve(smelt_target_item *items, size_t n, uint64_t budget, uint64_t *total, smelt_err *e);

#endif
