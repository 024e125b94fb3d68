/* ggml_types.c — the geometry table of GGML type ids (facts: ggml.h enum ggml_type and
 * gguf-py GGML_QUANT_SIZES). */
#include "ggml_types.h"

#include <strings.h>

#define QK_K 256

static const smelt_type_info k_types[SMELT_TYPE_COUNT] = {
    [SMELT_TYPE_F32] = {"f32", 1, 4, false},
    [SMELT_TYPE_F16] = {"f16", 1, 2, false},
    [SMELT_TYPE_Q4_0] = {"q4_0", 32, 2 + 16, false},
    [SMELT_TYPE_Q4_1] = {"q4_1", 32, 2 + 2 + 16, false},
    [4] = {"q4_2", 0, 0, true},
    [5] = {"q4_3", 0, 0, true},
    [SMELT_TYPE_Q5_0] = {"q5_0", 32, 2 + 4 + 16, false},
    [SMELT_TYPE_Q5_1] = {"q5_1", 32, 2 + 2 + 4 + 16, false},
    [SMELT_TYPE_Q8_0] = {"q8_0", 32, 2 + 32, false},
    [SMELT_TYPE_Q8_1] = {"q8_1", 32, 2 + 2 + 32, false}, /* sizeof(block_q8_1); gguf-py still says 40 */
    [SMELT_TYPE_Q2_K] = {"q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4, false},
    [SMELT_TYPE_Q3_K] = {"q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12, false},
    [SMELT_TYPE_Q4_K] = {"q4_K", QK_K, 2 + 2 + QK_K / 2 + 12, false},
    [SMELT_TYPE_Q5_K] = {"q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12, false},
    [SMELT_TYPE_Q6_K] = {"q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16, false},
    [SMELT_TYPE_Q8_K] = {"q8_K", QK_K, 4 + QK_K + QK_K / 8, false},
    [SMELT_TYPE_IQ2_XXS] = {"iq2_xxs", QK_K, 2 + QK_K / 4, false},
    [SMELT_TYPE_IQ2_XS] = {"iq2_xs", QK_K, 2 + QK_K / 4 + QK_K / 32, false},
    [SMELT_TYPE_IQ3_XXS] = {"iq3_xxs", QK_K, 2 + QK_K / 4 + QK_K / 8, false},
    [SMELT_TYPE_IQ1_S] = {"iq1_s", QK_K, 2 + QK_K / 8 + QK_K / 16, false},
    [SMELT_TYPE_IQ4_NL] = {"iq4_nl", 32, 2 + 16, false},
    [SMELT_TYPE_IQ3_S] = {"iq3_s", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4, false},
    [SMELT_TYPE_IQ2_S] = {"iq2_s", QK_K, 2 + QK_K / 4 + QK_K / 16, false},
    [SMELT_TYPE_IQ4_XS] = {"iq4_xs", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64, false},
    [SMELT_TYPE_I8] = {"i8", 1, 1, false},
    [SMELT_TYPE_I16] = {"i16", 1, 2, false},
    [SMELT_TYPE_I32] = {"i32", 1, 4, false},
    [SMELT_TYPE_I64] = {"i64", 1, 8, false},
    [SMELT_TYPE_F64] = {"f64", 1, 8, false},
    [SMELT_TYPE_IQ1_M] = {"iq1_m", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, false},
    [SMELT_TYPE_BF16] = {"bf16", 1, 2, false},
    [31] = {"q4_0_4_4", 0, 0, true},
    [32] = {"q4_0_4_8", 0, 0, true},
    [33] = {"q4_0_8_8", 0, 0, true},
    [SMELT_TYPE_TQ1_0] = {"tq1_0", QK_K, 2 + 4 * 13, false},
    [SMELT_TYPE_TQ2_0] = {"tq2_0", QK_K, 2 + 64, false},
    [36] = {"iq4_nl_4_4", 0, 0, true},
    [37] = {"iq4_nl_4_8", 0, 0, true},
    [38] = {"iq4_nl_8_8", 0, 0, true},
    [SMELT_TYPE_MXFP4] = {"mxfp4", 32, 1 + 16, false},
    [SMELT_TYPE_NVFP4] = {"nvfp4", 64, 4 + 32, false},
    [SMELT_TYPE_Q1_0] = {"q1_0", 128, 2 + 16, false},
    [SMELT_TYPE_Q2_0] = {"q2_0", 64, 2 + 16, false},
};

const smelt_type_info *smelt_type_get(int type)
{
    if (type < 0 || type >= SMELT_TYPE_COUNT || !k_types[type].name) return NULL;
    return &k_types[type];
}

const char *smelt_type_name(int type)
{
    const smelt_type_info *t = smelt_type_get(type);
    return t ? t->name : "unknown";
}

int smelt_type_from_name(const char *name)
{
    for (int i = 0; i < SMELT_TYPE_COUNT; i++)
        if (k_types[i].name && !k_types[i].removed && !strcasecmp(k_types[i].name, name)) return i;
    return -1;
}

bool smelt_type_valid(int type)
{
    const smelt_type_info *t = smelt_type_get(type);
    return t && !t->removed;
}

bool smelt_type_is_quantized(int type)
{
    const smelt_type_info *t = smelt_type_get(type);
    return t && !t->removed && t->blck > 1;
}

int smelt_type_row_bytes(int type, uint64_t n, uint64_t *out, smelt_err *e)
{
    const smelt_type_info *t = smelt_type_get(type);
    if (!t || t->removed)
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, NULL, NULL, "unknown ggml type id %d", type);
    if (n % t->blck)
        return SMELT_ERR(e, SMELT_EFORMAT, NULL, NULL,
                         "%llu elements is not a multiple of the %s block size %u",
                         (unsigned long long)n, t->name, t->blck);
    if (__builtin_mul_overflow(n / t->blck, (uint64_t)t->bytes, out))
        return SMELT_ERR(e, SMELT_EFORMAT, NULL, NULL, "byte size of %llu %s elements overflows",
                         (unsigned long long)n, t->name);
    return 0;
}
