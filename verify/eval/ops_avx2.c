/* ops_avx2.c — AVX2/FMA/F16C kernels of the forward pass (built with -mavx2 -mfma -mf16c,
 * called only after the runtime CPU check in ops.c). Each reproduces the arithmetic defined
 * in ops_int.h operation for operation, so results equal the portable kernels bit for bit.
 * Includes verify/eval/ops_int.h only. */
#include "ops_int.h"

/* Every multiply and add below is rounded as written (the ISA twins must agree bit for bit):
 * GCC does not contract in ISO C mode; clang needs telling. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* ==== GEMM 6x16 micro-tile ==== */

static void gemm_avx2(size_t kc, const float *x, size_t ldx, const float *wp, float *c, size_t ldc, int acc)
{
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (acc) {
        c00 = _mm256_loadu_ps(c + 0 * ldc), c01 = _mm256_loadu_ps(c + 0 * ldc + 8);
        c10 = _mm256_loadu_ps(c + 1 * ldc), c11 = _mm256_loadu_ps(c + 1 * ldc + 8);
        c20 = _mm256_loadu_ps(c + 2 * ldc), c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
        c30 = _mm256_loadu_ps(c + 3 * ldc), c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
        c40 = _mm256_loadu_ps(c + 4 * ldc), c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
        c50 = _mm256_loadu_ps(c + 5 * ldc), c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    }
    const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx, *x4 = x + 4 * ldx, *x5 = x + 5 * ldx;
    for (size_t k = 0; k < kc; k++) {
        const __m256 w0 = _mm256_load_ps(wp + k * 16), w1 = _mm256_load_ps(wp + k * 16 + 8);
        __m256 a;
        a = _mm256_broadcast_ss(x0 + k);
        c00 = _mm256_fmadd_ps(a, w0, c00), c01 = _mm256_fmadd_ps(a, w1, c01);
        a = _mm256_broadcast_ss(x1 + k);
        c10 = _mm256_fmadd_ps(a, w0, c10), c11 = _mm256_fmadd_ps(a, w1, c11);
        a = _mm256_broadcast_ss(x2 + k);
        c20 = _mm256_fmadd_ps(a, w0, c20), c21 = _mm256_fmadd_ps(a, w1, c21);
        a = _mm256_broadcast_ss(x3 + k);
        c30 = _mm256_fmadd_ps(a, w0, c30), c31 = _mm256_fmadd_ps(a, w1, c31);
        a = _mm256_broadcast_ss(x4 + k);
        c40 = _mm256_fmadd_ps(a, w0, c40), c41 = _mm256_fmadd_ps(a, w1, c41);
        a = _mm256_broadcast_ss(x5 + k);
        c50 = _mm256_fmadd_ps(a, w0, c50), c51 = _mm256_fmadd_ps(a, w1, c51);
    }
    _mm256_storeu_ps(c + 0 * ldc, c00), _mm256_storeu_ps(c + 0 * ldc + 8, c01);
    _mm256_storeu_ps(c + 1 * ldc, c10), _mm256_storeu_ps(c + 1 * ldc + 8, c11);
    _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
    _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);
    _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}

/* ==== packing: 8x8 transposes ==== */

static inline void tr8(__m256 r[8])
{
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20), r[1] = _mm256_permute2f128_ps(u1, u5, 0x20);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20), r[3] = _mm256_permute2f128_ps(u3, u7, 0x20);
    r[4] = _mm256_permute2f128_ps(u0, u4, 0x31), r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[6] = _mm256_permute2f128_ps(u2, u6, 0x31), r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

/* rows x kc block (row loader `ld`) → panel; generic over the element type via a macro so
 * f32 and f16 share the transpose. Tails (kc % 8, missing rows) go element by element. */
#define PACK_BODY(LOAD8, LOAD1)                                                              \
    size_t k = 0;                                                                            \
    if (rows == 16) {                                                                        \
        for (; k + 8 <= kc; k += 8) {                                                        \
            for (int h = 0; h < 2; h++) {                                                    \
                __m256 r[8];                                                                 \
                for (int j = 0; j < 8; j++) r[j] = LOAD8(src + (size_t)(h * 8 + j) * lds + k); \
                tr8(r);                                                                      \
                for (int j = 0; j < 8; j++) _mm256_store_ps(wp + (k + j) * 16 + h * 8, r[j]); \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
    for (; k < kc; k++)                                                                      \
        for (size_t j = 0; j < 16; j++) wp[k * 16 + j] = j < rows ? LOAD1(src + j * lds + k) : 0.0f;

#define LD8_F32(p) _mm256_loadu_ps(p)
#define LD1_F32(p) (*(p))
#define LD8_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
static inline float ld1_f16(const uint16_t *p) { return _cvtsh_ss(*p); }
#define LD1_F16(p) ld1_f16(p)

#define LD8_BF16(p) _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p))), 16))
static inline float ld1_bf16(const uint16_t *p)
{
    uint32_t u = (uint32_t)*p << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
#define LD1_BF16(p) ld1_bf16(p)

static void pack_f32_avx2(const float *src, size_t lds, size_t rows, size_t kc, float *wp) { PACK_BODY(LD8_F32, LD1_F32) }

static void pack_f16_avx2(const uint16_t *src, size_t lds, size_t rows, size_t kc, float *wp) { PACK_BODY(LD8_F16, LD1_F16) }

static void pack_bf16_avx2(const uint16_t *src, size_t lds, size_t rows, size_t kc, float *wp) { PACK_BODY(LD8_BF16, LD1_BF16) }

/* ==== exp and friends ==== */

static inline __m256 exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(SMELT_EXP_LO), hi = _mm256_set1_ps(SMELT_EXP_HI);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    __m256 t = _mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f));
    __m256 nf = _mm256_sub_ps(_mm256_add_ps(t, magic), magic);
    __m256 r = _mm256_fmadd_ps(nf, _mm256_set1_ps(-0.693359375f), xc);
    r = _mm256_fmadd_ps(nf, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 r2 = _mm256_mul_ps(r, r);
    __m256 y = _mm256_fmadd_ps(p, r2, r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i n = _mm256_cvtps_epi32(nf);
    __m256 sc = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
    y = _mm256_mul_ps(y, sc);
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LT_OQ));
    y = _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), _mm256_cmp_ps(x, hi, _CMP_GT_OQ));
    y = _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    return y;
}

static void exp_sub_avx2(const float *x, float sub, float *y, size_t n)
{
    const __m256 vs = _mm256_set1_ps(sub);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs)));
    for (; i < n; i++) y[i] = smelt_exp1(x[i] - sub);
}

static float sum_avx2(const float *x, size_t n)
{
    __m256 a = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) a = _mm256_add_ps(a, _mm256_loadu_ps(x + i));
    float l[8];
    _mm256_storeu_ps(l, a);
    for (; i < n; i++) l[i % 8] += x[i];
    return smelt_lane_tree(l);
}

static void swiglu_avx2(float *g, const float *u, size_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(g + i);
        __m256 e = exp8(_mm256_xor_ps(x, neg));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) {
        float e = smelt_exp1(-g[i]);
        g[i] = (g[i] / (1.0f + e)) * u[i];
    }
}

/* ==== attention ==== */

static void scores_avx2(const float *q, size_t ldq, size_t m, size_t hd, const float *kt, size_t ldk, size_t n,
                        float *s, size_t lds)
{
    size_t j = 0;
    for (; j + 16 <= n; j += 16) {
        __m256 a[4][2];
        for (size_t i = 0; i < 4; i++) a[i][0] = a[i][1] = _mm256_setzero_ps();
        for (size_t d = 0; d < hd; d++) {
            const __m256 k0 = _mm256_loadu_ps(kt + d * ldk + j), k1 = _mm256_loadu_ps(kt + d * ldk + j + 8);
            for (size_t i = 0; i < 4; i++) {
                if (i >= m) break;
                const __m256 qb = _mm256_broadcast_ss(q + i * ldq + d);
                a[i][0] = _mm256_fmadd_ps(qb, k0, a[i][0]);
                a[i][1] = _mm256_fmadd_ps(qb, k1, a[i][1]);
            }
        }
        for (size_t i = 0; i < m; i++) {
            _mm256_storeu_ps(s + i * lds + j, a[i][0]);
            _mm256_storeu_ps(s + i * lds + j + 8, a[i][1]);
        }
    }
    for (; j + 8 <= n; j += 8) {
        __m256 a[4];
        for (size_t i = 0; i < 4; i++) a[i] = _mm256_setzero_ps();
        for (size_t d = 0; d < hd; d++) {
            const __m256 k0 = _mm256_loadu_ps(kt + d * ldk + j);
            for (size_t i = 0; i < m; i++) a[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(q + i * ldq + d), k0, a[i]);
        }
        for (size_t i = 0; i < m; i++) _mm256_storeu_ps(s + i * lds + j, a[i]);
    }
    for (; j < n; j++)
        for (size_t i = 0; i < m; i++) {
            float a = 0.0f;
            for (size_t d = 0; d < hd; d++) a = fmaf(q[i * ldq + d], kt[d * ldk + j], a);
            s[i * lds + j] = a;
        }
}

static void wsum_avx2(const float *p, size_t n, const float *v, size_t ldv, size_t hd, float *o)
{
    size_t d = 0;
    for (; d + 32 <= hd; d += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t j = 0; j < n; j++) {
            const __m256 pb = _mm256_broadcast_ss(p + j);
            const float *vr = v + j * ldv + d;
            a0 = _mm256_fmadd_ps(pb, _mm256_loadu_ps(vr), a0);
            a1 = _mm256_fmadd_ps(pb, _mm256_loadu_ps(vr + 8), a1);
            a2 = _mm256_fmadd_ps(pb, _mm256_loadu_ps(vr + 16), a2);
            a3 = _mm256_fmadd_ps(pb, _mm256_loadu_ps(vr + 24), a3);
        }
        _mm256_storeu_ps(o + d, a0);
        _mm256_storeu_ps(o + d + 8, a1);
        _mm256_storeu_ps(o + d + 16, a2);
        _mm256_storeu_ps(o + d + 24, a3);
    }
    for (; d + 8 <= hd; d += 8) {
        __m256 a0 = _mm256_setzero_ps();
        for (size_t j = 0; j < n; j++) a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j), _mm256_loadu_ps(v + j * ldv + d), a0);
        _mm256_storeu_ps(o + d, a0);
    }
    for (; d < hd; d++) {
        float a = 0.0f;
        for (size_t j = 0; j < n; j++) a = fmaf(p[j], v[j * ldv + d], a);
        o[d] = a;
    }
}

const smelt_fwd_kernels smelt_fwd_kernels_avx2 = {
    "avx2", gemm_avx2, pack_f32_avx2, pack_f16_avx2, pack_bf16_avx2, exp_sub_avx2, sum_avx2, swiglu_avx2, scores_avx2, wsum_avx2,
};

#else

const smelt_fwd_kernels smelt_fwd_kernels_avx2 = {0};

#endif
