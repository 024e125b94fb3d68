/* peft.h — PEFT LoRA adapters: adapter_config.json + adapter_model.safetensors (or
 * adapter_model.bin), read into LoRA pairs, full-replacement tensors and the config's
 * targeting rules. Layer: formats. Includes base/, tsrc.h, jansson.
 *
 * Semantics follow PEFT (peft/tuners/lora/{config,layer,model}.py,
 * peft/tuners/tuners_utils.py, peft/utils/{other,save_and_load}.py):
 *   - a key "base_model.model.<module>.lora_A.weight" / ".lora_B.weight" is a Linear LoRA
 *     pair, lora_A [r, in], lora_B [out, r]; ".lora_embedding_A" [r, num_embeddings] /
 *     ".lora_embedding_B" [embedding_dim, r] an Embedding pair;
 *     ".lora_magnitude_vector" the DoRA magnitude; ".lora_B.bias" a lora_bias term;
 *   - any other key naming "<module>.weight" / "<module>.bias" (modules_to_save copies,
 *     biases saved by bias="all"/"lora_only", embeddings saved by save_embedding_layers,
 *     "<module>.base_layer.weight") replaces that base tensor verbatim;
 *   - scaling = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora, with r and alpha
 *     taken from rank_pattern / alpha_pattern when a pattern key matches the module.
 * Only peft_type LORA is accepted; other PEFT methods, LoRA variants that cannot be merged
 * as W + ΔW (PiSSA/OLoRA/CorDA/LoftQ initialisations, aLoRA, layer_replication,
 * target_parameters, trainable tokens…) and non-PEFT adapters (MLX) are refused with a
 * message saying what was found and what was expected. */
#ifndef SMELT_PEFT_H
#define SMELT_PEFT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "tsrc.h"

typedef struct smelt_peft smelt_peft;

typedef enum smelt_peft_kind {
    SMELT_PEFT_LINEAR = 0,    /* lora_A / lora_B */
    SMELT_PEFT_EMBEDDING = 1, /* lora_embedding_A / lora_embedding_B */
} smelt_peft_kind;

/* One adapted module. Tensor indices refer to smelt_peft_tensors(); -1 when absent. */
typedef struct smelt_peft_module {
    const char *name;      /* module path in the base model, e.g. "model.layers.0.self_attn.q_proj" */
    const char *kind_name; /* last path component ("q_proj", "w1", "gate", "embed_tokens") */
    smelt_peft_kind kind;
    int64_t a, b;          /* lora_A / lora_B (or lora_embedding_A / _B) */
    int64_t magnitude;     /* DoRA lora_magnitude_vector, or -1 */
    int64_t b_bias;        /* lora_B.bias (lora_bias=true), or -1 */
    uint64_t r;            /* rank, from the tensor shapes */
    /* The delta this pair adds, in the orientation of the base weight as PEFT sees it:
     * Linear: [out, in] (nn.Linear.weight); Embedding: [num_embeddings, embedding_dim]. */
    uint64_t rows, cols;
    double alpha;          /* after alpha_pattern */
    int64_t r_config;      /* after rank_pattern */
    double scaling;        /* alpha / r, or alpha / sqrt(r) with use_rslora */
    bool targeted;         /* the config's target rules select this module */
} smelt_peft_module;

/* A tensor of the adapter that replaces a base tensor verbatim. */
typedef struct smelt_peft_full {
    const char *target; /* base tensor name, e.g. "model.embed_tokens.weight" */
    int64_t tensor;     /* index in smelt_peft_tensors() */
    const char *why;    /* "modules_to_save", "bias", "base_layer", "saved layer" */
} smelt_peft_full;

/* Open an adapter directory. Errors: EIO (missing files), EFORMAT (bad JSON, keys that
 * are not a PEFT layout, shapes that do not pair up), EUNSUPPORTED (peft_type other than
 * LORA, variants that cannot be merged, MLX or other non-PEFT adapters), EMISMATCH (a
 * rank that contradicts r / rank_pattern). */
int smelt_peft_open(const char *dir, smelt_peft **out, smelt_err *e);
/* The same from memory: config text and the bytes of an adapter_model.safetensors (both
 * borrowed; the weights must outlive the handle). `name` stands for the directory in
 * messages. For fuzzing and tests. */
int smelt_peft_open_mem(const char *name, const char *config, size_t config_len, const void *weights,
                        size_t weights_len, smelt_peft **out, smelt_err *e);
void smelt_peft_close(smelt_peft *p); /* NULL is a no-op */

const char *smelt_peft_dir(const smelt_peft *p);
/* Path of the weights file that was read (adapter_model.safetensors or .bin). */
const char *smelt_peft_weights_path(const smelt_peft *p);
json_t *smelt_peft_config(const smelt_peft *p); /* borrowed */
/* The adapter's tensors (borrowed until smelt_peft_close()). */
const smelt_tsrc *smelt_peft_tensors(const smelt_peft *p);

size_t smelt_peft_n_modules(const smelt_peft *p);
const smelt_peft_module *smelt_peft_module_at(const smelt_peft *p, size_t i);
size_t smelt_peft_n_full(const smelt_peft *p);
const smelt_peft_full *smelt_peft_full_at(const smelt_peft *p, size_t i);

/* Config values (validated at open). */
int64_t smelt_peft_r(const smelt_peft *p);
double smelt_peft_alpha(const smelt_peft *p);
bool smelt_peft_use_rslora(const smelt_peft *p);
bool smelt_peft_use_dora(const smelt_peft *p);
bool smelt_peft_fan_in_fan_out(const smelt_peft *p);
const char *smelt_peft_base_name(const smelt_peft *p); /* base_model_name_or_path or "" */
/* modules_to_save entries (may be 0). */
size_t smelt_peft_n_modules_to_save(const smelt_peft *p);
const char *smelt_peft_module_to_save(const smelt_peft *p, size_t i);
/* xxh64 of adapter_config.json and the weights file, as 16 hex digits. */
const char *smelt_peft_hash(const smelt_peft *p);

/* ==== PEFT's matching rules, exposed for the merger and for tests ==== */

enum { SMELT_PEFT_OUTPUT_LAYER = 1, SMELT_PEFT_EMBEDDING_LAYER = 2 };
/* Would PEFT put a LoRA layer on `module` (a module path such as
 * "model.layers.3.mlp.down_proj")? target_modules (list: exact name or ".name" suffix,
 * with layers_to_transform / layers_pattern; string: a regular expression that must match
 * the whole path; "all-linear"), exclude_modules and modules_to_save are applied as PEFT
 * applies them. flags: SMELT_PEFT_OUTPUT_LAYER for lm_head and SMELT_PEFT_EMBEDDING_LAYER
 * for embeddings (neither is selected by "all-linear"). A config without target_modules
 * selects every module the adapter file holds. */
bool smelt_peft_targets(const smelt_peft *p, const char *module, int flags);
/* True when `module` is one of modules_to_save (PEFT: (^|.*\.)NAME($|\..*)). */
bool smelt_peft_is_module_to_save(const smelt_peft *p, const char *module);

/* Full match of a Python `re` pattern against text, for the subset of Python syntax that
 * PEFT configs use (translated to POSIX extended regular expressions: \d \w \s and their
 * negations, (?:…), non-greedy quantifiers). Returns 1 match, 0 no match, <0 error
 * (EUNSUPPORTED for look-arounds and back-references, EFORMAT for invalid patterns). */
int smelt_peft_regex_fullmatch(const char *pattern, const char *text, smelt_err *e);
/* PEFT's get_pattern_key(): the first key of a rank_pattern / alpha_pattern object such
 * that re.match(r"(.*\.)?(KEY)$", module) succeeds, or NULL. */
const char *smelt_peft_pattern_key(json_t *patterns, const char *module);
/* PEFT's layer index for layers_to_transform: the first ".<segment>.<digits>." in the path
 * (or ".<layers_pattern>.<digits>." when a pattern is given); -1 if there is none. */
int64_t smelt_peft_layer_index(const char *module, const char *layers_pattern);

#endif
