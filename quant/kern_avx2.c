/* kern_avx2.c — AVX2 encoder kernels, operation for operation the twins of kern.c
 * (same f32 operations per element, same lane order, no fused multiply-add).
 * Built with -mavx2 -mfma -mf16c; used only after runtime detection. */
#include <immintrin.h>

#include "kern.h"

#ifndef __STRICT_ANSI__
#error "build with -std=c11: GNU modes let the compiler fuse mul+add, breaking parity with kern.c"
#endif

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)); /* a0+a4 .. a3+a7 */
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));                                        /* (0+4)+(2+6), (1+5)+(3+7) */
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

static inline __m256 clamp_round(__m256 t, __m256 lo, __m256 hi)
{
    t = _mm256_max_ps(t, lo);
    t = _mm256_min_ps(t, hi);
    return _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

static inline void store_levels(void *L, __m256 l)
{
    __m256i i = _mm256_cvtps_epi32(l);
    __m128i p = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    _mm_storel_epi64((__m128i *)L, _mm_packs_epi16(p, p));
}



static void sym_score(int n, const float *x, const float *w, int lo, int hi, const float *s, int K, float *out)
{
    const __m256 zero = _mm256_setzero_ps(), vlo = _mm256_set1_ps((float)lo), vhi = _mm256_set1_ps((float)hi);
    for (int k0 = 0; k0 < K; k0 += 8) {
        float sv[8];
        for (int j = 0; j < 8; j++) sv[j] = s[k0 + j < K ? k0 + j : K - 1];
        __m256 vs = _mm256_loadu_ps(sv);
        __m256 a2 = zero, a3 = zero;
        for (int i = 0; i < n; i++) {
            __m256 xv = _mm256_set1_ps(x[i]);
            __m256 l = clamp_round(_mm256_mul_ps(xv, vs), vlo, vhi);
            __m256 wl = _mm256_mul_ps(_mm256_set1_ps(w[i]), l);
            a2 = _mm256_add_ps(a2, _mm256_mul_ps(wl, l));
            a3 = _mm256_add_ps(a3, _mm256_mul_ps(wl, xv));
        }
        float r2[8], r3[8];
        _mm256_storeu_ps(r2, a2);
        _mm256_storeu_ps(r3, a3);
        for (int j = 0; j < 8 && k0 + j < K; j++) {
            out[2 * (k0 + j)] = r2[j];
            out[2 * (k0 + j) + 1] = r3[j];
        }
    }
}

static float sym_round(int n, const float *x, const float *w, float d, float id, int lo, int hi, int8_t *L,
                       float *sums)
{
    const __m256 zero = _mm256_setzero_ps(), vlo = _mm256_set1_ps((float)lo), vhi = _mm256_set1_ps((float)hi);
    const __m256 vd = _mm256_set1_ps(d), vid = _mm256_set1_ps(id);
    __m256 e = zero, a1 = zero, a2 = zero, a3 = zero;
    for (int v = 0; v < n; v += 8) {
        __m256 xv = _mm256_loadu_ps(x + v), wv = _mm256_loadu_ps(w + v);
        __m256 l = clamp_round(_mm256_mul_ps(xv, vid), vlo, vhi);
        store_levels(L + v, l);
        __m256 r = _mm256_sub_ps(_mm256_mul_ps(vd, l), xv);
        __m256 wl = _mm256_mul_ps(wv, l);
        e = _mm256_add_ps(e, _mm256_mul_ps(_mm256_mul_ps(wv, r), r));
        a1 = _mm256_add_ps(a1, wl);
        a2 = _mm256_add_ps(a2, _mm256_mul_ps(wl, l));
        a3 = _mm256_add_ps(a3, _mm256_mul_ps(wl, xv));
    }
    sums[0] = hsum(a1);
    sums[1] = hsum(a2);
    sums[2] = hsum(a3);
    return hsum(e);
}

const smelt_search_kernels smelt_search_kernels_avx2 = {sym_score, sym_round};
