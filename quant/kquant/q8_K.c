/* q8_K.c — Q8_K (activations for k-quant dot products: f32 scale, int8 levels, sums of
 * 16) and the k-quant family table. Includes quant/ only. */
#include <math.h>
#include <string.h>

#include "kquant_int.h"

#define QK SMELT_QK_K

void smelt_deq_q8_K(const void *src, float *y, size_t n)
{
    const smelt_block_q8_K *b = src;
    for (size_t i = 0; i < n / QK; i++)
        for (int j = 0; j < QK; j++) *y++ = b[i].d * (float)b[i].qs[j];
}

/* Reference: d = -max/127 signed by the largest-magnitude element, levels rounded to
 * nearest (ties to even) and capped at 127; bsums of each 16. */
void smelt_ref_q8_K(const float *x, void *dst, int64_t k)
{
    smelt_block_q8_K *y = dst;
    for (int64_t i = 0; i < k / QK; i++, x += QK) {
        float mx = 0, amax = 0;
        for (int j = 0; j < QK; j++)
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                mx = x[j];
            }
        if (amax == 0) {
            y[i].d = 0;
            memset(y[i].qs, 0, QK);
            memset(y[i].bsums, 0, sizeof y[i].bsums);
            continue;
        }
        float iscale = -127.f / mx;
        for (int j = 0; j < QK; j++) {
            int v = q_nearest(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < 16; j++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)s;
        }
        y[i].d = 1 / iscale;
    }
}

/* ==== the family ==== */

static const smelt_qtype_ops k_kquant[] = {
    {SMELT_TYPE_Q2_K, smelt_deq_q2_K, smelt_quant_q2_K, smelt_ref_q2_K, smelt_dot_q2_K, SMELT_TYPE_Q8_K, false, false, smelt_quant_q2_K_err},
    {SMELT_TYPE_Q3_K, smelt_deq_q3_K, smelt_quant_q3_K, smelt_ref_q3_K, smelt_dot_q3_K, SMELT_TYPE_Q8_K, false, false, smelt_quant_q3_K_err},
    {SMELT_TYPE_Q4_K, smelt_deq_q4_K, smelt_quant_q4_K, smelt_ref_q4_K, smelt_dot_q4_K, SMELT_TYPE_Q8_K, false, false, smelt_quant_q4_K_err},
    {SMELT_TYPE_Q5_K, smelt_deq_q5_K, smelt_quant_q5_K, smelt_ref_q5_K, smelt_dot_q5_K, SMELT_TYPE_Q8_K, false, false, smelt_quant_q5_K_err},
    {SMELT_TYPE_Q6_K, smelt_deq_q6_K, smelt_quant_q6_K, smelt_ref_q6_K, smelt_dot_q6_K, SMELT_TYPE_Q8_K, false, false, smelt_quant_q6_K_err},
    {SMELT_TYPE_Q8_K, smelt_deq_q8_K, NULL, smelt_ref_q8_K, NULL, SMELT_TYPE_Q8_K, false, true, NULL},
};

const smelt_qfamily smelt_kquant_family = {k_kquant, sizeof k_kquant / sizeof k_kquant[0], NULL};
