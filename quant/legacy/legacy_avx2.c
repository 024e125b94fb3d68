/* legacy_avx2.c — the legacy family's AVX2 kernel set: the encoders of legacy_enc.inc
 * built on the AVX2 vector (quant/vec.h). Results are bit-identical to the portable set.
 * Built with -mavx2 -mfma -mf16c; used only after runtime detection. */
#define SMELT_VEC_AVX2 1
#include "quant/vec.h"

#include "legacy_enc.inc"
#include "quant/quant_int.h"

static const smelt_qtype_ops k_avx2[] = {
    {.type = SMELT_TYPE_Q4_0, .quantize = smelt_quant_q4_0_avx2, .quantize_err = smelt_quant_q4_0_err_avx2},
    {.type = SMELT_TYPE_Q4_1, .quantize = smelt_quant_q4_1_avx2, .quantize_err = smelt_quant_q4_1_err_avx2},
    {.type = SMELT_TYPE_Q5_0, .quantize = smelt_quant_q5_0_avx2, .quantize_err = smelt_quant_q5_0_err_avx2},
    {.type = SMELT_TYPE_Q5_1, .quantize = smelt_quant_q5_1_avx2, .quantize_err = smelt_quant_q5_1_err_avx2},
    {.type = SMELT_TYPE_Q8_0, .quantize = smelt_quant_q8_0_avx2, .quantize_err = smelt_quant_q8_0_err_avx2},
};
const smelt_qfamily smelt_legacy_family_avx2 = {k_avx2, sizeof k_avx2 / sizeof k_avx2[0]};
