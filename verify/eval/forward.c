/* forward.c — the forward pass of the architectures of formats/arch.h, read top to bottom.
 * Includes formats/, quant/qtypes.h, verify/eval/model.h, verify/eval/ops.h, verify/eval/forward.h.
 *
 * The computation is llama.cpp's graph for the "llama" architecture (src/models/llama.cpp,
 * build_moe_ffn in src/llama-graph.cpp), in f32 with f32 accumulation. The qwen
 * architectures differ only where marked: NeoX RoPE (qwen2, qwen3, qwen3moe), q/k biases
 * (optional anywhere), a per-head RMSNorm of q and k before RoPE (qwen3, qwen3moe), and an
 * expert width of its own (qwen3moe: F = n_ff_exp in the MoE FFN). Shapes are written
 * [rows x cols] with T = tokens in the batch, E = n_embd, H = heads, Hkv = key/value
 * heads, D = head_dim, F = n_ff, X = experts, U = experts used per token.
 *
 *   x = token_embd[tokens]                                          [T x E]
 *   for each block l:
 *     h   = rmsnorm(x) * attn_norm                                  [T x E]
 *     q,k,v = h Wq^T, h Wk^T, h Wv^T                                [T x HD], [T x HkvD] x2
 *     qwen3: q,k = rmsnorm(q_h) * q_norm, rmsnorm(k_h) * k_norm   per head h
 *     q,k = rope(q), rope(k)         (pairs (2i, 2i+1), or (i, i + D/2) for NeoX;
 *                                     θ_i = pos · base^(-2i/D) / rope_freqs_i)
 *     a   = softmax(q k^T / sqrt(D) + causal mask) v   per head (GQA: H/Hkv heads share k,v)
 *     x   = x + a Wo^T
 *     h   = rmsnorm(x) * ffn_norm
 *     dense: x = x + (silu(h Wg^T) ⊙ h Wu^T) Wd^T
 *     MoE:   p = softmax(h Wr^T); top-U experts by p; w = p[top] / sum(p[top])
 *            x = x + Σ_u w_u · (silu(h Wg_e^T) ⊙ h Wu_e^T) Wd_e^T,  e = top[u]
 *   logits = (rmsnorm(x) * output_norm) Wout^T                       [T' x n_vocab]
 *
 * where rmsnorm(x) = x / sqrt(mean(x²) + eps). Only rows whose logits are requested go
 * through the last block's FFN and the output head (llama.cpp prunes them the same way). */
#include "forward.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/qtypes.h"

#define QBLOCK 32 /* queries per attention task */

struct smelt_fwd {
    const smelt_model *m;
    smelt_fwd_ops *ops;
    uint32_t n_ctx, n_seq, n_tok_max;
    size_t t_max;                 /* n_seq * n_tok_max */
    size_t qd, kd, vd, od;        /* H*D, Hkv*D, Hkv*Dv, H*Dv */
    size_t ff;                    /* FFN hidden width: n_ff (dense) or n_ff_exp (experts) */
    smelt_fwd_hook hook;
    void *hook_user;
    float *kt;                    /* [layer][seq][kv head][D][n_ctx]   keys, transposed */
    float *vc;                    /* [layer][seq][kv head][n_ctx][Dv]  values */
    float *rope;                  /* [n_ctx][D] cos/sin pairs per position */
    float *x, *h, *q, *k, *v, *att, *tmp, *qkv;
    float *g, *u;                 /* FFN hidden: [T x F] dense, [T*U x F] MoE */
    float *router, *wsel;         /* [T x X], [T x U] */
    int32_t *sel;                 /* [T x U] expert ids */
    uint32_t *slot_row, *row_tok; /* (t,u) -> gathered row, gathered row -> t */
    float *xg, *dg;               /* gathered expert inputs / outputs [T*U x E] */
    float *bias;                  /* decoded bias vector */
    smelt_mm *jobs;               /* 2 x n_expert product descriptions */
    float *scratch;               /* per thread: attention scores 4 x n_ctx */
    uint64_t bytes;
    /* per-call state */
    uint32_t n_tok, pos0;
    int layer;
};

/* ==== helpers: parallel row loops, hook, products ==== */

typedef void (*rowfn)(smelt_fwd *f, size_t r0, size_t r1, int thread, void *arg);

typedef struct {
    smelt_fwd *f;
    rowfn fn;
    void *arg;
    size_t n, per;
} rowjob;

static void row_task(void *ctx, size_t task, int thread)
{
    rowjob *j = ctx;
    size_t r0 = task * j->per, r1 = r0 + j->per < j->n ? r0 + j->per : j->n;
    j->fn(j->f, r0, r1, thread, j->arg);
}

static void par_rows(smelt_fwd *f, size_t n, rowfn fn, void *arg)
{
    if (!n) return;
    size_t nt = (size_t)smelt_fwd_ops_threads(f->ops) * 4;
    size_t per = (n + nt - 1) / nt;
    if (per < 4) per = 4;
    rowjob j = {f, fn, arg, n, per};
    smelt_pool_run(smelt_fwd_ops_pool(f->ops), (n + per - 1) / per, row_task, &j);
}

static void hook(smelt_fwd *f, const smelt_wview *w, int expert, const float *x, size_t n_rows, size_t ldx)
{
    if (!f->hook || !n_rows) return;
    smelt_fwd_mm_info mi = {w->name, f->layer, expert, w->ne[2] > 1 || expert >= 0 ? (int)w->ne[2] : 0,
                            x, n_rows, (size_t)w->ne[0], ldx};
    f->hook(f->hook_user, &mi);
}

static smelt_mm mm(const smelt_wview *w, uint32_t expert, const float *x, size_t ldx, float *c, size_t ldc,
                   size_t n_rows)
{
    smelt_mm j = {w, expert, x, ldx, c, ldc, n_rows, false};
    return j;
}

/* c[r] += b for n rows of width b->ne[0] */
static void add_bias(smelt_fwd *f, const smelt_wview *b, float *c, size_t ldc, size_t n)
{
    if (!b->data) return;
    size_t w = (size_t)b->ne[0];
    smelt_q_dequantize_row(b->type, b->data, f->bias, w);
    for (size_t r = 0; r < n; r++)
        for (size_t i = 0; i < w; i++) c[r * ldc + i] += f->bias[i];
}

/* ==== step 1: embeddings  x = token_embd[tokens] ==== */

static void embed_rows(smelt_fwd *f, size_t r0, size_t r1, int thread, void *arg)
{
    (void)thread;
    const int32_t *tok = arg;
    const smelt_wview *te = &f->m->tok_embd;
    size_t E = f->m->hp.n_embd;
    for (size_t r = r0; r < r1; r++)
        smelt_q_dequantize_row(te->type, te->data + (uint64_t)tok[r] * te->row_bytes, f->x + r * E, E);
}

/* ==== step 2: h = rmsnorm(x) * w ==== */

static void norm_rows(smelt_fwd *f, size_t r0, size_t r1, int thread, void *arg)
{
    (void)thread;
    const float *w = arg;
    size_t E = f->m->hp.n_embd;
    for (size_t r = r0; r < r1; r++) smelt_rmsnorm(f->x + r * E, w, f->h + r * E, E, f->m->hp.rms_eps);
}

/* ==== step 3: q, k, v = h Wq^T, h Wk^T, h Wv^T ==== */

static void qkv_split(smelt_fwd *f, size_t r0, size_t r1, int thread, void *arg)
{
    (void)thread;
    (void)arg;
    size_t w = f->qd + f->kd + f->vd;
    for (size_t r = r0; r < r1; r++) {
        memcpy(f->q + r * f->qd, f->qkv + r * w, f->qd * sizeof(float));
        memcpy(f->k + r * f->kd, f->qkv + r * w + f->qd, f->kd * sizeof(float));
        memcpy(f->v + r * f->vd, f->qkv + r * w + f->qd + f->kd, f->vd * sizeof(float));
    }
}

static void project_qkv(smelt_fwd *f, const smelt_layer *L, size_t T)
{
    size_t E = f->m->hp.n_embd;
    if (L->wqkv.data) {
        size_t w = f->qd + f->kd + f->vd;
        hook(f, &L->wqkv, -1, f->h, T, E);
        smelt_mm j = mm(&L->wqkv, 0, f->h, E, f->qkv, w, T);
        smelt_fwd_ops_matmul(f->ops, &j, 1);
        add_bias(f, &L->bqkv, f->qkv, w, T);
        par_rows(f, T, qkv_split, NULL);
        return;
    }
    hook(f, &L->wq, -1, f->h, T, E);
    hook(f, &L->wk, -1, f->h, T, E);
    hook(f, &L->wv, -1, f->h, T, E);
    smelt_mm j[3] = {mm(&L->wq, 0, f->h, E, f->q, f->qd, T), mm(&L->wk, 0, f->h, E, f->k, f->kd, T),
                     mm(&L->wv, 0, f->h, E, f->v, f->vd, T)};
    smelt_fwd_ops_matmul(f->ops, j, 3);
    add_bias(f, &L->bq, f->q, f->qd, T);
    add_bias(f, &L->bk, f->k, f->kd, T);
    add_bias(f, &L->bv, f->v, f->vd, T);
}

/* ==== step 4: per-head Q/K RMSNorm (qwen3), RoPE on q and k, then k and v into the cache ====
 * llama: normal (non-NeoX) rotation of adjacent pairs, as llama.cpp runs the llama
 * architecture on the GGUF layout (whose Q/K rows the converter permuted from HF's
 * rotate-half order); the qwen architectures: NeoX rotation of (x[i], x[i + n_rot/2]), HF's
 * own order, which the converter keeps:
 *   (x₀, x₁) → (x₀ cos θ − x₁ sin θ,  x₀ sin θ + x₁ cos θ) */

static float *kt_at(const smelt_fwd *f, int layer, size_t seq, size_t kvh)
{
    const smelt_hparams *hp = &f->m->hp;
    return f->kt + (((size_t)layer * f->n_seq + seq) * hp->n_head_kv + kvh) * hp->head_dim * f->n_ctx;
}

static float *v_at(const smelt_fwd *f, int layer, size_t seq, size_t kvh)
{
    const smelt_hparams *hp = &f->m->hp;
    return f->vc + (((size_t)layer * f->n_seq + seq) * hp->n_head_kv + kvh) * hp->head_dim_v * f->n_ctx;
}

static void rope_rows(smelt_fwd *f, size_t r0, size_t r1, int thread, void *arg)
{
    (void)thread;
    (void)arg;
    const smelt_hparams *hp = &f->m->hp;
    size_t D = hp->head_dim, Dv = hp->head_dim_v;
    const smelt_layer *L = &f->m->layers[f->layer];
    const bool neox = hp->arch->rope_neox;
    for (size_t r = r0; r < r1; r++) {
        size_t s = r / f->n_tok, pos = f->pos0 + r % f->n_tok;
        const float *cs = f->rope + pos * D;
        for (size_t hh = 0; hh < hp->n_head; hh++) {
            float *qr = f->q + r * f->qd + hh * D;
            if (L->attn_q_norm) smelt_rmsnorm(qr, L->attn_q_norm, qr, D, hp->rms_eps);
            if (neox) smelt_rope_apply_neox(qr, cs, hp->n_rot);
            else smelt_rope_apply(qr, cs, hp->n_rot);
        }
        for (size_t kh = 0; kh < hp->n_head_kv; kh++) {
            float *kr = f->k + r * f->kd + kh * D;
            if (L->attn_k_norm) smelt_rmsnorm(kr, L->attn_k_norm, kr, D, hp->rms_eps);
            if (neox) smelt_rope_apply_neox(kr, cs, hp->n_rot);
            else smelt_rope_apply(kr, cs, hp->n_rot);
            float *kt = kt_at(f, f->layer, s, kh);
            for (size_t d = 0; d < D; d++) kt[d * f->n_ctx + pos] = kr[d];
            memcpy(v_at(f, f->layer, s, kh) + pos * Dv, f->v + r * f->vd + kh * Dv, Dv * sizeof(float));
        }
    }
}

/* ==== step 5: a = softmax(q kᵀ · 1/sqrt(D) + mask) v, one task per (sequence, head, 32 queries) ==== */

static void attn_task(void *ctx, size_t task, int thread)
{
    smelt_fwd *f = ctx;
    const smelt_hparams *hp = &f->m->hp;
    size_t nqb = (f->n_tok + QBLOCK - 1) / QBLOCK;
    size_t qb = task % nqb, hh = (task / nqb) % hp->n_head, s = task / nqb / hp->n_head;
    size_t kh = hh / (hp->n_head / hp->n_head_kv);
    size_t i0 = qb * QBLOCK, nq = f->n_tok - i0 < QBLOCK ? f->n_tok - i0 : QBLOCK;
    size_t r0 = s * f->n_tok + i0;
    smelt_fwd_ops_attend(f->ops, f->q + r0 * f->qd + hh * hp->head_dim, f->qd, nq, f->pos0 + i0, hp->head_dim,
                     kt_at(f, f->layer, s, kh), f->n_ctx, v_at(f, f->layer, s, kh), hp->head_dim_v,
                     hp->head_dim_v, hp->attn_scale, f->att + r0 * f->od + hh * hp->head_dim_v, f->od,
                     f->scratch + (size_t)thread * 4 * f->n_ctx);
}

/* ==== step 6: x = x + a Wo^T  (residual adds are row loops) ==== */

static void add_rows(smelt_fwd *f, size_t r0, size_t r1, int thread, void *arg)
{
    (void)thread;
    const float *src = arg;
    size_t E = f->m->hp.n_embd;
    for (size_t i = r0 * E; i < r1 * E; i++) f->x[i] = src[i] + f->x[i];
}

/* ==== step 7a: dense FFN  x = x + (silu(h Wg^T) ⊙ h Wu^T) Wd^T ==== */

static void swiglu_rows(smelt_fwd *f, size_t r0, size_t r1, int thread, void *arg)
{
    (void)thread;
    (void)arg;
    size_t F = f->ff;
    smelt_fwd_ops_swiglu(f->ops, f->g + r0 * F, f->u + r0 * F, (r1 - r0) * F);
}

static void ffn_dense(smelt_fwd *f, const smelt_layer *L, size_t T)
{
    size_t E = f->m->hp.n_embd, F = f->m->hp.n_ff;
    hook(f, &L->ffn_up, -1, f->h, T, E);
    hook(f, &L->ffn_gate, -1, f->h, T, E);
    smelt_mm j[2] = {mm(&L->ffn_up, 0, f->h, E, f->u, F, T), mm(&L->ffn_gate, 0, f->h, E, f->g, F, T)};
    smelt_fwd_ops_matmul(f->ops, j, 2);
    add_bias(f, &L->ffn_up_b, f->u, F, T);
    add_bias(f, &L->ffn_gate_b, f->g, F, T);
    par_rows(f, T, swiglu_rows, NULL);
    hook(f, &L->ffn_down, -1, f->g, T, F);
    smelt_mm d = mm(&L->ffn_down, 0, f->g, F, f->tmp, E, T);
    smelt_fwd_ops_matmul(f->ops, &d, 1);
    add_bias(f, &L->ffn_down_b, f->tmp, E, T);
    par_rows(f, T, add_rows, f->tmp);
}

/* ==== step 7b: MoE FFN ====
 *   p = softmax(h Wr^T)                      router probabilities          [T x X]
 *   top = the U largest p (ties: lower id)   w = p[top] / max(Σ p[top], 2^-14)
 *   y_u = (silu(h Wg_e^T) ⊙ h Wu_e^T) Wd_e^T  for e = top[u], each expert over its tokens
 *   x = x + ((w_0 y_0 + w_1 y_1) + …) */

static void route_rows(smelt_fwd *f, size_t r0, size_t r1, int thread, void *arg)
{
    (void)thread;
    (void)arg;
    const smelt_hparams *hp = &f->m->hp;
    size_t X = hp->n_expert, U = hp->n_expert_used;
    for (size_t t = r0; t < r1; t++) {
        float *p = f->router + t * X;
        smelt_fwd_ops_softmax(f->ops, p, X);
        int32_t *sel = f->sel + t * U;
        float *w = f->wsel + t * U;
        for (size_t u = 0; u < U; u++) { /* selection: largest remaining, lowest id on ties */
            int32_t best = -1;
            for (size_t e = 0; e < X; e++) {
                bool taken = false;
                for (size_t v = 0; v < u; v++) taken = taken || sel[v] == (int32_t)e;
                if (!taken && (best < 0 || p[e] > p[best])) best = (int32_t)e;
            }
            sel[u] = best;
            w[u] = p[best];
        }
        float sum = 0.0f;
        for (size_t u = 0; u < U; u++) sum += w[u];
        if (sum < 6.103515625e-5f) sum = 6.103515625e-5f;
        for (size_t u = 0; u < U; u++) w[u] = w[u] / sum;
        if (hp->expert_weights_scale != 0.0f && hp->expert_weights_scale != 1.0f)
            for (size_t u = 0; u < U; u++) w[u] *= hp->expert_weights_scale;
    }
}

static void gather_rows(smelt_fwd *f, size_t r0, size_t r1, int thread, void *arg)
{
    (void)thread;
    (void)arg;
    size_t E = f->m->hp.n_embd;
    for (size_t r = r0; r < r1; r++) memcpy(f->xg + r * E, f->h + (size_t)f->row_tok[r] * E, E * sizeof(float));
}

static void combine_rows(smelt_fwd *f, size_t r0, size_t r1, int thread, void *arg)
{
    (void)thread;
    (void)arg;
    size_t E = f->m->hp.n_embd, U = f->m->hp.n_expert_used;
    for (size_t t = r0; t < r1; t++) {
        float *o = f->tmp + t * E;
        for (size_t u = 0; u < U; u++) {
            const float w = f->wsel[t * U + u];
            const float *y = f->dg + (size_t)f->slot_row[t * U + u] * E;
            if (u == 0)
                for (size_t i = 0; i < E; i++) o[i] = y[i] * w;
            else
                for (size_t i = 0; i < E; i++) o[i] = o[i] + y[i] * w;
        }
        float *x = f->x + t * E;
        for (size_t i = 0; i < E; i++) x[i] = o[i] + x[i];
    }
}

static void ffn_moe(smelt_fwd *f, const smelt_layer *L, size_t T)
{
    const smelt_hparams *hp = &f->m->hp;
    size_t E = hp->n_embd, F = f->ff, X = hp->n_expert, U = hp->n_expert_used;
    hook(f, &L->ffn_gate_inp, -1, f->h, T, E);
    smelt_mm r = mm(&L->ffn_gate_inp, 0, f->h, E, f->router, X, T);
    smelt_fwd_ops_matmul(f->ops, &r, 1);
    par_rows(f, T, route_rows, NULL);

    /* group the (token, slot) pairs by expert, in token order */
    size_t cnt[SMELT_MAX_EXPERTS] = {0}, off[SMELT_MAX_EXPERTS + 1], fill[SMELT_MAX_EXPERTS] = {0};
    for (size_t i = 0; i < T * U; i++) cnt[f->sel[i]]++;
    off[0] = 0;
    for (size_t e = 0; e < X; e++) off[e + 1] = off[e] + cnt[e];
    for (size_t t = 0; t < T; t++)
        for (size_t u = 0; u < U; u++) {
            size_t e = (size_t)f->sel[t * U + u], row = off[e] + fill[e]++;
            f->slot_row[t * U + u] = (uint32_t)row;
            f->row_tok[row] = (uint32_t)t;
        }
    par_rows(f, T * U, gather_rows, NULL);

    smelt_mm *jobs = f->jobs;
    size_t nj = 0;
    for (size_t e = 0; e < X; e++) hook(f, &L->ffn_up_exps, (int)e, f->xg + off[e] * E, cnt[e], E);
    for (size_t e = 0; e < X; e++) hook(f, &L->ffn_gate_exps, (int)e, f->xg + off[e] * E, cnt[e], E);
    for (size_t e = 0; e < X; e++) {
        if (!cnt[e]) continue;
        jobs[nj++] = mm(&L->ffn_up_exps, (uint32_t)e, f->xg + off[e] * E, E, f->u + off[e] * F, F, cnt[e]);
        jobs[nj++] = mm(&L->ffn_gate_exps, (uint32_t)e, f->xg + off[e] * E, E, f->g + off[e] * F, F, cnt[e]);
    }
    smelt_fwd_ops_matmul(f->ops, jobs, nj);
    par_rows(f, T * U, swiglu_rows, NULL);
    nj = 0;
    for (size_t e = 0; e < X; e++) hook(f, &L->ffn_down_exps, (int)e, f->g + off[e] * F, cnt[e], F);
    for (size_t e = 0; e < X; e++)
        if (cnt[e]) jobs[nj++] = mm(&L->ffn_down_exps, (uint32_t)e, f->g + off[e] * F, F, f->dg + off[e] * E, E, cnt[e]);
    smelt_fwd_ops_matmul(f->ops, jobs, nj);
    par_rows(f, T, combine_rows, NULL);
}

/* ==== the whole pass ==== */

/* Keep only rows whose position >= from (in place, order kept); returns the count. */
static size_t prune_rows(smelt_fwd *f, size_t T, uint32_t from)
{
    size_t E = f->m->hp.n_embd, n = 0;
    for (size_t r = 0; r < T; r++) {
        if (f->pos0 + r % f->n_tok < from) continue;
        if (n != r) {
            memcpy(f->x + n * E, f->x + r * E, E * sizeof(float));
            memcpy(f->tmp + n * E, f->tmp + r * E, E * sizeof(float));
        }
        n++;
    }
    return n;
}

int smelt_fwd_eval(smelt_fwd *f, const int32_t *tokens, uint32_t n_seq, uint32_t n_tok, uint32_t pos0,
                   uint32_t logits_from, float *logits, smelt_err *e)
{
    const smelt_model *m = f->m;
    const smelt_hparams *hp = &m->hp;
    if (n_seq == 0 || n_tok == 0 || n_seq > f->n_seq || n_tok > f->n_tok_max || (uint64_t)pos0 + n_tok > f->n_ctx)
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL,
                         "batch of %u x %u tokens at position %u does not fit the forward pass "
                         "(%u sequences, %u tokens per call, context %u)",
                         n_seq, n_tok, pos0, f->n_seq, f->n_tok_max, f->n_ctx);
    size_t T = (size_t)n_seq * n_tok;
    for (size_t r = 0; r < T; r++)
        if (tokens[r] < 0 || (uint32_t)tokens[r] >= hp->n_vocab)
            return SMELT_ERR(e, SMELT_EMISMATCH, NULL, NULL,
                             "token id %" PRId32 " (sequence %zu, position %zu) is outside the vocabulary of "
                             "%u tokens",
                             tokens[r], r / n_tok, pos0 + r % n_tok, (uint32_t)hp->n_vocab);
    f->n_tok = n_tok;
    f->pos0 = pos0;
    size_t E = hp->n_embd;

    par_rows(f, T, embed_rows, (void *)tokens);
    for (uint32_t il = 0; il < hp->n_layer; il++) {
        const smelt_layer *L = &m->layers[il];
        f->layer = (int)il;
        par_rows(f, T, norm_rows, (void *)L->attn_norm);
        project_qkv(f, L, T);
        par_rows(f, T, rope_rows, NULL);
        smelt_pool_run(smelt_fwd_ops_pool(f->ops), (size_t)n_seq * hp->n_head * ((n_tok + QBLOCK - 1) / QBLOCK),
                       attn_task, f);
        hook(f, &L->wo, -1, f->att, T, f->od);
        smelt_mm o = mm(&L->wo, 0, f->att, f->od, f->tmp, E, T);
        smelt_fwd_ops_matmul(f->ops, &o, 1);
        add_bias(f, &L->bo, f->tmp, E, T);
        if (il + 1 == hp->n_layer && logits_from > pos0) {
            T = prune_rows(f, T, logits_from);
            if (!T) return 0;
        }
        par_rows(f, T, add_rows, f->tmp);
        par_rows(f, T, norm_rows, (void *)L->ffn_norm);
        if (hp->n_expert) ffn_moe(f, L, T);
        else ffn_dense(f, L, T);
    }
    f->layer = -1;
    par_rows(f, T, norm_rows, (void *)m->output_norm);
    hook(f, &m->output, -1, f->h, T, E);
    smelt_mm out = mm(&m->output, 0, f->h, E, logits, hp->n_vocab, T);
    smelt_fwd_ops_matmul(f->ops, &out, 1);
    return 0;
}

/* ==== construction ==== */

static void *grab(smelt_fwd *f, size_t n_floats, bool *ok)
{
    if (!n_floats) n_floats = 1;
    void *p = aligned_alloc(64, (n_floats * sizeof(float) + 63) / 64 * 64);
    if (!p) *ok = false;
    f->bytes += n_floats * sizeof(float);
    return p;
}

int smelt_fwd_new(const smelt_model *m, smelt_fwd_ops *ops, uint32_t n_ctx, uint32_t n_seq, uint32_t n_tok_max,
                  smelt_fwd **out, smelt_err *e)
{
    *out = NULL;
    const smelt_hparams *hp = &m->hp;
    char key[128];
    if (!n_ctx || !n_seq || !n_tok_max || n_tok_max > n_ctx)
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "invalid forward-pass sizes: n_ctx %u, %u sequences, %u tokens per call",
                         n_ctx, n_seq, n_tok_max);
    if (n_ctx > hp->n_ctx_train)
        return SMELT_ERR(e, SMELT_EUSAGE, smelt_gguf_path(m->gguf), smelt_arch_key(hp->arch, "context_length", key, sizeof key),
                         "context of %u tokens exceeds the model's training context of %u", n_ctx, hp->n_ctx_train);
    smelt_fwd *f = calloc(1, sizeof *f);
    if (!f) return SMELT_NOMEM(e, "the forward pass");
    f->m = m;
    f->ops = ops;
    f->n_ctx = n_ctx;
    f->n_seq = n_seq;
    f->n_tok_max = n_tok_max;
    size_t T = f->t_max = (size_t)n_seq * n_tok_max;
    f->qd = (size_t)hp->n_head * hp->head_dim;
    f->kd = (size_t)hp->n_head_kv * hp->head_dim;
    f->vd = (size_t)hp->n_head_kv * hp->head_dim_v;
    f->od = (size_t)hp->n_head * hp->head_dim_v;
    f->ff = hp->n_expert ? hp->n_ff_exp : hp->n_ff;
    size_t E = hp->n_embd, F = f->ff, U = hp->n_expert ? hp->n_expert_used : 1;
    size_t cache = (size_t)hp->n_layer * n_seq * n_ctx;
    bool ok = true;
    f->kt = grab(f, cache * f->kd, &ok);
    f->vc = grab(f, cache * f->vd, &ok);
    f->rope = grab(f, (size_t)n_ctx * hp->head_dim, &ok);
    f->x = grab(f, T * E, &ok);
    f->h = grab(f, T * E, &ok);
    f->q = grab(f, T * f->qd, &ok);
    f->k = grab(f, T * f->kd, &ok);
    f->v = grab(f, T * f->vd, &ok);
    f->att = grab(f, T * f->od, &ok);
    f->tmp = grab(f, T * E, &ok);
    bool fused = false;
    for (uint32_t i = 0; i < hp->n_layer; i++) fused = fused || m->layers[i].wqkv.data;
    f->qkv = fused ? grab(f, T * (f->qd + f->kd + f->vd), &ok) : NULL;
    f->g = grab(f, T * U * F, &ok);
    f->u = grab(f, T * U * F, &ok);
    size_t bias_n = f->qd + f->kd + f->vd;
    if (F > bias_n) bias_n = F;
    if (E > bias_n) bias_n = E;
    f->bias = grab(f, bias_n, &ok);
    f->scratch = grab(f, (size_t)smelt_fwd_ops_threads(ops) * 4 * n_ctx, &ok);
    if (hp->n_expert) {
        f->router = grab(f, T * hp->n_expert, &ok);
        f->wsel = grab(f, T * U, &ok);
        f->sel = grab(f, T * U, &ok);
        f->slot_row = grab(f, T * U, &ok);
        f->row_tok = grab(f, T * U, &ok);
        f->xg = grab(f, T * U * E, &ok);
        f->dg = grab(f, T * U * E, &ok);
        f->jobs = calloc(2 * (size_t)hp->n_expert, sizeof *f->jobs);
        ok = ok && f->jobs;
    }
    if (!ok) {
        uint64_t need = f->bytes;
        smelt_fwd_free(f);
        return SMELT_ERR(e, SMELT_ENOMEM, NULL, NULL,
                         "out of memory: the forward pass needs %.1f MiB for %u x %u tokens (KV cache + scratch)",
                         (double)need / 1048576.0, n_seq, n_ctx);
    }
    for (uint32_t p = 0; p < n_ctx; p++)
        smelt_rope_table(f->rope + (size_t)p * hp->head_dim, p, hp->n_rot, hp->rope_base, hp->rope_freq_scale,
                         m->rope_freqs);
    *out = f;
    return 0;
}

void smelt_fwd_free(smelt_fwd *f)
{
    if (!f) return;
    void *ps[] = {f->kt, f->vc, f->rope, f->x, f->h, f->q, f->k, f->v, f->att, f->tmp, f->qkv, f->g, f->u,
                  f->bias, f->scratch, f->router, f->wsel, f->sel, f->slot_row, f->row_tok, f->xg, f->dg};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) free(ps[i]);
    free(f->jobs);
    free(f);
}

void smelt_fwd_set_hook(smelt_fwd *f, smelt_fwd_hook fn, void *user)
{
    f->hook = fn;
    f->hook_user = user;
}

uint64_t smelt_fwd_memory(const smelt_fwd *f) { return f->bytes; }
