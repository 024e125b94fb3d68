/* merge_gemm.c — the accumulation order of PEFT's fp32 B @ A (PyTorch 1.13 + OpenBLAS
 * 0.3.21 Haswell/Zen sgemm, one thread) and portable kernels that reproduce it.
 * See merge_int.h for the model. Includes libc and libm only. */
/* Separate roundings must stay separate: no contraction of a*b+c into an FMA. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "merge_int.h"

#include "formats/base/cpu.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

/* OpenBLAS 0.3.21 parameters for the Haswell and Zen cores (param.h, setparam-ref.c):
 * SGEMM_DEFAULT_P/Q = 320, UNROLL_M 8, UNROLL_N 4, BUFFER_SIZE 32 << 22, align 0x3fff:
 * sgemm_r = ((BUFFER_SIZE - P*Q*4) / (Q*4) - 15) & ~15. */
#define GEMM_P 320L
#define GEMM_Q 320L
#define GEMM_R ((((32L << 22) - GEMM_P * GEMM_Q * 4) / (GEMM_Q * 4) - 15) & ~15L)

static long ceil8(long x) { return (x + 7) / 8 * 8; }

/* level3.c: rows per block when `rem` rows remain */
static long mblk(long rem)
{
    if (rem >= 2 * GEMM_P) return GEMM_P;
    if (rem > GEMM_P) return ceil8(rem / 2);
    return rem;
}

long smelt_gemm_kchunk(long rem)
{
    if (rem >= 2 * GEMM_Q) return GEMM_Q;
    if (rem > GEMM_Q) return ceil8(rem / 2);
    return rem;
}

/* The row block holding row i: start, size. */
static void mblock_at(long M, long i, long *is, long *mi)
{
    long b = mblk(M);
    if (i < b) {
        *is = 0;
        *mi = b;
        return;
    }
    long start = b, rem = M - b;
    if (rem >= 2 * GEMM_P) {
        long nfull = (rem - 2 * GEMM_P) / GEMM_P + 1;
        if (i < start + nfull * GEMM_P) {
            *is = start + (i - start) / GEMM_P * GEMM_P;
            *mi = GEMM_P;
            return;
        }
        start += nfull * GEMM_P;
        rem -= nfull * GEMM_P;
    }
    b = mblk(rem);
    if (i < start + b) {
        *is = start;
        *mi = b;
        return;
    }
    *is = start + b;
    *mi = rem - b;
}

enum { ROLE_SEQ = 0, ROLE_LEFT, ROLE_RIGHT, ROLE_W4 };

/* Kernel call covering column j for the first row block (per-tile calls) or the others
 * (one call over the GEMM_R column chunk); returns the column's role in that call and n. */
static int col_role(long N, long j, int first)
{
    long js = j / GEMM_R * GEMM_R;
    long minj = N - js < GEMM_R ? N - js : GEMM_R;
    long jl = j - js, n, q;
    if (first) {
        long n12 = minj / 12;
        if (jl < 12 * n12) {
            n = 12;
            q = jl % 12;
        } else {
            long off = jl - 12 * n12, r = minj - 12 * n12, s = off / 4 * 4;
            n = r - s < 4 ? r - s : 4;
            q = off - s;
        }
    } else {
        n = minj;
        q = jl;
    }
    long nb = n / 12;
    if (q < 12 * nb) return q % 12 < 6 ? ROLE_LEFT : ROLE_RIGHT;
    long rem = n - 12 * nb, off = q - 12 * nb, base = 0;
    static const long widths[4] = {8, 4, 2, 1};
    static const long need[4] = {7, 3, 1, 0};
    for (int w = 0; w < 4; w++) {
        if (rem <= need[w]) continue;
        if (off < base + widths[w]) return widths[w] == 4 ? ROLE_W4 : ROLE_SEQ;
        base += widths[w];
        rem -= widths[w];
    }
    return ROLE_SEQ;
}

/* Pair rows of one kernel call with m rows for a column of the given role, relative to
 * the call's first row. Returns the number of ranges (<= 2). */
static int call_pairs(long m, int role, smelt_gemm_range *r)
{
    if (role == ROLE_W4) {
        if ((m & ~7L) == 0) return 0;
        r[0] = (smelt_gemm_range){0, m & ~7L};
        return 1;
    }
    if (role == ROLE_SEQ || m < 16) return 0;
    /* n = 12 tile: H (rows 0-7, left, pairs), then R/L 16-row kernels stepping by 8,
     * ending with an 8-row T kernel (pairs) on the side that is left over. */
    long t_end = (m - 16) / 8, pT = 8 * (t_end + 1);
    int t_left = t_end % 2 == 0;
    int n = 0;
    if (role == ROLE_LEFT) {
        r[n++] = (smelt_gemm_range){0, 8};
        if (t_left) r[n++] = (smelt_gemm_range){pT, pT + 8};
    } else if (!t_left) {
        r[n++] = (smelt_gemm_range){pT, pT + 8};
    }
    return n;
}

size_t smelt_gemm_pair_ranges(long M, long N, long kc, long j, long i0, long i1, smelt_gemm_range *out, size_t max)
{
    size_t n = 0;
    if (kc < 8 || i0 >= i1) return 0;
    int role_first = col_role(N, j, 1), role_other = col_role(N, j, 0);
    for (long i = i0; i < i1;) {
        long is, mi;
        mblock_at(M, i, &is, &mi);
        smelt_gemm_range r[2];
        int k = call_pairs(mi, is == 0 ? role_first : role_other, r);
        for (int t = 0; t < k; t++) {
            long lo = is + r[t].lo, hi = is + r[t].hi;
            if (lo < i0) lo = i0;
            if (hi > i1) hi = i1;
            if (lo < hi && n < max) out[n++] = (smelt_gemm_range){lo, hi};
        }
        i = is + mi;
    }
    return n;
}

int smelt_gemm_is_pair(long M, long N, long kc, long i, long j)
{
    smelt_gemm_range r[2];
    return smelt_gemm_pair_ranges(M, N, kc, j, i, i + 1, r, 2) > 0;
}

/* ==== portable kernels ==== */

void smelt_gemm_seq_ref(const float *A, size_t lda, const float *b, long K, long n, float *C, int first)
{
    for (long i = 0; i < n; i++) {
        float acc = 0.0f;
        for (long k = 0; k < K; k++) acc = fmaf(A[(size_t)k * lda + (size_t)i], b[k], acc);
        C[i] = acc + (first ? 0.0f : C[i]);
    }
}

void smelt_gemm_pair_ref(const float *A, size_t lda, const float *b, long K, long n, float *C, int first)
{
    long k8 = K / 8 * 8;
    for (long i = 0; i < n; i++) {
        float e = 0.0f, o = 0.0f;
        long k = 0;
        for (; k < k8; k += 2) {
            e = fmaf(A[(size_t)k * lda + (size_t)i], b[k], e);
            o = fmaf(A[(size_t)(k + 1) * lda + (size_t)i], b[k + 1], o);
        }
        for (; k < K; k++) e = fmaf(A[(size_t)k * lda + (size_t)i], b[k], e);
        float acc = e + o;
        C[i] = acc + (first ? 0.0f : C[i]);
    }
}

void smelt_gemm_col(const float *A, size_t lda, const float *b, long M, long N, long K, long j, long i0, long i1,
                    float *C, int isa)
{
    bool simd = isa == SMELT_ISA_AVX2;
    smelt_gemm_seg_fn seq = simd ? smelt_gemm_seq_avx2 : smelt_gemm_seq_ref;
    smelt_gemm_seg_fn pair = simd ? smelt_gemm_pair_avx2 : smelt_gemm_pair_ref;
    long k0 = 0;
    int first = 1;
    while (k0 < K) {
        long kc = smelt_gemm_kchunk(K - k0);
        smelt_gemm_range r[64];
        long i = i0;
        while (i < i1) {
            size_t nr = smelt_gemm_pair_ranges(M, N, kc, j, i, i1, r, sizeof r / sizeof *r);
            long stop = i1;
            if (nr == sizeof r / sizeof *r) stop = r[nr - 1].hi; /* continue after the last one we saw */
            for (size_t t = 0; t < nr; t++) {
                if (r[t].lo > i) seq(A + (size_t)k0 * lda + (size_t)i, lda, b + k0, kc, r[t].lo - i, C + (i - i0), first);
                pair(A + (size_t)k0 * lda + (size_t)r[t].lo, lda, b + k0, kc, r[t].hi - r[t].lo, C + (r[t].lo - i0),
                     first);
                i = r[t].hi;
            }
            if (stop == i1 && i < i1) {
                seq(A + (size_t)k0 * lda + (size_t)i, lda, b + k0, kc, i1 - i, C + (i - i0), first);
                i = i1;
            }
        }
        k0 += kc;
        first = 0;
    }
}

float smelt_gemm_dot(const float *a, const float *b, long M, long N, long K, long i, long j)
{
    float C = 0.0f;
    long k0 = 0;
    int first = 1;
    while (k0 < K) {
        long kc = smelt_gemm_kchunk(K - k0);
        if (smelt_gemm_is_pair(M, N, kc, i, j)) smelt_gemm_pair_ref(a + k0, 1, b + k0, kc, 1, &C, first);
        else smelt_gemm_seq_ref(a + k0, 1, b + k0, kc, 1, &C, first);
        k0 += kc;
        first = 0;
    }
    return C;
}
