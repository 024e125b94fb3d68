/* arch.h — the architectures smelt-convert handles and their hyperparameters: HF
 * config.json (LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM) → the "llama"
 * GGUF architecture keys, in the order and with the types llama.cpp's converter writes.
 * Layer: convert. Includes formats/, kvs.h, jansson. */
#ifndef SMELT_ARCH_H
#define SMELT_ARCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "convert/kvs.h"
#include "formats/base/notes.h"
#include "formats/base/err.h"

enum { SMELT_FAMILY_LLAMA, SMELT_FAMILY_MISTRAL, SMELT_FAMILY_MIXTRAL };

/* The supported list, for messages: "LlamaForCausalLM, MistralForCausalLM, …". */
extern const char *const smelt_arch_supported;

typedef struct smelt_hparams {
    char hf_arch[96];     /* architectures[0] (or model_type when absent) */
    int family;
    int64_t n_layer;      /* num_hidden_layers */
    int64_t n_embd;       /* hidden_size */
    int64_t n_ff;         /* intermediate_size */
    int64_t n_head;       /* num_attention_heads */
    int64_t n_head_kv;    /* num_key_value_heads (= n_head when absent) */
    int64_t head_dim;     /* head_dim, or n_embd / n_head */
    int64_t n_vocab;      /* vocab_size */
    int64_t n_expert;     /* num_local_experts; 0 for dense models */
    int64_t n_expert_used;
    bool tied;            /* tie_word_embeddings */
} smelt_hparams;

/* Identify the architecture and read the hyperparameters the conversion depends on.
 * cfg_path names config.json in messages. Unknown architecture: EUNSUPPORTED naming it
 * and the supported list; a missing or mistyped key: EFORMAT naming the key. */
int smelt_hparams_read(json_t *config, const char *cfg_path, smelt_hparams *hp, smelt_err *e);

/* Append the architecture KVs llama.cpp's converter writes (block_count … file_type,
 * vocab_size, rope.dimension_count), in its order. */
int smelt_arch_kvs(json_t *config, const char *cfg_path, const smelt_hparams *hp, uint32_t file_type, smelt_kvs *kv,
                   const smelt_notes *notes, smelt_err *e);

/* The shared model check (formats/model_check.h) on a plan's KVs and output tensors, before
 * anything is written: what reaches it was not refused by smelt_hparams_read() and
 * smelt_arch_kvs() with a config.json key name, so it is a backstop for combinations
 * (tokenizer arrays, tensor shapes). `dir` names the model directory in messages. */
struct smelt_cv_tensor;
int smelt_arch_check_plan(const smelt_kvs *kv, const struct smelt_cv_tensor *t, size_t n, bool vocab_only, const char *dir,
                          smelt_err *e);

#endif
