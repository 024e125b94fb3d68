/* hfsynth.h — test helpers for conversions: small synthetic Hugging Face Llama/Mixtral
 * directories (deterministic random weights, knobs to break them), a v5 (fused experts)
 * rewrite of a Mixtral checkpoint, GGUF comparison with a precise first difference, and
 * running llama.cpp's converter through tests/oracle/convert-hf. */
#ifndef SMELT_TEST_HFSYNTH_H
#define SMELT_TEST_HFSYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "formats/dtype.h"

typedef struct {
    int layers, hidden, heads, kv_heads, ff, vocab, experts, experts_used;
    int bias;                 /* q/k/v/o biases (attention_bias) */
    int tied;                 /* no lm_head, tie_word_embeddings */
    int embd_rows;            /* rows of embed/lm_head (0: vocab) */
    smelt_dtype dtype;        /* of the weights (norms too) */
    const char *drop;         /* tensor to leave out, or NULL */
    const char *extra;        /* extra tensor name (a [hidden] f32 vector), or NULL */
    const char *int_tensor;   /* tensor written as I32 instead, or NULL */
    const char *other_dtype_tensor; /* tensor written in `other_dtype`, or NULL */
    smelt_dtype other_dtype;
    float big;                /* if nonzero (NaN and ±Inf too): written into element big_index */
    const char *big_tensor;   /*   of this tensor (NULL: model.layers.0.mlp.up_proj.weight) */
    uint64_t big_index;       /*   (flat, row-major) */
} hs_model;

/* Defaults: 2 layers, hidden 64, 4 heads, 2 KV heads, ff 128, vocab 105 (the BabyLlama
 * tokenizer), f32, untied. */
hs_model hs_default(void);
/* Write config.json, model.safetensors and the BabyLlama tokenizer files into dir. */
int hs_write(const char *dir, const hs_model *m);
/* Rewrite config.json of dir: set (or with value NULL remove) one top-level key; value is
 * a JSON text. */
int hs_config_set(const char *dir, const char *key, const char *json_value);

/* A copy of a transformers-v4 Mixtral directory with fused v5 expert tensors
 * (mlp.gate, mlp.experts.gate_up_proj = [gate; up] per expert, mlp.experts.down_proj) in
 * one model.safetensors. swap != 0 writes [up; gate] instead (a deliberately wrong copy). */
int hs_mixtral_v5(const char *src_dir, const char *dst_dir, int swap);

/* Copy the regular files of a directory. */
int hs_copy_dir(const char *from, const char *to);

/* Compare two GGUF files: every KV (type and encoded bytes), every tensor (name, type,
 * shape, data bytes), then the whole file. 0 if identical; else 1 and a description of
 * the first difference in why. by_name compares tensors by name instead of position and
 * skips KVs listed in skip_keys (NULL-terminated) and the whole-file check. */
int hs_gguf_diff(const char *a, const char *b, int by_name, const char *const *skip_keys, char *why, size_t n);

/* Run llama.cpp's converter: tests/oracle/convert-hf DIR OUT --outtype T [extra].
 * Returns 0 on success, 77 when the oracle is unavailable, other values on failure
 * (output in *log if non-NULL, caller frees). SMELT_ORACLE_CONVERT_HF overrides the path. */
int hs_oracle_convert(const char *dir, const char *out, const char *outtype, const char *extra, char **log);

#endif
