/* model_check.h — one validation of a llama-architecture model (Llama, Mistral, Mixtral
 * with its MoE experts) shared by every tool, so a file gets one verdict and one message
 * whichever tool reads it: smelt-convert checks its plan before writing a byte,
 * smelt-quantize / -verify / -perplexity / -imatrix check a GGUF when reading it, and
 * smelt-dump prints the verdict. Layer: formats. Includes base/err.h, gguf.h.
 *
 * What is checked is what llama.cpp's loader needs to load and run the model (its
 * llama-model.cpp and models/llama.cpp are the source of these facts):
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
 *     ffn_{gate,up,down}_exps), optional ones (biases, rope_freqs) with their shapes, and no
 *     tensor the architecture does not use (llama.cpp refuses such files).
 * The first problem is reported as SMELT_EFORMAT naming the file, the key or tensor, and
 * what was expected and found; a LoRA adapter (general.type = adapter) and another
 * architecture are SMELT_EUNSUPPORTED. */
#ifndef SMELT_MODEL_CHECK_H
#define SMELT_MODEL_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* The hyperparameters as validated (defaults applied). */
typedef struct smelt_mc_hparams {
    uint32_t n_layer, n_ctx_train, n_embd, n_ff, n_head, n_head_kv;
    uint32_t head_dim, head_dim_v, n_rot; /* key_length, value_length, rope.dimension_count */
    uint32_t n_expert, n_expert_used;
    uint64_t n_vocab;  /* token_embd rows (without tensors: tokens or vocab_size, else 0) */
    uint64_t n_tokens; /* entries of tokenizer.ggml.tokens (0: no vocabulary) */
    float rms_eps, rope_base;
    bool tied_output;  /* no output.weight: token_embd is the output head */
    char skipped[96];  /* set when SMELT_MC_SKIPPED is returned: why */
} smelt_mc_hparams;

enum {
    /* general.architecture other than "llama": not an error, returns SMELT_MC_SKIPPED
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
