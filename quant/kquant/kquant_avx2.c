/* kquant_avx2.c — the k-quant family's AVX2 kernel set: the super-block search of
 * kq_engine.inc built on the AVX2 vector (quant/vec.h) and kernels (quant/kern_avx2.c).
 * Results are bit-identical to the portable set. Built with -mavx2 -mfma -mf16c; used
 * only after runtime detection. */
#define SMELT_VEC_AVX2 1
#include "quant/vec.h"

#include "kq_engine.inc"

const kq_engine kq_engine_avx2 = {kq_search_avx2, &smelt_search_kernels_avx2};

static const smelt_qtype_ops k_avx2[] = {
    {.type = SMELT_TYPE_Q2_K, .quantize = smelt_quant_q2_K_avx2, .quantize_err = smelt_quant_q2_K_avx2_err},
    {.type = SMELT_TYPE_Q3_K, .quantize = smelt_quant_q3_K_avx2, .quantize_err = smelt_quant_q3_K_avx2_err},
    {.type = SMELT_TYPE_Q4_K, .quantize = smelt_quant_q4_K_avx2, .quantize_err = smelt_quant_q4_K_avx2_err},
    {.type = SMELT_TYPE_Q5_K, .quantize = smelt_quant_q5_K_avx2, .quantize_err = smelt_quant_q5_K_avx2_err},
    {.type = SMELT_TYPE_Q6_K, .quantize = smelt_quant_q6_K_avx2, .quantize_err = smelt_quant_q6_K_avx2_err},
};
const smelt_qfamily smelt_kquant_family_avx2 = {k_avx2, sizeof k_avx2 / sizeof k_avx2[0]};
