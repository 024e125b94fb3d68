/* legacy_avx2.c — the legacy family's AVX2 kernel set: encoders running on the AVX2
 * search kernels (quant/kern_avx2.c). Results are bit-identical to the portable set. */
#include "legacy.h"
#include "legacy_int.h"
#include "quant/quant_int.h"

static const smelt_qtype_ops k_avx2[] = {
    {SMELT_TYPE_Q4_0, NULL, smelt_quant_q4_0_avx2, NULL, NULL, 0, false, false},
    {SMELT_TYPE_Q4_1, NULL, smelt_quant_q4_1_avx2, NULL, NULL, 0, false, false},
    {SMELT_TYPE_Q5_0, NULL, smelt_quant_q5_0_avx2, NULL, NULL, 0, false, false},
    {SMELT_TYPE_Q5_1, NULL, smelt_quant_q5_1_avx2, NULL, NULL, 0, false, false},
    {SMELT_TYPE_Q8_0, NULL, smelt_quant_q8_0_avx2, NULL, NULL, 0, false, false},
};
const smelt_qfamily smelt_legacy_family_avx2 = {k_avx2, sizeof k_avx2 / sizeof k_avx2[0]};
