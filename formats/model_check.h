/* model_check.h — one validation of a model of an architecture smelt knows (formats/arch.h:
 * llama for Llama, Mistral and Mixtral; qwen2, qwen3, qwen3moe) shared by every tool, so a
 * file gets one verdict and one message whichever tool reads it: smelt-convert checks its plan before writing a byte,
 * smelt-quantize / -verify / -perplexity / -imatrix check a GGUF when reading it, and
 * smelt-dump prints the verdict. Layer: formats. Includes arch.h, base/err.h, gguf.h.
 *
 * What is checked is what llama.cpp's loader needs to load and run the model (its
 * llama-model.cpp and models/<arch>.cpp are the source of these facts; keys are
 * "<arch>.<name>", written llama.* below):
 *   - hyperparameters: block_count 1..512, context_length, embedding_length,
 *     feed_forward_length and head_count >= 1, head_count_kv >= 1 dividing head_count,
 *     key/value lengths (default embedding_length / head_count, which must divide), equal
 *     and even, rope.dimension_count = key_length, layer_norm_rms_epsilon and rope.freq_base
 *     finite and > 0, a known rope.scaling.type and a finite factor >= 0, expert counts
 *     consistent (used 1..count when count > 0, 0 otherwise; count <= 1024; groups);
 *     per-layer arrays must have block_count entries and (smelt's limit) equal values;
 *   - the vocabulary: tokenizer.ggml.tokens, .scores, .token_type of the right types and
 *     lengths, llama.vocab_size equal to the token count, token_embd's rows equal to both;
 *   - the tensors: every required one present with the shape the hyperparameters imply
 *     (token_embd, output_norm, output or tied, per layer attn_norm, attn_q/k/v or a fused
 *     attn_qkv, attn_output, ffn_norm, ffn_gate/up/down or ffn_gate_inp +
 *     ffn_{gate,up,down}_exps, and what the architecture adds: attn_q_norm/attn_k_norm
 *     for qwen3 and qwen3moe), optional ones (biases, rope_freqs) with their shapes, and
 *     no tensor the architecture does not use (llama.cpp refuses such files); which
 *     tensors an architecture has is its entry in formats/arch.c.
 * The first problem is reported as SMELT_EFORMAT naming the file, the key or tensor, and
 * what was expected and found; a LoRA adapter (general.type = adapter) and another
 * architecture are SMELT_EUNSUPPORTED. */
#ifndef SMELT_MODEL_CHECK_H
#define SMELT_MODEL_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch.h"
#include "base/err.h"
#include "gguf.h"

/* A metadata value as GGUF types it. Scalars are decoded; array elements stay packed. */
typedef struct smelt_mc_kv {
    const char *key;
    int type;          /* enum smelt_gguf_vtype */
    int arr_type;      /* element type of an ARRAY, else -1 */
    uint64_t n;        /* elements of an ARRAY, 1 for a scalar */
    int64_t i;         /* integer or bool scalar (u64 above INT64_MAX: INT64_MAX) */
    double f;          /* f32/f64 scalar */
    const char *s;     /* STRING scalar (not NUL-terminated), slen bytes */
    uint64_t slen;
    const void *arr;   /* ARRAY of fixed-size elements: n packed little-endian values */
} smelt_mc_kv;

typedef struct smelt_mc_tensor {
    const char *name;
    uint64_t ne[4];    /* ggml order (row length first), unused dimensions 1 */
    const char *file;  /* the file holding it, for messages (NULL: the model's path) */
} smelt_mc_tensor;

typedef struct smelt_mc_model {
    const char *path;  /* named in messages */
    const smelt_mc_kv *kv;
    size_t n_kv;
    const smelt_mc_tensor *t;
    size_t n_t;
    bool vocab_only;   /* no tensors to check (a vocabulary-only file or plan) */
} smelt_mc_model;

/* The hyperparameters as validated (defaults applied): the one hyperparameter struct
 * (formats/arch.h), with the architecture, n_vocab, n_tokens, tied_output and, when
 * SMELT_MC_SKIPPED is returned, `skipped` (why) filled. */
typedef smelt_hparams smelt_mc_hparams;

enum {
    /* general.architecture that smelt does not know: not an error, returns SMELT_MC_SKIPPED
     * (smelt-quantize handles any architecture; smelt-verify hashes anything). */
    SMELT_MC_OTHER_ARCH_OK = 1,
    /* no general.architecture, or a LoRA adapter: not an error, returns SMELT_MC_SKIPPED
     * (smelt-verify and smelt-dump look at any GGUF). */
    SMELT_MC_NON_MODEL_OK = 2,
};

#define SMELT_MC_SKIPPED 1

/* Validate m. Returns 0 (valid; *hp filled, hp may be NULL), SMELT_MC_SKIPPED (see the
 * flags), or a negative error: EFORMAT for what llama.cpp would refuse or crash on,
 * EUNSUPPORTED for an adapter or another architecture, EUNSUPPORTED for per-layer
 * hyperparameters that differ between layers, ENOMEM. */
int smelt_mc_check(const smelt_mc_model *m, unsigned flags, smelt_mc_hparams *hp, smelt_err *e);

/* The same on a GGUF model (all shards of a split model, as smelt_gguf_open() reads them; a
 * tensor's problem names the shard holding it). Metadata-only files (SMELT_GGUF_META_ONLY)
 * are checked alike; a file without tensors is checked as vocabulary-only. */
int smelt_mc_check_gguf(const smelt_gguf *g, unsigned flags, smelt_mc_hparams *hp, smelt_err *e);

/* The metadata of a GGUF as smelt_mc_kv values (n = smelt_gguf_n_kv entries, borrowed
 * views into g); caller frees. NULL on ENOMEM. */
smelt_mc_kv *smelt_mc_kvs_of_gguf(const smelt_gguf *g);

/* The adapter message, for tools that look at general.type themselves. */
#define SMELT_MC_ADAPTER_MSG \
    "is a LoRA adapter (general.type = adapter), not a model; merge it first or use it with llama.cpp's --lora"

#endif
