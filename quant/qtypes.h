/* qtypes.h — behaviour of every tensor type smelt can decode or encode: the traits table
 * joined from the type families, and the row-level entry points the rest of smelt uses.
 * Layer: quant. Includes formats/ only (never verify/).
 *
 * Geometry (block size, bytes per block, names) is a format fact and lives in
 * formats/ggml_types.h; this table adds what smelt can *do* with each type. */
#ifndef SMELT_QTYPES_H
#define SMELT_QTYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/base/cpu.h"
#include "formats/base/err.h"
#include "formats/base/pool.h"
#include "formats/ggml_types.h"

/* An error model: the weight of each element's squared error when encoding,
 *     w_i = (imx_i + a * mean(imx over the row)) * (c * s2 + x_i^2)^(p / 2),
 * imx_i = 1 without an imatrix, s2 = mean of x^2 over the element's super-block.
 * p = 0, a = 0 is the plain (importance-weighted) squared error that `quantize` minimizes.
 * A model with `ref` set means: write llama.cpp's reference blocks (`quantize_ref`, which
 * ignores importance weights, as llama-quantize does for such types). With `unbias` set
 * (k-quants and legacy types), each encoded row is then rescaled so that its
 * importance-weighted projection on the source row is 1 (quant/search.h, "unbiased rows":
 * the shrinkage of error-minimizing scales is removed; the levels stay).
 * smelt-quantize uses smelt_q_tuned_err(); see docs/quantize.md, "Error models". */
typedef struct smelt_qerr {
    float p, c, a;
    bool ref;    /* instead of any search: ggml's reference encoding (`quantize_ref`) */
    bool unbias; /* after the search: rescale each row to an unbiased projection */
    /* for the token embedding (no imatrix entry): importance per column = the mean square of
     * the model's RMSNorm weights (every attn_norm, ffn_norm and output_norm), i.e. how much
     * the network scales that channel of the residual stream the embedding feeds */
    bool norms;
} smelt_qerr;

typedef struct smelt_qtype_ops {
    int type; /* ggml type id */
    /* n elements (multiple of the block size) → f32. Bit-exact with ggml's dequantize_row. */
    void (*dequantize)(const void *src, float *dst, size_t n);
    /* Quantize n_rows rows of row_len floats. `imatrix` is NULL or row_len non-negative
     * importance weights (one per column) whose weighted squared error is minimized.
     * Deterministic, row-independent (so any split of rows over threads gives the same
     * bytes). NULL for types smelt cannot produce. */
    void (*quantize)(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imatrix);
    /* ggml's reference quantizer (quantize_row_*_ref), bit-exact; NULL if none. Proves
     * layout compatibility, and is what smelt writes where llama-quantize's own blocks are
     * the better choice (Q8_0). */
    void (*quantize_ref)(const float *src, void *dst, int64_t n);
    /* ggml_quantize_requires_imatrix: output is garbage without importance weights. */
    bool needs_imatrix;
    /* Encoding time per element relative to a k-quant's, roughly (0: about the same). The
     * size planner estimates the slow types (above 1) on fewer rows, and the slowest
     * (SMELT_QTYPE_SLOW_ENCODER and above) only where they may be chosen. */
    uint8_t encode_cost;
    /* As `quantize`, minimizing the error of model `m` (NULL = plain); NULL if the type
     * has no error models (then callers use `quantize`). */
    void (*quantize_err)(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imatrix,
                         const smelt_qerr *m);
    /* Instead of quantize and quantize_err: the type's block encoder, run by the i-quants'
     * shared rows loop (quant/iquant/iquant_int.h), which takes every error model. */
    const struct iq4_type *rows_encoder;
} smelt_qtype_ops;

/* Quantize as `o` does (ggml's reference encoding row by row when m asks for it, its rows
 * encoder, quantize_err with model m, or quantize when m is NULL or the type has no error
 * models): the one way to call a type's encoder. o must encode (smelt_qtype_encodes). */
void smelt_qtype_quantize(const smelt_qtype_ops *o, const float *src, void *dst, int64_t n_rows, int64_t row_len,
                          const float *imatrix, const smelt_qerr *m);
/* Whether o has an encoder (quantize or a rows encoder); false for NULL. */
bool smelt_qtype_encodes(const smelt_qtype_ops *o);
/* Whether o takes error models (quantize_err or a rows encoder); false for NULL. */
bool smelt_qtype_has_error_models(const smelt_qtype_ops *o);
/* Whether o's encoder is among the slowest (encode_cost >= SMELT_QTYPE_SLOW_ENCODER, below);
 * false for NULL. */
bool smelt_qtype_slow_encoder(const smelt_qtype_ops *o);

enum { SMELT_QTYPE_SLOW_ENCODER = 20 };

/* Ops for a type, or NULL if smelt has none. The kernels are the fastest this CPU runs
 * (formats/base/cpu.h); every kernel set gives bit-identical results. Thread-safe. */
const smelt_qtype_ops *smelt_q_ops(int type);

/* Ops of one kernel set (enum smelt_isa in formats/base/cpu.h) (for tests and benchmarks), or NULL if the type has none or this
 * CPU cannot run that set. Entries a set does not specialise are the portable ones. */
const smelt_qtype_ops *smelt_q_ops_isa(int type, int isa);
/* Number of types in the table, and the i-th type id (in table order: plain types,
 * legacy, k-quants); -1 past the end. For iterating, e.g. in tests. */
size_t smelt_q_n_types(void);
int smelt_q_type_at(size_t i);
/* The kernel set smelt_q_ops() uses. */
int smelt_q_isa(void);

/* Decode n elements (a multiple of the block size) of `type` to f32.
 * 0 on success, -1 if smelt has no decoder for the type. Thread-safe. */
int smelt_q_dequantize_row(int type, const void *src, float *dst, size_t n);
/* True if smelt_q_dequantize_row() handles the type. */
bool smelt_q_can_dequantize(int type);
bool smelt_q_can_quantize(int type);
bool smelt_q_requires_imatrix(int type);

/* Which tensors an error model is for: those with an imatrix entry, those without one except
 * the token embedding, or the token embedding (token_embd.weight, per_layer_token_embd.weight:
 * no imatrix entry, and its rows are looked up, not multiplied). SMELT_QERR_ALL is for
 * overrides only. */
typedef enum smelt_qerr_role { SMELT_QERR_ALL, SMELT_QERR_IMATRIX, SMELT_QERR_NOIMATRIX, SMELT_QERR_EMBEDDING } smelt_qerr_role;

/* The error model smelt-quantize uses for `type` and a tensor of that role, chosen by
 * end-to-end KL-divergence (docs/quantize.md, "Error models"); NULL = plain squared error. */
const smelt_qerr *smelt_q_tuned_err(int type, smelt_qerr_role role);

/* Quantize n_rows × row_len floats into dst (n_rows × row bytes), splitting rows over the
 * pool (may be NULL). Output does not depend on the thread count. Errors: EUNSUPPORTED for
 * a type smelt cannot produce, EMISMATCH if row_len is not a multiple of the block size. */
int smelt_q_quantize_rows(int type, const float *src, void *dst, int64_t n_rows, int64_t row_len,
                          const float *imatrix, smelt_pool *pool, smelt_err *e);

#endif
