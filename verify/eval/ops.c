/* ops.c — numeric operations of the forward pass: kernel dispatch, the cache-blocked
 * matrix product over decoded weight panels, norms, RoPE, softmax and attention, plus the
 * portable C kernels (the reference definition the AVX2 ones reproduce bit for bit).
 * Includes formats/, quant/qtypes.h, verify/eval/ops.h, verify/eval/ops_int.h. */
#include "ops.h"

/* Every multiply and add below is rounded as written (the ISA twins must agree bit for bit):
 * GCC does not contract in ISO C mode; clang needs telling. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/base/half.h"
#include "ops_int.h"
#include "quant/qtypes.h"

/* Blocking: a task computes NB weight rows x up to TB tokens; the K dimension is walked in
 * KC-wide slices (a multiple of every block size, 256 = QK_K) so one packed slice of the
 * weights (NB x KC floats, 64 KiB) stays in L2 while token rows stream through L1. */
#define NB 64
#define KC 256
#define TB_MAX 384
#define TB_MIN 48

struct smelt_fwd_ops {
    smelt_pool *pool;
    int n_threads;
    int isa;
    const smelt_fwd_kernels *k;
    float *scratch; /* per thread: packed panel, decode rows, edge tiles */
    size_t scratch_per_thread;
};

/* ==== portable kernels ==== */

static void gemm_portable(size_t kc, const float *x, size_t ldx, const float *wp, float *c, size_t ldc, int acc)
{
    for (int i = 0; i < SMELT_MR; i++) {
        const float *xi = x + (size_t)i * ldx;
        for (int j = 0; j < SMELT_NR; j++) {
            float s = acc ? c[(size_t)i * ldc + j] : 0.0f;
            for (size_t k = 0; k < kc; k++) s = fmaf(xi[k], wp[k * SMELT_NR + j], s);
            c[(size_t)i * ldc + j] = s;
        }
    }
}

static void pack_f32_portable(const float *src, size_t lds, size_t rows, size_t kc, float *wp)
{
    for (size_t j = 0; j < SMELT_NR; j++) {
        if (j < rows) {
            const float *r = src + j * lds;
            for (size_t k = 0; k < kc; k++) wp[k * SMELT_NR + j] = r[k];
        } else {
            for (size_t k = 0; k < kc; k++) wp[k * SMELT_NR + j] = 0.0f;
        }
    }
}

static void pack_f16_portable(const uint16_t *src, size_t lds, size_t rows, size_t kc, float *wp)
{
    for (size_t j = 0; j < SMELT_NR; j++) {
        if (j < rows) {
            const uint16_t *r = src + j * lds;
            for (size_t k = 0; k < kc; k++) wp[k * SMELT_NR + j] = smelt_f16_to_f32(r[k]);
        } else {
            for (size_t k = 0; k < kc; k++) wp[k * SMELT_NR + j] = 0.0f;
        }
    }
}

static void pack_bf16_portable(const uint16_t *src, size_t lds, size_t rows, size_t kc, float *wp)
{
    for (size_t j = 0; j < SMELT_NR; j++) {
        if (j < rows) {
            const uint16_t *r = src + j * lds;
            for (size_t k = 0; k < kc; k++) wp[k * SMELT_NR + j] = smelt_bf16_to_f32(r[k]);
        } else {
            for (size_t k = 0; k < kc; k++) wp[k * SMELT_NR + j] = 0.0f;
        }
    }
}

static void exp_sub_portable(const float *x, float sub, float *y, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] = smelt_exp1(x[i] - sub);
}

static float sum_portable(const float *x, size_t n)
{
    float l[8] = {0};
    for (size_t i = 0; i < n; i++) l[i % 8] += x[i];
    return smelt_lane_tree(l);
}

static void swiglu_portable(float *g, const float *u, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float e = smelt_exp1(-g[i]);
        g[i] = (g[i] / (1.0f + e)) * u[i];
    }
}

static void scores_portable(const float *q, size_t ldq, size_t m, size_t hd, const float *kt, size_t ldk,
                            size_t n, float *s, size_t lds)
{
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float a = 0.0f;
            for (size_t d = 0; d < hd; d++) a = fmaf(q[i * ldq + d], kt[d * ldk + j], a);
            s[i * lds + j] = a;
        }
}

static void wsum_portable(const float *p, size_t n, const float *v, size_t ldv, size_t hd, float *o)
{
    for (size_t d = 0; d < hd; d++) {
        float a = 0.0f;
        for (size_t j = 0; j < n; j++) a = fmaf(p[j], v[j * ldv + d], a);
        o[d] = a;
    }
}

const smelt_fwd_kernels smelt_fwd_kernels_portable = {
    "portable", gemm_portable, pack_f32_portable, pack_f16_portable, pack_bf16_portable, exp_sub_portable,
    sum_portable, swiglu_portable, scores_portable, wsum_portable,
};

/* ==== context ==== */

smelt_fwd_ops *smelt_fwd_ops_new(smelt_pool *pool, int isa)
{
    smelt_fwd_ops *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->pool = pool;
    o->n_threads = smelt_pool_threads(pool);
    isa = smelt_fwd_kernels_avx2.name ? smelt_cpu_isa(isa) : SMELT_ISA_PORTABLE;
    o->isa = isa;
    o->k = isa == SMELT_ISA_AVX2 ? &smelt_fwd_kernels_avx2 : &smelt_fwd_kernels_portable;
    /* packed panel NB*KC + decode rows NR*KC + edge X tile MR*KC + edge C tile MR*NR */
    o->scratch_per_thread = ((size_t)NB * KC + (size_t)SMELT_NR * KC + (size_t)SMELT_MR * KC + SMELT_MR * SMELT_NR + 15) / 16 * 16;
    o->scratch = aligned_alloc(64, o->scratch_per_thread * sizeof(float) * (size_t)o->n_threads);
    if (!o->scratch) {
        free(o);
        return NULL;
    }
    return o;
}

void smelt_fwd_ops_free(smelt_fwd_ops *o)
{
    if (!o) return;
    free(o->scratch);
    free(o);
}

int smelt_fwd_ops_isa(const smelt_fwd_ops *o) { return o->isa; }
const char *smelt_fwd_ops_isa_name(const smelt_fwd_ops *o) { return o->k->name; }
int smelt_fwd_ops_threads(const smelt_fwd_ops *o) { return o->n_threads; }
smelt_pool *smelt_fwd_ops_pool(const smelt_fwd_ops *o) { return o->pool; }

/* ==== matrix products ==== */

typedef struct {
    const smelt_fwd_ops *o;
    const smelt_mm *jobs;
    size_t n_jobs;
    size_t *first_task; /* n_jobs + 1 prefix sums */
    size_t *n_tb;       /* token blocks per job */
    size_t *tb;         /* tokens per block per job */
} mmplan;

/* Pack weight rows [n0, n0+nn) x columns [k0, k0+kc) of matrix w (expert e) as nn/16
 * panels, decoding through the quant traits table when the type is not f32/f16. */
static void pack_block(const smelt_fwd_kernels *K, const smelt_wview *w, uint32_t e, size_t n0, size_t nn, size_t k0,
                       size_t kc, float *wp, float *rowbuf)
{
    const uint8_t *base = w->data + (uint64_t)e * w->mat_bytes;
    const smelt_type_info *ti = smelt_type_get(w->type);
    size_t seg_off = k0 / ti->blck * ti->bytes;
    const smelt_qtype_ops *q = smelt_q_ops(w->type);
    for (size_t p = 0; p * SMELT_NR < nn; p++) {
        size_t rows = nn - p * SMELT_NR < SMELT_NR ? nn - p * SMELT_NR : SMELT_NR;
        const uint8_t *r0 = base + (n0 + p * SMELT_NR) * w->row_bytes + seg_off;
        float *dst = wp + p * SMELT_NR * kc;
        if (w->type == SMELT_TYPE_F32 && w->row_bytes % 4 == 0) {
            K->pack_f32((const float *)(const void *)r0, w->row_bytes / 4, rows, kc, dst);
        } else if (w->type == SMELT_TYPE_F16 && w->row_bytes % 2 == 0) {
            K->pack_f16((const uint16_t *)(const void *)r0, w->row_bytes / 2, rows, kc, dst);
        } else if (w->type == SMELT_TYPE_BF16 && w->row_bytes % 2 == 0) {
            K->pack_bf16((const uint16_t *)(const void *)r0, w->row_bytes / 2, rows, kc, dst);
        } else {
            for (size_t j = 0; j < rows; j++) q->dequantize(r0 + j * w->row_bytes, rowbuf + j * kc, kc);
            K->pack_f32(rowbuf, kc, rows, kc, dst);
        }
    }
}

static void mm_task(void *ctx, size_t task, int thread)
{
    const mmplan *P = ctx;
    size_t jb = 0, lo = 0, hi = P->n_jobs;
    while (lo < hi) { /* last job whose first task <= task */
        size_t mid = (lo + hi) / 2;
        if (P->first_task[mid] <= task) {
            jb = mid;
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    const smelt_mm *J = &P->jobs[jb];
    const smelt_fwd_ops *o = P->o;
    const smelt_fwd_kernels *K = o->k;
    size_t local = task - P->first_task[jb];
    size_t ib_n = local / P->n_tb[jb], ib_t = local % P->n_tb[jb];
    size_t N = (size_t)J->w->ne[1], Kd = (size_t)J->w->ne[0];
    size_t n0 = ib_n * NB, nn = N - n0 < NB ? N - n0 : NB;
    size_t t0 = ib_t * P->tb[jb], tt = J->n_rows - t0 < P->tb[jb] ? J->n_rows - t0 : P->tb[jb];

    float *S = o->scratch + (size_t)thread * o->scratch_per_thread;
    float *wp = S, *rowbuf = wp + (size_t)NB * KC, *xt = rowbuf + (size_t)SMELT_NR * KC, *ct = xt + (size_t)SMELT_MR * KC;
    size_t n_pan = (nn + SMELT_NR - 1) / SMELT_NR;

    for (size_t k0 = 0; k0 < Kd; k0 += KC) {
        size_t kc = Kd - k0 < KC ? Kd - k0 : KC;
        pack_block(K, J->w, J->expert, n0, nn, k0, kc, wp, rowbuf);
        int acc = J->accumulate || k0 > 0;
        for (size_t t = t0; t < t0 + tt; t += SMELT_MR) {
            size_t m = t0 + tt - t < SMELT_MR ? t0 + tt - t : SMELT_MR;
            const float *xs = J->x + t * J->ldx + k0;
            size_t ldx = J->ldx;
            if (m < SMELT_MR) { /* copy the last rows into a zero-padded tile */
                memset(xt, 0, sizeof(float) * SMELT_MR * kc);
                for (size_t i = 0; i < m; i++) memcpy(xt + i * kc, xs + i * J->ldx, sizeof(float) * kc);
                xs = xt;
                ldx = kc;
            }
            for (size_t p = 0; p < n_pan; p++) {
                size_t cols = nn - p * SMELT_NR < SMELT_NR ? nn - p * SMELT_NR : SMELT_NR;
                float *c = J->c + t * J->ldc + n0 + p * SMELT_NR;
                const float *w = wp + p * SMELT_NR * kc;
                if (m == SMELT_MR && cols == SMELT_NR) {
                    K->gemm(kc, xs, ldx, w, c, J->ldc, acc);
                    continue;
                }
                if (acc)
                    for (size_t i = 0; i < m; i++) memcpy(ct + i * SMELT_NR, c + i * J->ldc, sizeof(float) * cols);
                K->gemm(kc, xs, ldx, w, ct, SMELT_NR, acc);
                for (size_t i = 0; i < m; i++) memcpy(c + i * J->ldc, ct + i * SMELT_NR, sizeof(float) * cols);
            }
        }
    }
}

void smelt_fwd_ops_matmul(smelt_fwd_ops *o, const smelt_mm *jobs, size_t n_jobs)
{
    if (!n_jobs) return;
    size_t stack_a[3 * 64];
    size_t *mem = n_jobs <= 63 ? stack_a : malloc(sizeof(size_t) * 3 * (n_jobs + 1));
    if (!mem) { /* out of memory for the plan: run the jobs one by one */
        for (size_t i = 0; i < n_jobs; i++) smelt_fwd_ops_matmul(o, &jobs[i], 1);
        return;
    }
    mmplan P = {o, jobs, n_jobs, mem, mem + n_jobs + 1, mem + 2 * (n_jobs + 1)};
    /* token block: as large as possible, but enough tasks to keep every thread busy */
    size_t total_nb = 0, max_rows = 0;
    for (size_t i = 0; i < n_jobs; i++) {
        total_nb += ((size_t)jobs[i].w->ne[1] + NB - 1) / NB;
        if (jobs[i].n_rows > max_rows) max_rows = jobs[i].n_rows;
    }
    size_t tb = TB_MAX;
    size_t want = (size_t)o->n_threads * 4;
    while (tb > TB_MIN && total_nb * ((max_rows + tb - 1) / tb) < want) tb /= 2;
    tb = (tb + SMELT_MR - 1) / SMELT_MR * SMELT_MR;
    size_t acc = 0;
    for (size_t i = 0; i < n_jobs; i++) {
        P.first_task[i] = acc;
        size_t nrows = jobs[i].n_rows;
        P.tb[i] = tb;
        P.n_tb[i] = nrows ? (nrows + tb - 1) / tb : 0;
        acc += P.n_tb[i] * (((size_t)jobs[i].w->ne[1] + NB - 1) / NB);
    }
    P.first_task[n_jobs] = acc;
    smelt_pool_run(o->pool, acc, mm_task, &P);
    if (mem != stack_a) free(mem);
}

/* ==== row operations ==== */

void smelt_rmsnorm(const float *x, const float *w, float *y, size_t n, float eps)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)x[i] * (double)x[i];
    const float mean = (float)(ss / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (size_t i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
}

void smelt_fwd_ops_exp_sub(const smelt_fwd_ops *o, const float *x, float sub, float *y, size_t n)
{
    o->k->exp_sub(x, sub, y, n);
}

float smelt_fwd_ops_sum(const smelt_fwd_ops *o, const float *x, size_t n) { return o->k->sum(x, n); }

void smelt_fwd_ops_swiglu(const smelt_fwd_ops *o, float *g, const float *u, size_t n) { o->k->swiglu(g, u, n); }

void smelt_fwd_ops_softmax(const smelt_fwd_ops *o, float *x, size_t n)
{
    if (!n) return;
    float mx = x[0];
    for (size_t i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    o->k->exp_sub(x, mx, x, n);
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += x[i];
    const float inv = (float)(1.0 / s);
    for (size_t i = 0; i < n; i++) x[i] *= inv;
}

double smelt_fwd_ops_sum_exp(const smelt_fwd_ops *o, const float *x, float sub, size_t n, float *scratch)
{
    o->k->exp_sub(x, sub, scratch, n);
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += scratch[i];
        s1 += scratch[i + 1];
        s2 += scratch[i + 2];
        s3 += scratch[i + 3];
    }
    for (; i < n; i++) s0 += scratch[i];
    return (s0 + s1) + (s2 + s3);
}

double smelt_fwd_ops_logsumexp(const smelt_fwd_ops *o, const float *x, size_t n, float *scratch, size_t *imax)
{
    size_t im = 0;
    float mx = x[0];
    for (size_t i = 1; i < n; i++)
        if (x[i] > mx) {
            mx = x[i];
            im = i;
        }
    if (imax) *imax = im;
    return (double)mx + log(smelt_fwd_ops_sum_exp(o, x, mx, n, scratch));
}

/* ==== RoPE ==== */

void smelt_rope_table(float *cs, uint32_t pos, uint32_t n_rot, float base, float freq_scale,
                      const float *freq_factors)
{
    const float theta_scale = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (uint32_t i = 0; i < n_rot / 2; i++) {
        const float ff = freq_factors ? freq_factors[i] : 1.0f;
        const float th = freq_scale * (theta / ff);
        cs[2 * i] = cosf(th);
        cs[2 * i + 1] = sinf(th);
        theta *= theta_scale;
    }
}

void smelt_rope_apply(float *x, const float *cs, uint32_t n_rot)
{
    for (uint32_t i = 0; i < n_rot; i += 2) {
        const float c = cs[i], s = cs[i + 1];
        const float x0 = x[i], x1 = x[i + 1];
        x[i] = x0 * c - x1 * s;
        x[i + 1] = x0 * s + x1 * c;
    }
}

void smelt_rope_apply_neox(float *x, const float *cs, uint32_t n_rot)
{
    const uint32_t h = n_rot / 2;
    for (uint32_t i = 0; i < h; i++) {
        const float c = cs[2 * i], s = cs[2 * i + 1];
        const float x0 = x[i], x1 = x[i + h];
        x[i] = x0 * c - x1 * s;
        x[i + h] = x0 * s + x1 * c;
    }
}

/* ==== attention ==== */

void smelt_fwd_ops_attend(const smelt_fwd_ops *o, const float *q, size_t ldq, size_t n_q, size_t pos0, size_t hd,
                      const float *kt, size_t ldk, const float *v, size_t ldv, size_t hd_v, float scale,
                      float *out, size_t ldo, float *scratch)
{
    const smelt_fwd_kernels *K = o->k;
    const size_t lds = pos0 + n_q;
    for (size_t i0 = 0; i0 < n_q; i0 += 4) {
        size_t m = n_q - i0 < 4 ? n_q - i0 : 4;
        size_t n_keys = pos0 + i0 + m; /* keys visible to the last query of the group */
        K->scores(q + i0 * ldq, ldq, m, hd, kt, ldk, n_keys, scratch, lds);
        for (size_t i = 0; i < m; i++) {
            float *s = scratch + i * lds;
            size_t n = pos0 + i0 + i + 1; /* causal: keys 0..pos */
            float mx = -INFINITY;
            for (size_t j = 0; j < n; j++) {
                s[j] *= scale;
                if (s[j] > mx) mx = s[j];
            }
            K->exp_sub(s, mx, s, n);
            const float sum = K->sum(s, n);
            float *oi = out + (i0 + i) * ldo;
            K->wsum(s, n, v, ldv, hd_v, oi);
            const float inv = 1.0f / sum;
            for (size_t d = 0; d < hd_v; d++) oi[d] *= inv;
        }
    }
}
