/* dtype.c — checkpoint element types: names, sizes, conversion to f32. */
#include "dtype.h"

#include <string.h>

#include "base/half.h"
#include "ggml_types.h"

static const struct {
    const char *name;
    size_t size;
} k_dt[SMELT_DT_COUNT] = {
    [SMELT_DT_BOOL] = {"BOOL", 1},     [SMELT_DT_U8] = {"U8", 1},     [SMELT_DT_I8] = {"I8", 1},
    [SMELT_DT_F8_E5M2] = {"F8_E5M2", 1}, [SMELT_DT_F8_E4M3] = {"F8_E4M3", 1},
    [SMELT_DT_I16] = {"I16", 2},       [SMELT_DT_U16] = {"U16", 2},   [SMELT_DT_F16] = {"F16", 2},
    [SMELT_DT_BF16] = {"BF16", 2},     [SMELT_DT_I32] = {"I32", 4},   [SMELT_DT_U32] = {"U32", 4},
    [SMELT_DT_F32] = {"F32", 4},       [SMELT_DT_F64] = {"F64", 8},   [SMELT_DT_I64] = {"I64", 8},
    [SMELT_DT_U64] = {"U64", 8},
};

const char *smelt_dtype_name(smelt_dtype d)
{
    return (unsigned)d < SMELT_DT_COUNT ? k_dt[d].name : "?";
}

int smelt_dtype_from_name(const char *s)
{
    for (int i = 0; i < SMELT_DT_COUNT; i++)
        if (!strcmp(k_dt[i].name, s)) return i;
    return -1;
}

size_t smelt_dtype_size(smelt_dtype d) { return (unsigned)d < SMELT_DT_COUNT ? k_dt[d].size : 0; }

int smelt_dtype_is_float(smelt_dtype d)
{
    return d == SMELT_DT_F64 || d == SMELT_DT_F32 || d == SMELT_DT_F16 || d == SMELT_DT_BF16 ||
           d == SMELT_DT_F8_E4M3 || d == SMELT_DT_F8_E5M2;
}

int smelt_dtype_supported(smelt_dtype d)
{
    return (unsigned)d < SMELT_DT_COUNT && d != SMELT_DT_U16 && d != SMELT_DT_U32 && d != SMELT_DT_U64;
}

int smelt_dtype_to_f32(smelt_dtype d, const void *src, float *dst, size_t n)
{
    const uint8_t *b = src;
    switch (d) {
    case SMELT_DT_F32: memcpy(dst, src, n * 4); return 0;
    case SMELT_DT_F16: smelt_row_f16_to_f32(src, dst, n); return 0;
    case SMELT_DT_BF16: smelt_row_bf16_to_f32(src, dst, n); return 0;
    case SMELT_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, b + 8 * i, 8);
            dst[i] = (float)v;
        }
        return 0;
    case SMELT_DT_F8_E4M3:
        for (size_t i = 0; i < n; i++) dst[i] = smelt_f8e4m3_to_f32(b[i]);
        return 0;
    case SMELT_DT_F8_E5M2:
        for (size_t i = 0; i < n; i++) dst[i] = smelt_f8e5m2_to_f32(b[i]);
        return 0;
    case SMELT_DT_BOOL:
    case SMELT_DT_U8:
        for (size_t i = 0; i < n; i++) dst[i] = b[i];
        return 0;
    case SMELT_DT_I8:
        for (size_t i = 0; i < n; i++) dst[i] = (int8_t)b[i];
        return 0;
    case SMELT_DT_I16:
        for (size_t i = 0; i < n; i++) {
            int16_t v;
            memcpy(&v, b + 2 * i, 2);
            dst[i] = v;
        }
        return 0;
    case SMELT_DT_I32:
        for (size_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, b + 4 * i, 4);
            dst[i] = (float)v;
        }
        return 0;
    case SMELT_DT_I64:
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, b + 8 * i, 8);
            dst[i] = (float)v;
        }
        return 0;
    default: return -1;
    }
}

int smelt_dtype_to_ggml(smelt_dtype d)
{
    switch (d) {
    case SMELT_DT_F32: return SMELT_TYPE_F32;
    case SMELT_DT_F16: return SMELT_TYPE_F16;
    case SMELT_DT_BF16: return SMELT_TYPE_BF16;
    case SMELT_DT_F64: return SMELT_TYPE_F64;
    case SMELT_DT_I8: return SMELT_TYPE_I8;
    case SMELT_DT_I16: return SMELT_TYPE_I16;
    case SMELT_DT_I32: return SMELT_TYPE_I32;
    case SMELT_DT_I64: return SMELT_TYPE_I64;
    default: return -1;
    }
}
