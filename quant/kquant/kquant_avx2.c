/* kquant_avx2.c — the k-quant family's AVX2 kernel set: the super-block search of
 * kq_engine.inc built on the AVX2 vector (quant/vec.h) and kernels (quant/kern_avx2.c).
 * Results are bit-identical to the portable set. Built with -mavx2 -mfma -mf16c; used
 * only after runtime detection. */
#define SMELT_VEC_AVX2 1
#include "quant/vec.h"

#include "kq_engine.inc"

#include "quant/avx2_int.h"

const kq_engine kq_engine_avx2 = {kq_search_avx2, &smelt_qkern_avx2};

/* ==== dot products with Q8_K ====
 * Per sub-block integer sums in SIMD (exact), then the portable per-super-block
 * expression  sum += (d * dy) * sumi - (dmin * dy) * summ. */

/* isum of the two 16-element halves of a 32-byte product. */
static inline void halves(__m256i p, int *a, int *b)
{
    *a = a2_hsum128(_mm256_castsi256_si128(p));
    *b = a2_hsum128(_mm256_extracti128_si256(p, 1));
}

static float dot_q2_K(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q2_K *x = vx;
    const smelt_block_q8_K *y = vy;
    float sum = 0;
    for (size_t i = 0; i < n / SMELT_QK_K; i++) {
        int isum[16], sumi = 0, summ = 0;
        for (int h = 0; h < 2; h++) {
            __m256i q = a2_load(x[i].qs + 32 * h);
            for (int k = 0; k < 4; k++) {
                __m256i l = a2_field(q, 2 * k, 3);
                halves(a2_dot_u8s8(l, a2_load(y[i].qs + 128 * h + 32 * k)), &isum[8 * h + 2 * k], &isum[8 * h + 2 * k + 1]);
            }
        }
        for (int j = 0; j < 16; j++) {
            sumi += (x[i].scales[j] & 15) * isum[j];
            summ += (x[i].scales[j] >> 4) * y[i].bsums[j];
        }
        float dd = q_f16(&x[i].d) * y[i].d, dm = q_f16(&x[i].dmin) * y[i].d;
        sum += dd * (float)sumi - dm * (float)summ;
    }
    return sum;
}

static float dot_q3_K(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q3_K *x = vx;
    const smelt_block_q8_K *y = vy;
    float sum = 0;
    for (size_t i = 0; i < n / SMELT_QK_K; i++) {
        int isum[16], sumi = 0;
        __m256i hm = a2_load(x[i].hmask);
        for (int h = 0; h < 2; h++) {
            __m256i q = a2_load(x[i].qs + 32 * h);
            for (int k = 0; k < 4; k++) {
                __m256i l = _mm256_or_si256(a2_field(q, 2 * k, 3), _mm256_slli_epi16(a2_field(hm, 4 * h + k, 1), 2));
                halves(a2_dot_u8s8(l, a2_load(y[i].qs + 128 * h + 32 * k)), &isum[8 * h + 2 * k], &isum[8 * h + 2 * k + 1]);
            }
        }
        for (int j = 0; j < 16; j++) sumi += kq_q3_scale(x[i].scales, j) * (isum[j] - 4 * y[i].bsums[j]);
        sum += (q_f16(&x[i].d) * y[i].d) * (float)sumi;
    }
    return sum;
}

static float dot_q4_K(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q4_K *x = vx;
    const smelt_block_q8_K *y = vy;
    float sum = 0;
    for (size_t i = 0; i < n / SMELT_QK_K; i++) {
        int sumi = 0, summ = 0;
        for (int c = 0; c < 4; c++) {
            __m256i q = a2_load(x[i].qs + 32 * c);
            int i0 = a2_hsum(a2_dot_u8s8(_mm256_and_si256(q, _mm256_set1_epi8(15)), a2_load(y[i].qs + 64 * c)));
            int i1 = a2_hsum(a2_dot_u8s8(a2_field(q, 4, 15), a2_load(y[i].qs + 64 * c + 32)));
            int sc, m;
            kq_scale_min_k4(2 * c, x[i].scales, &sc, &m);
            sumi += sc * i0;
            summ += m * (y[i].bsums[4 * c] + y[i].bsums[4 * c + 1]);
            kq_scale_min_k4(2 * c + 1, x[i].scales, &sc, &m);
            sumi += sc * i1;
            summ += m * (y[i].bsums[4 * c + 2] + y[i].bsums[4 * c + 3]);
        }
        float dd = q_f16(&x[i].d) * y[i].d, dm = q_f16(&x[i].dmin) * y[i].d;
        sum += dd * (float)sumi - dm * (float)summ;
    }
    return sum;
}

static float dot_q5_K(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q5_K *x = vx;
    const smelt_block_q8_K *y = vy;
    float sum = 0;
    for (size_t i = 0; i < n / SMELT_QK_K; i++) {
        int sumi = 0, summ = 0;
        __m256i qh = a2_load(x[i].qh);
        for (int c = 0; c < 4; c++) {
            __m256i q = a2_load(x[i].qs + 32 * c);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(q, _mm256_set1_epi8(15)),
                                         _mm256_slli_epi16(a2_field(qh, 2 * c, 1), 4));
            __m256i hi = _mm256_or_si256(a2_field(q, 4, 15), _mm256_slli_epi16(a2_field(qh, 2 * c + 1, 1), 4));
            int i0 = a2_hsum(a2_dot_u8s8(lo, a2_load(y[i].qs + 64 * c)));
            int i1 = a2_hsum(a2_dot_u8s8(hi, a2_load(y[i].qs + 64 * c + 32)));
            int sc, m;
            kq_scale_min_k4(2 * c, x[i].scales, &sc, &m);
            sumi += sc * i0;
            summ += m * (y[i].bsums[4 * c] + y[i].bsums[4 * c + 1]);
            kq_scale_min_k4(2 * c + 1, x[i].scales, &sc, &m);
            sumi += sc * i1;
            summ += m * (y[i].bsums[4 * c + 2] + y[i].bsums[4 * c + 3]);
        }
        float dd = q_f16(&x[i].d) * y[i].d, dm = q_f16(&x[i].dmin) * y[i].d;
        sum += dd * (float)sumi - dm * (float)summ;
    }
    return sum;
}

static float dot_q6_K(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q6_K *x = vx;
    const smelt_block_q8_K *y = vy;
    float sum = 0;
    for (size_t i = 0; i < n / SMELT_QK_K; i++) {
        int isum[16], sumi = 0;
        for (int h = 0; h < 2; h++) {
            __m256i l0 = a2_load(x[i].ql + 64 * h), l1 = a2_load(x[i].ql + 64 * h + 32), qh = a2_load(x[i].qh + 32 * h);
            __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, _mm256_set1_epi8(15)), _mm256_slli_epi16(a2_field(qh, 0, 3), 4)),
                _mm256_or_si256(_mm256_and_si256(l1, _mm256_set1_epi8(15)), _mm256_slli_epi16(a2_field(qh, 2, 3), 4)),
                _mm256_or_si256(a2_field(l0, 4, 15), _mm256_slli_epi16(a2_field(qh, 4, 3), 4)),
                _mm256_or_si256(a2_field(l1, 4, 15), _mm256_slli_epi16(a2_field(qh, 6, 3), 4)),
            };
            for (int k = 0; k < 4; k++)
                halves(a2_dot_u8s8(q[k], a2_load(y[i].qs + 128 * h + 32 * k)), &isum[8 * h + 2 * k], &isum[8 * h + 2 * k + 1]);
        }
        for (int j = 0; j < 16; j++) sumi += x[i].scales[j] * (isum[j] - 32 * y[i].bsums[j]);
        sum += (q_f16(&x[i].d) * y[i].d) * (float)sumi;
    }
    return sum;
}

static const smelt_qtype_ops k_avx2[] = {
    {SMELT_TYPE_Q2_K, NULL, smelt_quant_q2_K_avx2, NULL, dot_q2_K, 0, false, false},
    {SMELT_TYPE_Q3_K, NULL, smelt_quant_q3_K_avx2, NULL, dot_q3_K, 0, false, false},
    {SMELT_TYPE_Q4_K, NULL, smelt_quant_q4_K_avx2, NULL, dot_q4_K, 0, false, false},
    {SMELT_TYPE_Q5_K, NULL, smelt_quant_q5_K_avx2, NULL, dot_q5_K, 0, false, false},
    {SMELT_TYPE_Q6_K, NULL, smelt_quant_q6_K_avx2, NULL, dot_q6_K, 0, false, false},
};
const smelt_qfamily smelt_kquant_family_avx2 = {k_avx2, sizeof k_avx2 / sizeof k_avx2[0]};
