/* kquant_table.c — the k-quant family table: one entry per type, joined by quant/qtypes.c.
 * Includes quant/ only. */
#include "kquant_int.h"

/* ==== the family ==== */

static const smelt_qtype_ops k_kquant[] = {
    {.type = SMELT_TYPE_Q2_K, .dequantize = smelt_deq_q2_K, .quantize = smelt_quant_q2_K, .quantize_ref = smelt_ref_q2_K, .quantize_err = smelt_quant_q2_K_err},
    {.type = SMELT_TYPE_Q3_K, .dequantize = smelt_deq_q3_K, .quantize = smelt_quant_q3_K, .quantize_ref = smelt_ref_q3_K, .quantize_err = smelt_quant_q3_K_err},
    {.type = SMELT_TYPE_Q4_K, .dequantize = smelt_deq_q4_K, .quantize = smelt_quant_q4_K, .quantize_ref = smelt_ref_q4_K, .quantize_err = smelt_quant_q4_K_err},
    {.type = SMELT_TYPE_Q5_K, .dequantize = smelt_deq_q5_K, .quantize = smelt_quant_q5_K, .quantize_ref = smelt_ref_q5_K, .quantize_err = smelt_quant_q5_K_err},
    {.type = SMELT_TYPE_Q6_K, .dequantize = smelt_deq_q6_K, .quantize = smelt_quant_q6_K, .quantize_ref = smelt_ref_q6_K, .quantize_err = smelt_quant_q6_K_err},
};

const smelt_qfamily smelt_kquant_family = {k_kquant, sizeof k_kquant / sizeof k_kquant[0], NULL};
