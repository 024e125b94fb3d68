/* merge_avx2.c — AVX2+FMA twins of the portable kernels in merge_gemm.c. Compiled with
 * -mavx2 -mfma (Makefile rule for *_avx2.c) and only called after a runtime CPU check.
 * Each lane performs exactly the scalar kernel's operations, so results are identical. */
#include "merge_int.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

void smelt_gemm_seq_avx2(const float *A, size_t lda, const float *b, long K, long n, float *C, int first)
{
    long i = 0;
    const __m256 zero = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256 acc = zero;
        for (long k = 0; k < K; k++)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(A + (size_t)k * lda + (size_t)i), _mm256_set1_ps(b[k]), acc);
        __m256 c = first ? zero : _mm256_loadu_ps(C + i);
        _mm256_storeu_ps(C + i, _mm256_add_ps(acc, c));
    }
    if (i < n) smelt_gemm_seq_ref(A + i, lda, b, K, n - i, C + i, first);
}

void smelt_gemm_pair_avx2(const float *A, size_t lda, const float *b, long K, long n, float *C, int first)
{
    long i = 0, k8 = K / 8 * 8;
    const __m256 zero = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
        __m256 e = zero, o = zero;
        long k = 0;
        for (; k < k8; k += 2) {
            e = _mm256_fmadd_ps(_mm256_loadu_ps(A + (size_t)k * lda + (size_t)i), _mm256_set1_ps(b[k]), e);
            o = _mm256_fmadd_ps(_mm256_loadu_ps(A + (size_t)(k + 1) * lda + (size_t)i), _mm256_set1_ps(b[k + 1]), o);
        }
        for (; k < K; k++)
            e = _mm256_fmadd_ps(_mm256_loadu_ps(A + (size_t)k * lda + (size_t)i), _mm256_set1_ps(b[k]), e);
        __m256 acc = _mm256_add_ps(e, o);
        __m256 c = first ? zero : _mm256_loadu_ps(C + i);
        _mm256_storeu_ps(C + i, _mm256_add_ps(acc, c));
    }
    if (i < n) smelt_gemm_pair_ref(A + i, lda, b, K, n - i, C + i, first);
}

#else

void smelt_gemm_seq_avx2(const float *A, size_t lda, const float *b, long K, long n, float *C, int first)
{
    smelt_gemm_seq_ref(A, lda, b, K, n, C, first);
}

void smelt_gemm_pair_avx2(const float *A, size_t lda, const float *b, long K, long n, float *C, int first)
{
    smelt_gemm_pair_ref(A, lda, b, K, n, C, first);
}

#endif
