/* model.h — a GGUF of an architecture of formats/arch.h (llama with Mistral and Mixtral MoE,
 * qwen2, qwen3, qwen3moe) as hyperparameters (the one smelt_hparams of formats/arch.h) and
 * weight views into the mapped file: nothing is copied except the small norm vectors.
 * Layer: verify. Includes formats/ and quant/ only.
 *
 * The file is validated when opened, so the forward pass never meets a surprise: every
 * tensor the architecture needs is present with the shape the hyperparameters imply (the
 * shared check of formats/model_check.h), of a type the quant library can decode
 * (quant/qtypes.h), and no tensor is left unused. */
#ifndef SMELT_MODEL_H
#define SMELT_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/arch.h"
#include "formats/base/err.h"
#include "formats/gguf.h"

#define SMELT_MAX_EXPERTS 256

/* A weight tensor as stored: ne[0] is the row length (the input dimension of a matmul),
 * ne[1] the number of rows (outputs), ne[2] the number of experts (1 for dense weights).
 * `data` points into the mapped file. A view with data == NULL is an absent optional
 * tensor. */
typedef struct smelt_wview {
    const char *name;     /* GGUF tensor name; borrowed until smelt_model_close() */
    int type;             /* ggml type id */
    uint64_t ne[3];
    const uint8_t *data;
    uint64_t row_bytes;   /* bytes of one row of ne[0] elements */
    uint64_t mat_bytes;   /* bytes of one ne[0] x ne[1] matrix (stride between experts) */
} smelt_wview;

typedef struct smelt_layer {
    const float *attn_norm, *ffn_norm; /* n_embd each, decoded to f32 */
    const float *attn_q_norm, *attn_k_norm; /* head_dim each (qwen3, qwen3moe), else NULL */
    smelt_wview wq, wk, wv, wqkv;      /* wqkv: fused Q|K|V rows (then wq/wk/wv absent) */
    smelt_wview bq, bk, bv, bqkv, bo;  /* optional biases (1-D) */
    smelt_wview wo;
    /* dense FFN */
    smelt_wview ffn_gate, ffn_up, ffn_down, ffn_gate_b, ffn_up_b, ffn_down_b;
    /* MoE FFN (n_expert > 0) */
    smelt_wview ffn_gate_inp, ffn_gate_exps, ffn_up_exps, ffn_down_exps;
} smelt_layer;

/* All fields are read-only for users. */
typedef struct smelt_model {
    smelt_gguf *gguf;         /* owned */
    smelt_hparams hp;
    smelt_wview tok_embd, output; /* output == tok_embd (same data) when tied */
    bool tied_output;
    const float *output_norm;
    const float *rope_freqs;  /* n_rot/2 frequency divisors (Llama 3 rope_freqs), or NULL */
    smelt_layer *layers;      /* n_layer */
    float *norm_store;        /* owned storage of the decoded norm vectors */
} smelt_model;

/* Open a GGUF and validate it as a model of its architecture: first the check every tool
 * shares (formats/model_check.h: hyperparameters, vocabulary, every tensor and its shape;
 * EFORMAT naming the key or tensor, EUNSUPPORTED for a LoRA adapter or another
 * architecture), then what smelt's forward pass needs on top: EUNSUPPORTED for a tensor
 * type smelt cannot decode, rope scaling other than none and linear (Llama 3's scaling is the
 * rope_freqs tensor, which is applied), a head size over
 * 1024, more than SMELT_MAX_EXPERTS experts, or a tensor the pass does not use (shared
 * experts); EFORMAT for a metadata-only file; EIO. *out is NULL on error. */
int smelt_model_open(const char *path, smelt_model **out, smelt_err *e);
/* Same on an already opened GGUF; on success the model owns g (closed by
 * smelt_model_close()); on error g is left to the caller. */
int smelt_model_from_gguf(smelt_gguf *g, smelt_model **out, smelt_err *e);
void smelt_model_close(smelt_model *m); /* NULL is a no-op */

/* Bytes of all weight data the forward pass reads (for throughput reports). */
uint64_t smelt_model_weight_bytes(const smelt_model *m);
/* "F16", "Q8_0", "mixed (Q4_K, Q6_K)"-style summary of the matmul weight types. */
void smelt_model_type_summary(const smelt_model *m, char *buf, size_t n);

#endif
