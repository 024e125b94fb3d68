/* hfdir.h — a Hugging Face model directory: config.json plus weights (safetensors, single
 * or sharded; PyTorch .bin, single or sharded) presented as one tensor source; block-scaled
 * FP8 weights (config.json quantization_config) are read dequantized (fp8src.h).
 * Layer: formats. Includes base/, tsrc.h, jansson. */
#ifndef SMELT_HFDIR_H
#define SMELT_HFDIR_H

#include <jansson.h>
#include <stdint.h>

#include "base/err.h"
#include "tsrc.h"

typedef struct smelt_hf smelt_hf;

typedef enum smelt_hf_weights {
    SMELT_HF_SAFETENSORS = 0, /* model.safetensors or model.safetensors.index.json */
    SMELT_HF_TORCH_BIN = 1,   /* pytorch_model.bin or pytorch_model.bin.index.json */
} smelt_hf_weights;

/* Open `dir`: config.json is required; safetensors are preferred when both kinds of
 * weights are present. Errors name the directory and what is missing. */
int smelt_hf_open(const char *dir, smelt_hf **out, smelt_err *e);
void smelt_hf_close(smelt_hf *h); /* NULL is a no-op */

const char *smelt_hf_dir(const smelt_hf *h);
smelt_hf_weights smelt_hf_weights_kind(const smelt_hf *h);
/* Parsed config.json (borrowed). */
json_t *smelt_hf_config(const smelt_hf *h);
/* The weights (borrowed). */
const smelt_tsrc *smelt_hf_tensors(const smelt_hf *h);
/* Path of a file inside the directory if it exists (into buf), else NULL. */
const char *smelt_hf_file(const smelt_hf *h, const char *name, char *buf, size_t n);

/* config.json accessors. Missing or mistyped required keys give EFORMAT naming
 * config.json and the key. */
int smelt_hf_cfg_int(const smelt_hf *h, const char *key, int64_t *out, smelt_err *e);
int smelt_hf_cfg_float(const smelt_hf *h, const char *key, double *out, smelt_err *e);
/* Borrowed string. */
int smelt_hf_cfg_str(const smelt_hf *h, const char *key, const char **out, smelt_err *e);
/* Optional variants: return 0 and leave *out unchanged when the key is absent or null. */
int smelt_hf_cfg_int_opt(const smelt_hf *h, const char *key, int64_t *out, smelt_err *e);
int smelt_hf_cfg_float_opt(const smelt_hf *h, const char *key, double *out, smelt_err *e);

/* Load any small JSON file with a clear error (file, line, column). Caller decrefs. */
int smelt_json_load(const char *path, json_t **out, smelt_err *e);

#endif
