/* adapter.h — build small Hugging Face models and PEFT adapters on disk for tests:
 * safetensors files from float arrays (stored as F32, F16 or BF16), config json text. */
#ifndef SMELT_TEST_ADAPTER_H
#define SMELT_TEST_ADAPTER_H

#include <stddef.h>
#include <stdint.h>

#include "formats/dtype.h"

typedef struct ta_tensor {
    const char *name;
    smelt_dtype dt;      /* F32, F16 or BF16 */
    uint32_t nd;
    uint64_t shape[4];
    const float *data;   /* nelements floats (rounded to dt); NULL: pseudo-random values in
                            ±0.05, one fixed sequence per file (for large generated models) */
} ta_tensor;

/* Write a safetensors file holding the tensors. 0 on success. */
int ta_write_st(const char *path, const ta_tensor *t, size_t n);
/* dir/name ← text. */
int ta_write_text(const char *dir, const char *name, const char *text);
/* A PEFT adapter: dir/adapter_config.json + dir/adapter_model.safetensors. */
int ta_write_adapter(const char *dir, const char *config_json, const ta_tensor *t, size_t n);
/* A base model: dir/config.json + dir/model.safetensors. */
int ta_write_base(const char *dir, const char *config_json, const ta_tensor *t, size_t n);

#endif
