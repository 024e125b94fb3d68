/* dtype.h — element types of checkpoint formats (safetensors, PyTorch) and their
 * conversion to f32. Layer: formats. Includes base/ only.
 * The enum order is safetensors' own dtype order, which it uses to sort tensors in a
 * file (descending), so HF-compatible output can reproduce it. */
#ifndef SMELT_DTYPE_H
#define SMELT_DTYPE_H

#include <stddef.h>
#include <stdint.h>

typedef enum smelt_dtype {
    SMELT_DT_BOOL = 0,
    SMELT_DT_U8,
    SMELT_DT_I8,
    SMELT_DT_F8_E5M2,
    SMELT_DT_F8_E4M3,
    SMELT_DT_I16,
    SMELT_DT_U16,
    SMELT_DT_F16,
    SMELT_DT_BF16,
    SMELT_DT_I32,
    SMELT_DT_U32,
    SMELT_DT_F32,
    SMELT_DT_F64,
    SMELT_DT_I64,
    SMELT_DT_U64,
    SMELT_DT_COUNT
} smelt_dtype;

/* safetensors spelling ("BF16", "F8_E4M3", …). */
const char *smelt_dtype_name(smelt_dtype d);
/* Parse a safetensors dtype name; -1 if unknown. */
int smelt_dtype_from_name(const char *s);
size_t smelt_dtype_size(smelt_dtype d);
/* True for the dtypes smelt reads as weights (floats: F64 F32 F16 BF16 F8_*). */
int smelt_dtype_is_float(smelt_dtype d);
/* True for the dtypes the safetensors reader accepts (the list; U16/U32/U64 are
 * valid safetensors but no checkpoint smelt handles uses them). */
int smelt_dtype_supported(smelt_dtype d);
/* Convert n elements to f32 (integers and bools by value). Returns 0, or -1 for a dtype
 * with no conversion. */
int smelt_dtype_to_f32(smelt_dtype d, const void *src, float *dst, size_t n);
/* The GGML type id holding the same element format (F32/F16/BF16/F64/I8/I16/I32/I64),
 * or -1. */
int smelt_dtype_to_ggml(smelt_dtype d);

#endif
