/* legacy_avx2.c — the legacy family's AVX2 kernel set: the encoders of legacy_enc.inc
 * built on the AVX2 vector (quant/vec.h). Results are bit-identical to the portable set.
 * Built with -mavx2 -mfma -mf16c; used only after runtime detection. */
#define SMELT_VEC_AVX2 1
#include "quant/vec.h"

#include "legacy_enc.inc"

#include "quant/avx2_int.h"
#include "quant/quant_int.h"

/* ==== dot products ====
 * Integer lane sums per block in SIMD (exact), accumulated as acc += (dx * dy) * lanes,
 * the order of the portable kernels (quant_int.h). */

static inline __m256 lanes(__m256i p) { return _mm256_cvtepi32_ps(p); }

static inline float finish(__m256 acc)
{
    float a[8];
    _mm256_storeu_ps(a, acc);
    return q_lanes_sum(a);
}

static inline __m256 add_block(__m256 acc, float d, __m256i p)
{
    return _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(d), lanes(p)));
}

static float dot_q4_0(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q4_0 *x = vx;
    const smelt_block_q8_0 *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n / QK; i++) {
        __m256i q = _mm256_sub_epi8(a2_nibbles(x[i].qs), _mm256_set1_epi8(8));
        acc = add_block(acc, a2_f16(&x[i].d) * a2_f16(&y[i].d), a2_dot_s8s8(q, a2_load(y[i].qs)));
    }
    return finish(acc);
}

static float dot_q4_1(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q4_1 *x = vx;
    const smelt_block_q8_1 *y = vy;
    __m256 acc = _mm256_setzero_ps();
    float ms = 0;
    for (size_t i = 0; i < n / QK; i++) {
        acc = add_block(acc, a2_f16(&x[i].d) * a2_f16(&y[i].d), a2_dot_u8s8(a2_nibbles(x[i].qs), a2_load(y[i].qs)));
        ms = ms + a2_f16(&x[i].m) * a2_f16(&y[i].s);
    }
    return finish(acc) + ms;
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
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n / QK; i++) {
        __m256i q = _mm256_sub_epi8(q5_levels(x[i].qs, x[i].qh), _mm256_set1_epi8(16));
        acc = add_block(acc, a2_f16(&x[i].d) * a2_f16(&y[i].d), a2_dot_s8s8(q, a2_load(y[i].qs)));
    }
    return finish(acc);
}

static float dot_q5_1(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q5_1 *x = vx;
    const smelt_block_q8_1 *y = vy;
    __m256 acc = _mm256_setzero_ps();
    float ms = 0;
    for (size_t i = 0; i < n / QK; i++) {
        acc = add_block(acc, a2_f16(&x[i].d) * a2_f16(&y[i].d), a2_dot_u8s8(q5_levels(x[i].qs, x[i].qh), a2_load(y[i].qs)));
        ms = ms + a2_f16(&x[i].m) * a2_f16(&y[i].s);
    }
    return finish(acc) + ms;
}

static float dot_q8_0(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q8_0 *x = vx;
    const smelt_block_q8_0 *y = vy;
    __m256 acc = _mm256_setzero_ps();
    for (size_t i = 0; i < n / QK; i++)
        /* x may hold -128 (other encoders); y are activations in [-127, 127] */
        acc = add_block(acc, a2_f16(&x[i].d) * a2_f16(&y[i].d), a2_dot_s8s8(a2_load(x[i].qs), a2_load(y[i].qs)));
    return finish(acc);
}

static const smelt_qtype_ops k_avx2[] = {
    {SMELT_TYPE_Q4_0, NULL, smelt_quant_q4_0_avx2, NULL, dot_q4_0, 0, false, false, smelt_quant_q4_0_err_avx2},
    {SMELT_TYPE_Q4_1, NULL, smelt_quant_q4_1_avx2, NULL, dot_q4_1, 0, false, false, smelt_quant_q4_1_err_avx2},
    {SMELT_TYPE_Q5_0, NULL, smelt_quant_q5_0_avx2, NULL, dot_q5_0, 0, false, false, smelt_quant_q5_0_err_avx2},
    {SMELT_TYPE_Q5_1, NULL, smelt_quant_q5_1_avx2, NULL, dot_q5_1, 0, false, false, smelt_quant_q5_1_err_avx2},
    {SMELT_TYPE_Q8_0, NULL, smelt_quant_q8_0_avx2, NULL, dot_q8_0, 0, false, false, smelt_quant_q8_0_err_avx2},
};
const smelt_qfamily smelt_legacy_family_avx2 = {k_avx2, sizeof k_avx2 / sizeof k_avx2[0]};
