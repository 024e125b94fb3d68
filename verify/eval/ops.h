/* ops.h — the numeric building blocks of the forward pass: matrix products over weights of
 * any type the quant library decodes, RMSNorm, RoPE, causal attention, SwiGLU, softmax.
 * Layer: verify. Includes formats/, quant/ and verify/eval/model.h.
 *
 * Determinism: every output element is computed by one thread, in one fixed order of
 * operations that does not depend on the number of threads, on how work is split, or on
 * the instruction set — the AVX2 kernels and the portable C kernels give bit-identical
 * results (the portable ones use fmaf() where the vector ones use FMA). */
#ifndef SMELT_FWD_OPS_H
#define SMELT_FWD_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/base/cpu.h"
#include "formats/base/err.h"
#include "formats/base/pool.h"
#include "verify/eval/model.h"

typedef struct smelt_fwd_ops smelt_fwd_ops;

/* isa: a kernel set (SMELT_ISA_*, formats/base/cpu.h); isa < 0: the best this CPU runs.
 * Asking for AVX2 on a CPU without it falls back to portable.
 * pool may be NULL (single-threaded) and is borrowed. NULL on ENOMEM. */
smelt_fwd_ops *smelt_fwd_ops_new(smelt_pool *pool, int isa);
void smelt_fwd_ops_free(smelt_fwd_ops *o);
int smelt_fwd_ops_isa(const smelt_fwd_ops *o);
const char *smelt_fwd_ops_isa_name(const smelt_fwd_ops *o);
int smelt_fwd_ops_threads(const smelt_fwd_ops *o);
smelt_pool *smelt_fwd_ops_pool(const smelt_fwd_ops *o);

/* ==== matrix products ==== */

/* One product  C[t][n] (+)= sum_k X[t][k] * W[n][k]  for t < n_rows, n < W.ne[1],
 * k < W.ne[0], where W is matrix `expert` of the view (0 for dense weights), decoded to f32
 * through smelt_q_ops(). X rows are ldx floats apart, C rows ldc floats apart. The sum
 * over k runs in order k = 0, 1, … with one fused multiply-add per term, starting from 0
 * (or from C when accumulate is set). */
typedef struct smelt_mm {
    const smelt_wview *w;
    uint32_t expert;
    const float *x;
    size_t ldx;
    float *c;
    size_t ldc;
    size_t n_rows;
    bool accumulate;
} smelt_mm;

/* Run several independent products as one parallel job (e.g. Q, K and V; or every
 * expert's gate and up). Outputs must not overlap. */
void smelt_fwd_ops_matmul(smelt_fwd_ops *o, const smelt_mm *jobs, size_t n_jobs);

/* ==== row operations (single-threaded; callers split rows over threads) ==== */

/* y = x / sqrt(mean(x^2) + eps) * w   (sum of squares in double, as ggml's rms_norm) */
void smelt_rmsnorm(const float *x, const float *w, float *y, size_t n, float eps);
/* y[i] = exp(x[i] - sub) with smelt's exp (error < 2 ulp, deterministic across ISAs). */
void smelt_fwd_ops_exp_sub(const smelt_fwd_ops *o, const float *x, float sub, float *y, size_t n);
/* Sum of a row in a fixed 8-lane order (the same on every ISA). */
float smelt_fwd_ops_sum(const smelt_fwd_ops *o, const float *x, size_t n);
/* In place: g[i] = silu(g[i]) * u[i],  silu(x) = x / (1 + exp(-x)). */
void smelt_fwd_ops_swiglu(const smelt_fwd_ops *o, float *g, const float *u, size_t n);
/* Numerically stable softmax in place (max subtracted, exp, sum in double, divide). */
void smelt_fwd_ops_softmax(const smelt_fwd_ops *o, float *x, size_t n);
/* sum_i exp(x_i - sub) in double, in one fixed order (four interleaved partial sums);
 * scratch: n floats. */
double smelt_fwd_ops_sum_exp(const smelt_fwd_ops *o, const float *x, float sub, size_t n, float *scratch);
/* log(sum_i exp(x[i] - max)) + max and the max itself, for log-softmax: returns the log of
 * the partition function; *imax receives the first index of the maximum (may be NULL). */
double smelt_fwd_ops_logsumexp(const smelt_fwd_ops *o, const float *x, size_t n, float *scratch, size_t *imax);

/* ==== RoPE (llama.cpp's "normal" mode: rotate adjacent pairs (x[2i], x[2i+1]); NeoX mode:
 * rotate (x[i], x[i + n_rot/2])) ==== */

/* cos/sin table for one position: cs[2i] = cos θ_i, cs[2i+1] = sin θ_i, i < n_rot/2, with
 * θ_0 = pos·scale/ff_0 and the base angle multiplied by base^(-2/n_rot) per pair, in f32, as
 * ggml computes it. freq_factors may be NULL. */
void smelt_rope_table(float *cs, uint32_t pos, uint32_t n_rot, float base, float freq_scale,
                      const float *freq_factors);
/* Rotate the first n_rot elements of one head vector in place with a table. */
void smelt_rope_apply(float *x, const float *cs, uint32_t n_rot);
/* The same in llama.cpp's NeoX mode: pair i is (x[i], x[i + n_rot/2]), angle θ_i. */
void smelt_rope_apply_neox(float *x, const float *cs, uint32_t n_rot);

/* ==== attention ==== */

/* Causal attention for one sequence and one query head over a key/value cache:
 *   out_i = sum_{j <= pos_i} softmax_j(scale · q_i · k_j) v_j
 * q: n_q rows (stride ldq) of hd; query i sits at position pos0 + i; the cache holds keys
 * transposed, kt[d * ldk + j], and values row-wise, v[j * ldv + d] (hd_v wide).
 * out: n_q rows (stride ldo). scratch: at least 4 * (pos0 + n_q) floats. */
void smelt_fwd_ops_attend(const smelt_fwd_ops *o, const float *q, size_t ldq, size_t n_q, size_t pos0, size_t hd,
                      const float *kt, size_t ldk, const float *v, size_t ldv, size_t hd_v, float scale,
                      float *out, size_t ldo, float *scratch);

#endif
