/* legacy_int.h — private to quant/legacy/: the kernels each legacy file exports to the
 * family tables. Layer: quant. */
#ifndef SMELT_LEGACY_INT_H
#define SMELT_LEGACY_INT_H

#include <stdint.h>

#define LEGACY_ENC(t) \
    void smelt_quant_##t##_avx2(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx);
LEGACY_ENC(q4_0)
LEGACY_ENC(q4_1)
LEGACY_ENC(q5_0)
LEGACY_ENC(q5_1)
LEGACY_ENC(q8_0)

#endif
