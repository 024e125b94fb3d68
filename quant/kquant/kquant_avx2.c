/* kquant_avx2.c — the k-quant family's AVX2 kernel set: encoders running on the AVX2
 * search kernels (quant/kern_avx2.c). Results are bit-identical to the portable set. */
#include "kquant_int.h"

static const smelt_qtype_ops k_avx2[] = {
    {SMELT_TYPE_Q2_K, NULL, smelt_quant_q2_K_avx2, NULL, NULL, 0, false, false},
    {SMELT_TYPE_Q3_K, NULL, smelt_quant_q3_K_avx2, NULL, NULL, 0, false, false},
    {SMELT_TYPE_Q4_K, NULL, smelt_quant_q4_K_avx2, NULL, NULL, 0, false, false},
    {SMELT_TYPE_Q5_K, NULL, smelt_quant_q5_K_avx2, NULL, NULL, 0, false, false},
    {SMELT_TYPE_Q6_K, NULL, smelt_quant_q6_K_avx2, NULL, NULL, 0, false, false},
};
const smelt_qfamily smelt_kquant_family_avx2 = {k_avx2, sizeof k_avx2 / sizeof k_avx2[0]};
