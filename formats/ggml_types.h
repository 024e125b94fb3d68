/* ggml_types.h — GGML tensor type ids and their geometry (format facts only).
 * Layer: formats. Includes base/ only. Ids equal ggml's `enum ggml_type` because they are
 * stored in GGUF files. Behaviour (quantize/dequantize) lives in quant/. */
#ifndef SMELT_GGML_TYPES_H
#define SMELT_GGML_TYPES_H

#include <stdbool.h>
#include <stdint.h>

#include "base/err.h"

enum smelt_type {
    SMELT_TYPE_F32 = 0,
    SMELT_TYPE_F16 = 1,
    SMELT_TYPE_Q4_0 = 2,
    SMELT_TYPE_Q4_1 = 3,
    SMELT_TYPE_Q5_0 = 6,
    SMELT_TYPE_Q5_1 = 7,
    SMELT_TYPE_Q8_0 = 8,
    SMELT_TYPE_Q8_1 = 9,
    SMELT_TYPE_Q2_K = 10,
    SMELT_TYPE_Q3_K = 11,
    SMELT_TYPE_Q4_K = 12,
    SMELT_TYPE_Q5_K = 13,
    SMELT_TYPE_Q6_K = 14,
    SMELT_TYPE_Q8_K = 15,
    SMELT_TYPE_IQ2_XXS = 16,
    SMELT_TYPE_IQ2_XS = 17,
    SMELT_TYPE_IQ3_XXS = 18,
    SMELT_TYPE_IQ1_S = 19,
    SMELT_TYPE_IQ4_NL = 20,
    SMELT_TYPE_IQ3_S = 21,
    SMELT_TYPE_IQ2_S = 22,
    SMELT_TYPE_IQ4_XS = 23,
    SMELT_TYPE_I8 = 24,
    SMELT_TYPE_I16 = 25,
    SMELT_TYPE_I32 = 26,
    SMELT_TYPE_I64 = 27,
    SMELT_TYPE_F64 = 28,
    SMELT_TYPE_IQ1_M = 29,
    SMELT_TYPE_BF16 = 30,
    SMELT_TYPE_TQ1_0 = 34,
    SMELT_TYPE_TQ2_0 = 35,
    SMELT_TYPE_MXFP4 = 39,
    SMELT_TYPE_NVFP4 = 40,
    SMELT_TYPE_Q1_0 = 41,
    SMELT_TYPE_Q2_0 = 42,
    SMELT_TYPE_COUNT = 43,
};

typedef struct smelt_type_info {
    const char *name;     /* ggml's name, e.g. "q4_K"; NULL for an unused id */
    uint32_t blck;        /* elements per block (1 for plain types) */
    uint32_t bytes;       /* bytes per block */
    bool removed;         /* id once existed but is no longer valid in GGUF files */
} smelt_type_info;

/* Info for a type id, or NULL if the id is out of range or was never assigned.
 * Removed ids (e.g. 31 Q4_0_4_4) return an entry with removed = true, blck = 0. */
const smelt_type_info *smelt_type_get(int type);
/* ggml's name, or "type#N" for unknown ids (static storage per call site is not used:
 * unknown ids return "unknown"). */
const char *smelt_type_name(int type);
/* Case-insensitive lookup by ggml name ("Q4_K", "q4_k", "bf16"); -1 if none. */
int smelt_type_from_name(const char *name);
/* True if the id is a valid, current GGUF tensor type. */
bool smelt_type_valid(int type);
bool smelt_type_is_quantized(int type);

/* Bytes of `n` elements of `type`. Fails (EFORMAT) if n is not a multiple of the block
 * size or the product overflows. */
int smelt_type_row_bytes(int type, uint64_t n, uint64_t *out, smelt_err *e);

#endif
