/* kquant_avx2.c — the k-quant family's AVX2 kernel set: the super-block search of
 * kq_engine.inc built on the AVX2 vector (quant/vec.h) and kernels (quant/kern_avx2.c).
 * Results are bit-identical to the portable set. Built with -mavx2 -mfma -mf16c; used
 * only after runtime detection. */
#define SMELT_VEC_AVX2 1
#include "quant/vec.h"

#include "kq_engine.inc"

#include "quant/avx2_int.h"

const kq_engine kq_engine_avx2 = {kq_search_avx2, &smelt_search_kernels_avx2};

/* ==== dot products with Q8_K ====
 * Integer lanes per super-block in SIMD (exact): each sub-block's 8 (or 2 x 4) partial
 * sums times its integer scale; then acc += (d * dy) * lanes and the min (or level
 * bias) term in a scalar, in the order of the portable kernels (kq_lanes_sub). */

static inline float finish(__m256 acc)
{
    float a[8];
    _mm256_storeu_ps(a, acc);
    return q_lanes_sum(a);
}

static inline __m256 add_sb(__m256 acc, float d, __m256i lane)
{
    return _mm256_add_ps(acc, _mm256_mul_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(lane)));
}

/* Two 16-element sub-blocks in one vector: lanes 0-3 times s0, lanes 4-7 times s1. */
static inline __m256i scale2(__m256i p, int s0, int s1)
{
    __m256i sc = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi32(s0)), _mm_set1_epi32(s1), 1);
    return _mm256_mullo_epi32(p, sc);
}

static float dot_q2_K(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q2_K *x = vx;
    const smelt_block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps();
    float accm = 0;
    for (size_t i = 0; i < n / SMELT_QK_K; i++) {
        __m256i lane = _mm256_setzero_si256();
        int summ = 0;
        for (int h = 0; h < 2; h++) {
            __m256i q = a2_load(x[i].qs + 32 * h);
            for (int k = 0; k < 4; k++) {
                int j = 8 * h + 2 * k;
                __m256i p = a2_dot_u8s8(a2_field(q, 2 * k, 3), a2_load(y[i].qs + 128 * h + 32 * k));
                lane = _mm256_add_epi32(lane, scale2(p, x[i].scales[j] & 15, x[i].scales[j + 1] & 15));
            }
        }
        for (int j = 0; j < 16; j++) summ += (x[i].scales[j] >> 4) * y[i].bsums[j];
        acc = add_sb(acc, a2_f16(&x[i].d) * y[i].d, lane);
        accm = accm + (a2_f16(&x[i].dmin) * y[i].d) * (float)summ;
    }
    return finish(acc) - accm;
}

static float dot_q3_K(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q3_K *x = vx;
    const smelt_block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps();
    float accb = 0;
    for (size_t i = 0; i < n / SMELT_QK_K; i++) {
        __m256i lane = _mm256_setzero_si256();
        int sc[16], sumb = 0;
        for (int j = 0; j < 16; j++) {
            sc[j] = kq_q3_scale(x[i].scales, j);
            sumb += sc[j] * y[i].bsums[j];
        }
        __m256i hm = a2_load(x[i].hmask);
        for (int h = 0; h < 2; h++) {
            __m256i q = a2_load(x[i].qs + 32 * h);
            for (int k = 0; k < 4; k++) {
                int j = 8 * h + 2 * k;
                __m256i l = _mm256_or_si256(a2_field(q, 2 * k, 3), _mm256_slli_epi16(a2_field(hm, 4 * h + k, 1), 2));
                __m256i p = a2_dot_u8s8(l, a2_load(y[i].qs + 128 * h + 32 * k));
                lane = _mm256_add_epi32(lane, scale2(p, sc[j], sc[j + 1]));
            }
        }
        float dd = a2_f16(&x[i].d) * y[i].d;
        acc = add_sb(acc, dd, lane);
        accb = accb + dd * (float)(4 * sumb);
    }
    return finish(acc) - accb;
}

static inline void k4_sub(__m256i *lane, int *summ, const uint8_t *scales, const int16_t *bsums, int j, __m256i q,
                          const int8_t *y)
{
    int sc, m;
    kq_scale_min_k4(j, scales, &sc, &m);
    *lane = _mm256_add_epi32(*lane, _mm256_mullo_epi32(a2_dot_u8s8(q, a2_load(y)), _mm256_set1_epi32(sc)));
    *summ += m * (bsums[2 * j] + bsums[2 * j + 1]);
}

static float dot_q4_K(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q4_K *x = vx;
    const smelt_block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps();
    float accm = 0;
    for (size_t i = 0; i < n / SMELT_QK_K; i++) {
        __m256i lane = _mm256_setzero_si256();
        int summ = 0;
        for (int c = 0; c < 4; c++) {
            __m256i q = a2_load(x[i].qs + 32 * c);
            k4_sub(&lane, &summ, x[i].scales, y[i].bsums, 2 * c, _mm256_and_si256(q, _mm256_set1_epi8(15)),
                   y[i].qs + 64 * c);
            k4_sub(&lane, &summ, x[i].scales, y[i].bsums, 2 * c + 1, a2_field(q, 4, 15), y[i].qs + 64 * c + 32);
        }
        acc = add_sb(acc, a2_f16(&x[i].d) * y[i].d, lane);
        accm = accm + (a2_f16(&x[i].dmin) * y[i].d) * (float)summ;
    }
    return finish(acc) - accm;
}

static float dot_q5_K(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q5_K *x = vx;
    const smelt_block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps();
    float accm = 0;
    for (size_t i = 0; i < n / SMELT_QK_K; i++) {
        __m256i lane = _mm256_setzero_si256();
        int summ = 0;
        __m256i qh = a2_load(x[i].qh);
        for (int c = 0; c < 4; c++) {
            __m256i q = a2_load(x[i].qs + 32 * c);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(q, _mm256_set1_epi8(15)),
                                         _mm256_slli_epi16(a2_field(qh, 2 * c, 1), 4));
            __m256i hi = _mm256_or_si256(a2_field(q, 4, 15), _mm256_slli_epi16(a2_field(qh, 2 * c + 1, 1), 4));
            k4_sub(&lane, &summ, x[i].scales, y[i].bsums, 2 * c, lo, y[i].qs + 64 * c);
            k4_sub(&lane, &summ, x[i].scales, y[i].bsums, 2 * c + 1, hi, y[i].qs + 64 * c + 32);
        }
        acc = add_sb(acc, a2_f16(&x[i].d) * y[i].d, lane);
        accm = accm + (a2_f16(&x[i].dmin) * y[i].d) * (float)summ;
    }
    return finish(acc) - accm;
}

static float dot_q6_K(const void *vx, const void *vy, size_t n)
{
    const smelt_block_q6_K *x = vx;
    const smelt_block_q8_K *y = vy;
    __m256 acc = _mm256_setzero_ps();
    float accb = 0;
    for (size_t i = 0; i < n / SMELT_QK_K; i++) {
        __m256i lane = _mm256_setzero_si256();
        int sumb = 0;
        for (int j = 0; j < 16; j++) sumb += x[i].scales[j] * y[i].bsums[j];
        for (int h = 0; h < 2; h++) {
            __m256i l0 = a2_load(x[i].ql + 64 * h), l1 = a2_load(x[i].ql + 64 * h + 32), qh = a2_load(x[i].qh + 32 * h);
            __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, _mm256_set1_epi8(15)), _mm256_slli_epi16(a2_field(qh, 0, 3), 4)),
                _mm256_or_si256(_mm256_and_si256(l1, _mm256_set1_epi8(15)), _mm256_slli_epi16(a2_field(qh, 2, 3), 4)),
                _mm256_or_si256(a2_field(l0, 4, 15), _mm256_slli_epi16(a2_field(qh, 4, 3), 4)),
                _mm256_or_si256(a2_field(l1, 4, 15), _mm256_slli_epi16(a2_field(qh, 6, 3), 4)),
            };
            for (int k = 0; k < 4; k++) {
                int j = 8 * h + 2 * k;
                __m256i p = a2_dot_u8s8(q[k], a2_load(y[i].qs + 128 * h + 32 * k));
                lane = _mm256_add_epi32(lane, scale2(p, x[i].scales[j], x[i].scales[j + 1]));
            }
        }
        float dd = a2_f16(&x[i].d) * y[i].d;
        acc = add_sb(acc, dd, lane);
        accb = accb + dd * (float)(32 * sumb);
    }
    return finish(acc) - accb;
}

static const smelt_qtype_ops k_avx2[] = {
    {SMELT_TYPE_Q2_K, NULL, smelt_quant_q2_K_avx2, NULL, dot_q2_K, 0, false, false, smelt_quant_q2_K_avx2_err},
    {SMELT_TYPE_Q3_K, NULL, smelt_quant_q3_K_avx2, NULL, dot_q3_K, 0, false, false, smelt_quant_q3_K_avx2_err},
    {SMELT_TYPE_Q4_K, NULL, smelt_quant_q4_K_avx2, NULL, dot_q4_K, 0, false, false, smelt_quant_q4_K_avx2_err},
    {SMELT_TYPE_Q5_K, NULL, smelt_quant_q5_K_avx2, NULL, dot_q5_K, 0, false, false, smelt_quant_q5_K_avx2_err},
    {SMELT_TYPE_Q6_K, NULL, smelt_quant_q6_K_avx2, NULL, dot_q6_K, 0, false, false, smelt_quant_q6_K_avx2_err},
};
const smelt_qfamily smelt_kquant_family_avx2 = {k_avx2, sizeof k_avx2 / sizeof k_avx2[0]};
