/* iquant.c — the i-quant family table: one descriptor per type, each defined at the end
 * of its own file. Includes quant/ only. */
#include "quant/quant_int.h"

extern const smelt_qtype_ops smelt_iq4_nl_ops, smelt_iq4_xs_ops;
extern const smelt_qtype_ops smelt_iq3_xxs_ops, smelt_iq2_xxs_ops, smelt_iq2_xs_ops,
    smelt_iq2_s_ops, smelt_iq3_s_ops, smelt_iq1_s_ops, smelt_iq1_m_ops;

static const smelt_qtype_ops *const k_iquant[] = {&smelt_iq4_nl_ops, &smelt_iq4_xs_ops,
                                                  &smelt_iq3_xxs_ops, &smelt_iq2_xxs_ops,
                                                  &smelt_iq2_xs_ops, &smelt_iq2_s_ops, &smelt_iq3_s_ops,
                                                  &smelt_iq1_s_ops, &smelt_iq1_m_ops};

const smelt_qfamily smelt_iquant_family = {NULL, sizeof k_iquant / sizeof k_iquant[0], k_iquant};
