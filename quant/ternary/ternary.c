/* ternary.c — the ternary family table: one descriptor per type, each defined at the end
 * of its own file. Includes quant/ only. */
#include "quant/quant_int.h"

extern const smelt_qtype_ops smelt_tq1_0_ops, smelt_tq2_0_ops;

static const smelt_qtype_ops *const k_ternary[] = {&smelt_tq1_0_ops, &smelt_tq2_0_ops};

const smelt_qfamily smelt_ternary_family = {NULL, sizeof k_ternary / sizeof k_ternary[0], k_ternary};
