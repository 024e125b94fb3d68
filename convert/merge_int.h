/* merge_int.h — private to convert/merge*.c: the accumulation order of PEFT's B @ A and
 * the kernels that reproduce it. Not installed, not for other modules. */
#ifndef SMELT_MERGE_INT_H
#define SMELT_MERGE_INT_H

#include <stddef.h>
#include <stdint.h>

/* ==== the reference GEMM's accumulation order ====
 *
 * PEFT computes ΔW = (lora_B @ lora_A) * scaling with torch.mm in fp32. PyTorch hands the
 * product to BLAS as the column-major problem C = A' · B' (M = lora_A's columns, N =
 * lora_B's rows, K = r). The merge oracle (samples/reference.json) was made with OpenBLAS
 * 0.3.21 whose Haswell/Zen sgemm kernel sums every element with FMAs in k order, either
 * in one accumulator ("sequential") or in two, even k and odd k, added at the end
 * ("pairs") — which one depends on where the element falls in OpenBLAS's blocking
 * (GEMM_P/Q/R, 12/4/… column tiles, 16/8-row micro tiles). K is cut into chunks
 * (GEMM_Q) whose partial sums are added into C in order. smelt_gemm_* model exactly that;
 * the model was checked bit for bit against torch.mm on OpenBLAS 0.3.21 (Haswell core) for
 * shapes up to 11008 x 4096, r from 5 to 700 and N up to 150000. */

/* Size of the next K chunk when `rem` values of k remain. */
long smelt_gemm_kchunk(long rem);

typedef struct smelt_gemm_range {
    long lo, hi; /* rows [lo, hi) of the problem accumulated in pairs */
} smelt_gemm_range;

/* Rows i in [i0, i1) of column j accumulated in pairs for a K chunk of kc, as ascending
 * disjoint ranges. Returns the count (at most max; 2 per OpenBLAS row block). */
size_t smelt_gemm_pair_ranges(long M, long N, long kc, long j, long i0, long i1, smelt_gemm_range *out,
                              size_t max);
/* The same question for one element. */
int smelt_gemm_is_pair(long M, long N, long kc, long i, long j);

/* ==== kernels ====
 * C[i] (i in [i0, i1)) of column j: C[i] = Σ_k A[k*lda + i] * b[k] in the reference order,
 * k over [0, K) cut into chunks; A is K rows of lda floats, b is K floats. -0 sums become +0,
 * as the reference's C = alpha·acc + 0 does. isa: the kernel set, SMELT_ISA_PORTABLE or
 * SMELT_ISA_AVX2 (formats/base/cpu.h), which the caller has checked this CPU runs
 * (smelt_cpu_isa()); both give the same bits. */
void smelt_gemm_col(const float *A, size_t lda, const float *b, long M, long N, long K, long j, long i0, long i1,
                    float *C, int isa);
/* One element (i, j) with A column a[k] (stride 1) and b[k]. */
float smelt_gemm_dot(const float *a, const float *b, long M, long N, long K, long i, long j);

/* Segment kernels (portable and AVX2+FMA twins give identical bits): over i in [0, n),
 *   seq:  acc = 0; for k: acc = fma(A[k*lda+i], b[k], acc)
 *   pair: e = o = 0; 8-blocks of k alternate e/o, the tail goes to e; acc = e + o
 * then C[i] = acc + C[i] (C[i] = acc + 0 on the first chunk). */
typedef void (*smelt_gemm_seg_fn)(const float *A, size_t lda, const float *b, long K, long n, float *C, int first);
void smelt_gemm_seq_ref(const float *A, size_t lda, const float *b, long K, long n, float *C, int first);
void smelt_gemm_pair_ref(const float *A, size_t lda, const float *b, long K, long n, float *C, int first);
void smelt_gemm_seq_avx2(const float *A, size_t lda, const float *b, long K, long n, float *C, int first);
void smelt_gemm_pair_avx2(const float *A, size_t lda, const float *b, long K, long n, float *C, int first);

#endif
