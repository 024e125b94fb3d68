/* legacy_int.h — private to quant/legacy/: packing shared by the decoders and the
 * encoders, and the encoders each kernel set exports to the family tables. */
#ifndef SMELT_LEGACY_INT_H
#define SMELT_LEGACY_INT_H

#include <stdint.h>

#include <string.h>

/* 32 levels (low 4 bits used) into 16 bytes: lo nibble = q[i], hi nibble = q[i+16]. */
static inline void legacy_pack_nibbles(uint8_t *restrict qs, const uint8_t *restrict L)
{
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((L[j] & 15) | (L[j + 16] & 15) << 4);
}

/* Bit 4 of 32 levels into the little-endian u32 qh. */
static inline void legacy_pack_high_bits(uint8_t *qh, const uint8_t *L)
{
    uint32_t h = 0;
    for (int j = 0; j < 32; j++) h |= (uint32_t)((L[j] >> 4) & 1) << j;
    memcpy(qh, &h, 4);
}

#define LEGACY_ENC(t)                                                                                        \
    void smelt_quant_##t##_port(const float *src, void *dst, int64_t n_rows, int64_t row_len,               \
                                const float *imx);                                                           \
    void smelt_quant_##t##_avx2(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx);
LEGACY_ENC(q4_0)
LEGACY_ENC(q4_1)
LEGACY_ENC(q5_0)
LEGACY_ENC(q5_1)
LEGACY_ENC(q8_0)

#endif
