/* legacy_avx2.c — the legacy family's AVX2 kernel set: the encoders of legacy_enc.inc
 * built on the AVX2 vector (quant/vec.h). Results are bit-identical to the portable set.
 * Built with -mavx2 -mfma -mf16c; used only after runtime detection. */
#define SMELT_VEC_AVX2 1
#include "quant/vec.h"

#include "legacy_enc.inc"

#include "quant/avx2_int.h"
#include "quant/quant_int.h"

/* ==== dot products ====
 * Integer block sums in SIMD (exact), then the portable per-block float expression:
 *   sum += (dx * dy) * isum  [+ mx * sy]. */

static float dot_q4_0(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q4_0 *x = vx;
    const smelt_block_q8_0 *y = vy;
    float sum = 0;
    for (size_t i = 0; i < n / QK; i++) {
        __m256i q = _mm256_sub_epi8(a2_nibbles(x[i].qs), _mm256_set1_epi8(8));
        int isum = a2_hsum(a2_dot_s8s8(q, a2_load(y[i].qs)));
        sum += (q_f16(&x[i].d) * q_f16(&y[i].d)) * (float)isum;
    }
    return sum;
}

static float dot_q4_1(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q4_1 *x = vx;
    const smelt_block_q8_1 *y = vy;
    float sum = 0;
    for (size_t i = 0; i < n / QK; i++) {
        int isum = a2_hsum(a2_dot_u8s8(a2_nibbles(x[i].qs), a2_load(y[i].qs)));
        sum += (q_f16(&x[i].d) * q_f16(&y[i].d)) * (float)isum + q_f16(&x[i].m) * q_f16(&y[i].s);
    }
    return sum;
}

static inline __m256i q5_levels(const uint8_t *qs, const uint8_t *qh)
{
    uint32_t h;
    memcpy(&h, qh, 4);
    return _mm256_or_si256(a2_nibbles(qs), _mm256_and_si256(a2_bits(h), _mm256_set1_epi8(0x10)));
}

static float dot_q5_0(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q5_0 *x = vx;
    const smelt_block_q8_0 *y = vy;
    float sum = 0;
    for (size_t i = 0; i < n / QK; i++) {
        __m256i q = _mm256_sub_epi8(q5_levels(x[i].qs, x[i].qh), _mm256_set1_epi8(16));
        int isum = a2_hsum(a2_dot_s8s8(q, a2_load(y[i].qs)));
        sum += (q_f16(&x[i].d) * q_f16(&y[i].d)) * (float)isum;
    }
    return sum;
}

static float dot_q5_1(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q5_1 *x = vx;
    const smelt_block_q8_1 *y = vy;
    float sum = 0;
    for (size_t i = 0; i < n / QK; i++) {
        int isum = a2_hsum(a2_dot_u8s8(q5_levels(x[i].qs, x[i].qh), a2_load(y[i].qs)));
        sum += (q_f16(&x[i].d) * q_f16(&y[i].d)) * (float)isum + q_f16(&x[i].m) * q_f16(&y[i].s);
    }
    return sum;
}

static float dot_q8_0(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q8_0 *x = vx;
    const smelt_block_q8_0 *y = vy;
    float sum = 0;
    for (size_t i = 0; i < n / QK; i++) {
        /* x may hold -128 (other encoders); y are activations in [-127, 127] */
        int isum = a2_hsum(a2_dot_s8s8(a2_load(x[i].qs), a2_load(y[i].qs)));
        sum += (q_f16(&x[i].d) * q_f16(&y[i].d)) * (float)isum;
    }
    return sum;
}

static const smelt_qtype_ops k_avx2[] = {
    {SMELT_TYPE_Q4_0, NULL, smelt_quant_q4_0_avx2, NULL, dot_q4_0, 0, false, false},
    {SMELT_TYPE_Q4_1, NULL, smelt_quant_q4_1_avx2, NULL, dot_q4_1, 0, false, false},
    {SMELT_TYPE_Q5_0, NULL, smelt_quant_q5_0_avx2, NULL, dot_q5_0, 0, false, false},
    {SMELT_TYPE_Q5_1, NULL, smelt_quant_q5_1_avx2, NULL, dot_q5_1, 0, false, false},
    {SMELT_TYPE_Q8_0, NULL, smelt_quant_q8_0_avx2, NULL, dot_q8_0, 0, false, false},
};
const smelt_qfamily smelt_legacy_family_avx2 = {k_avx2, sizeof k_avx2 / sizeof k_avx2[0]};
