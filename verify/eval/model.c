/* model.c — hyperparameters and weight views from a GGUF, validated.
 * Includes formats/ and quant/qtypes.h. Key and tensor names are llama.cpp's (facts of the
 * GGUF format: gguf-py/gguf/constants.py). */
#include "model.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/model_check.h"
#include "quant/qtypes.h"

typedef struct {
    smelt_model *m;
    const smelt_gguf *g;
    const char *path;
    bool *used;          /* per tensor index: consumed by the architecture */
    smelt_err *e;
    size_t norm_fill, norm_cap;
} loader;

/* ==== metadata ==== */

static int key_f32(loader *L, const char *suffix, bool required, float def, float *out)
{
    char key[128];
    smelt_arch_key(L->m->hp.arch, suffix, key, sizeof key);
    if (!smelt_gguf_get_kv(L->g, key)) {
        if (required) return SMELT_ERR(L->e, SMELT_EFORMAT, L->path, key, "required key is missing");
        *out = def;
        return 0;
    }
    return smelt_gguf_get_f32(L->g, key, out, L->e);
}

/* The hyperparameters, validated by the check every tool shares (formats/model_check.h),
 * then the limits of smelt's forward pass. */
static int read_hparams(loader *L)
{
    smelt_hparams *hp = &L->m->hp;
    smelt_mc_hparams mc;
    int rc = smelt_mc_check_gguf(L->g, 0, &mc, L->e);
    if (rc) return rc;
    *hp = mc;
    char key[128];
    if (mc.n_vocab > INT32_MAX)
        return SMELT_ERR(L->e, SMELT_EUNSUPPORTED, L->path, "token_embd.weight",
                         "a vocabulary of %" PRIu64 " tokens is more than smelt's forward pass handles (2^31 - 1)", mc.n_vocab);
    if (hp->head_dim > 1024)
        return SMELT_ERR(L->e, SMELT_EUNSUPPORTED, L->path, smelt_arch_key(hp->arch, "attention.key_length", key, sizeof key),
                         "head size %u is more than smelt's forward pass handles (1024)", hp->head_dim);
    if (hp->n_expert > SMELT_MAX_EXPERTS)
        return SMELT_ERR(L->e, SMELT_EUNSUPPORTED, L->path, smelt_arch_key(hp->arch, "expert_count", key, sizeof key),
                         "%u experts are more than smelt's forward pass handles (%d)", hp->n_expert, SMELT_MAX_EXPERTS);
    if ((rc = key_f32(L, "expert_weights_scale", false, 0.0f, &hp->expert_weights_scale))) return rc;
    /* rope scaling: only none and linear are plain llama */
    hp->rope_freq_scale = 1.0f;
    float factor = 0.0f;
    smelt_arch_key(hp->arch, "rope.scaling.type", key, sizeof key);
    const smelt_gguf_kv *kv = smelt_gguf_get_kv(L->g, key);
    bool linear = false;
    if (kv) {
        smelt_str t;
        if ((rc = smelt_gguf_get_str(L->g, key, &t, L->e))) return rc;
        if (t.n == 6 && !memcmp(t.p, "linear", 6)) linear = true;
        else if (!(t.n == 4 && !memcmp(t.p, "none", 4)))
            return SMELT_ERR(L->e, SMELT_EUNSUPPORTED, L->path, key,
                             "rope scaling '%.*s' is not supported (only none and linear)",
                             (int)(t.n > 32 ? 32 : t.n), t.p);
    }
    if (linear && (rc = key_f32(L, "rope.scaling.factor", false, 0.0f, &factor))) return rc;
    if (!kv && (rc = key_f32(L, "rope.scale_linear", false, 0.0f, &factor))) return rc;
    if (factor != 0.0f) hp->rope_freq_scale = 1.0f / factor;
    if (!isfinite(hp->rope_freq_scale))
        return SMELT_ERR(L->e, SMELT_EUNSUPPORTED, L->path,
                         smelt_arch_key(hp->arch, linear ? "rope.scaling.factor" : "rope.scale_linear", key, sizeof key),
                         "a rope scaling factor of %g is too small for the forward pass (the frequency scale 1/%g is "
                         "not finite)",
                         (double)factor, (double)factor);
    hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);
    return 0;
}

/* ==== tensors ==== */

static const smelt_gguf_tensor *find(loader *L, const char *name)
{
    const smelt_gguf_tensor *t = smelt_gguf_find_tensor(L->g, name);
    if (!t) return NULL;
    const smelt_gguf_tensor *t0 = smelt_gguf_tensor_at(L->g, 0);
    size_t idx = (size_t)(t - t0);
    if (idx < smelt_gguf_n_tensors(L->g)) L->used[idx] = true;
    return t;
}

static void fmt_shape(char *buf, size_t n, const uint64_t *ne, int nd)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < nd && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%" PRIu64, i ? ", " : "", ne[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

/* Bind `name` (printf-style with the layer index) to *v, checking shape and type.
 * Absent: error if required, else *v stays zeroed. `what` explains the expected shape. */
static int bind(loader *L, smelt_wview *v, bool required, int nd, uint64_t ne0, uint64_t ne1,
                uint64_t ne2, const char *what, const char *fmt, int il)
{
    char name[SMELT_GGUF_MAX_NAME + 16];
    snprintf(name, sizeof name, fmt, il);
    memset(v, 0, sizeof *v);
    const smelt_gguf_tensor *t = find(L, name);
    if (!t) {
        if (!required) return 0;
        return SMELT_ERR(L->e, SMELT_EFORMAT, L->path, name,
                         "required tensor is missing (smelt's forward pass needs it: %s)", what);
    }
    uint64_t want[4] = {ne0, ne1, ne2, 1};
    bool ok = t->ne[3] == 1;
    for (int i = 0; i < 3; i++) ok = ok && t->ne[i] == (i < nd ? want[i] : 1);
    if (!ok) {
        char got[96], exp[96];
        fmt_shape(got, sizeof got, t->ne, (int)(t->n_dims ? t->n_dims : 1));
        fmt_shape(exp, sizeof exp, want, nd);
        return SMELT_ERR(L->e, SMELT_EMISMATCH, L->path, name,
                         "shape %s does not match the hyperparameters: expected %s (%s)", got, exp, what);
    }
    if (!smelt_q_can_dequantize(t->type))
        return SMELT_ERR(L->e, SMELT_EUNSUPPORTED, L->path, name,
                         "tensor type %s is not supported: this build of smelt has no %s decoder",
                         smelt_type_name(t->type), smelt_type_name(t->type));
    if (!t->data)
        return SMELT_ERR(L->e, SMELT_EFORMAT, L->path, name, "tensor has no data (metadata-only file)");
    v->name = t->name;
    v->type = t->type;
    v->ne[0] = t->ne[0];
    v->ne[1] = t->ne[1];
    v->ne[2] = t->ne[2];
    v->data = t->data;
    v->row_bytes = smelt_gguf_tensor_row_bytes(t);
    v->mat_bytes = v->row_bytes * t->ne[1];
    return 0;
}

/* A 1-D vector decoded to f32 into the model's norm storage. */
static int bind_vec(loader *L, const float **out, bool required, uint64_t n, const char *what,
                    const char *fmt, int il)
{
    smelt_wview v;
    int rc = bind(L, &v, required, 1, n, 1, 1, what, fmt, il);
    if (rc) return rc;
    *out = NULL;
    if (!v.data) return 0;
    if (L->norm_fill + n > L->norm_cap)
        return SMELT_ERR(L->e, SMELT_EINTERNAL, L->path, v.name, "norm storage exhausted");
    float *dst = L->m->norm_store + L->norm_fill;
    smelt_q_dequantize_row(v.type, v.data, dst, (size_t)n);
    L->norm_fill += n;
    *out = dst;
    return 0;
}

static int bind_layer(loader *L, int il)
{
    const smelt_hparams *hp = &L->m->hp;
    smelt_layer *ly = &L->m->layers[il];
    uint64_t E = hp->n_embd, q = (uint64_t)hp->n_head * hp->head_dim, kv = (uint64_t)hp->n_head_kv * hp->head_dim,
             vv = (uint64_t)hp->n_head_kv * hp->head_dim_v, o = (uint64_t)hp->n_head * hp->head_dim_v;
    int rc;
    if ((rc = bind_vec(L, &ly->attn_norm, true, E, "n_embd", "blk.%d.attn_norm.weight", il)) ||
        (rc = bind_vec(L, &ly->ffn_norm, true, E, "n_embd", "blk.%d.ffn_norm.weight", il)))
        return rc;
    if ((rc = bind(L, &ly->wqkv, false, 2, E, q + kv + vv, 1, "n_embd, q + k + v rows", "blk.%d.attn_qkv.weight", il)))
        return rc;
    if (ly->wqkv.data) {
        if ((rc = bind(L, &ly->bqkv, false, 1, q + kv + vv, 1, 1, "q + k + v rows", "blk.%d.attn_qkv.bias", il)))
            return rc;
    } else if ((rc = bind(L, &ly->wq, true, 2, E, q, 1, "n_embd, n_head x head_dim", "blk.%d.attn_q.weight", il)) ||
               (rc = bind(L, &ly->wk, true, 2, E, kv, 1, "n_embd, n_head_kv x head_dim", "blk.%d.attn_k.weight", il)) ||
               (rc = bind(L, &ly->wv, true, 2, E, vv, 1, "n_embd, n_head_kv x head_dim_v", "blk.%d.attn_v.weight", il)) ||
               (rc = bind(L, &ly->bq, false, 1, q, 1, 1, "n_head x head_dim", "blk.%d.attn_q.bias", il)) ||
               (rc = bind(L, &ly->bk, false, 1, kv, 1, 1, "n_head_kv x head_dim", "blk.%d.attn_k.bias", il)) ||
               (rc = bind(L, &ly->bv, false, 1, vv, 1, 1, "n_head_kv x head_dim_v", "blk.%d.attn_v.bias", il))) {
        return rc;
    }
    bool qk_norm = hp->arch->weight[SMELT_TK_ATTN_Q_NORM] != SMELT_TP_NO;
    if (qk_norm && ((rc = bind_vec(L, &ly->attn_q_norm, true, hp->head_dim, "head_dim", "blk.%d.attn_q_norm.weight", il)) ||
                    (rc = bind_vec(L, &ly->attn_k_norm, true, hp->head_dim, "head_dim", "blk.%d.attn_k_norm.weight", il))))
        return rc;
    if ((rc = bind(L, &ly->wo, true, 2, o, E, 1, "n_head x head_dim_v, n_embd", "blk.%d.attn_output.weight", il)) ||
        (rc = bind(L, &ly->bo, false, 1, E, 1, 1, "n_embd", "blk.%d.attn_output.bias", il)))
        return rc;
    uint64_t F = hp->n_ff, X = hp->n_expert, FX = hp->n_ff_exp;
    if (X == 0) {
        if ((rc = bind(L, &ly->ffn_gate, true, 2, E, F, 1, "n_embd, n_ff", "blk.%d.ffn_gate.weight", il)) ||
            (rc = bind(L, &ly->ffn_up, true, 2, E, F, 1, "n_embd, n_ff", "blk.%d.ffn_up.weight", il)) ||
            (rc = bind(L, &ly->ffn_down, true, 2, F, E, 1, "n_ff, n_embd", "blk.%d.ffn_down.weight", il)) ||
            (rc = bind(L, &ly->ffn_gate_b, false, 1, F, 1, 1, "n_ff", "blk.%d.ffn_gate.bias", il)) ||
            (rc = bind(L, &ly->ffn_up_b, false, 1, F, 1, 1, "n_ff", "blk.%d.ffn_up.bias", il)) ||
            (rc = bind(L, &ly->ffn_down_b, false, 1, E, 1, 1, "n_embd", "blk.%d.ffn_down.bias", il)))
            return rc;
    } else {
        if ((rc = bind(L, &ly->ffn_gate_inp, true, 2, E, X, 1, "n_embd, n_expert", "blk.%d.ffn_gate_inp.weight", il)) ||
            (rc = bind(L, &ly->ffn_gate_exps, true, 3, E, FX, X, "n_embd, n_ff_exp, n_expert", "blk.%d.ffn_gate_exps.weight", il)) ||
            (rc = bind(L, &ly->ffn_up_exps, true, 3, E, FX, X, "n_embd, n_ff_exp, n_expert", "blk.%d.ffn_up_exps.weight", il)) ||
            (rc = bind(L, &ly->ffn_down_exps, true, 3, FX, E, X, "n_ff_exp, n_embd, n_expert", "blk.%d.ffn_down_exps.weight", il)))
            return rc;
    }
    return 0;
}

int smelt_model_from_gguf(smelt_gguf *g, smelt_model **out, smelt_err *e)
{
    *out = NULL;
    smelt_model *m = calloc(1, sizeof *m);
    uint64_t nt = smelt_gguf_n_tensors(g);
    loader L = {m, g, smelt_gguf_path(g), calloc(nt ? nt : 1, sizeof(bool)), e, 0, 0};
    int rc = 0;
    if (!m || !L.used) {
        rc = SMELT_NOMEM(e, "the model description");
        goto fail;
    }
    if ((rc = read_hparams(&L))) goto fail;
    const smelt_hparams *hp0 = &m->hp;
    m->layers = calloc(hp0->n_layer, sizeof *m->layers);
    L.norm_cap = ((size_t)hp0->n_layer * 2 + 1) * hp0->n_embd + ((size_t)hp0->n_layer * 2 + 1) * hp0->head_dim;
    m->norm_store = malloc(L.norm_cap * sizeof(float));
    if (!m->layers || !m->norm_store) {
        rc = SMELT_NOMEM(e, "the layer table");
        goto fail;
    }
    const smelt_hparams *hp = &m->hp;
    if ((rc = bind(&L, &m->tok_embd, true, 2, hp->n_embd, hp->n_vocab, 1, "n_embd, n_vocab", "token_embd.weight", 0)) ||
        (rc = bind_vec(&L, &m->output_norm, true, hp->n_embd, "n_embd", "output_norm.weight", 0)) ||
        (rc = bind(&L, &m->output, false, 2, hp->n_embd, hp->n_vocab, 1, "n_embd, n_vocab", "output.weight", 0)) ||
        (hp->arch->weight[SMELT_TK_ROPE_FREQS] &&
         (rc = bind_vec(&L, &m->rope_freqs, false, hp->n_rot / 2, "n_rot / 2", "rope_freqs.weight", 0))))
        goto fail;
    if (!m->output.data) {
        m->output = m->tok_embd;
        m->tied_output = true;
    }
    for (uint32_t il = 0; il < hp->n_layer; il++)
        if ((rc = bind_layer(&L, (int)il))) goto fail;
    for (uint64_t i = 0; i < nt; i++) {
        if (L.used[i]) continue;
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
        rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, L.path, t->name,
                       "tensor is not part of the %s architecture as smelt runs it (%s); "
                       "refusing to ignore it",
                       hp->arch->name, hp->n_expert ? "MoE with ffn_{gate,up,down}_exps" : "dense FFN");
        goto fail;
    }
    free(L.used);
    m->gguf = g;
    *out = m;
    return 0;
fail:
    free(L.used);
    if (m) {
        free(m->layers);
        free(m->norm_store);
        free(m);
    }
    return rc;
}

int smelt_model_open(const char *path, smelt_model **out, smelt_err *e)
{
    *out = NULL;
    smelt_gguf *g;
    int rc = smelt_gguf_open(path, 0, &g, e);
    if (rc) return rc;
    rc = smelt_model_from_gguf(g, out, e);
    if (rc) smelt_gguf_close(g);
    return rc;
}

void smelt_model_close(smelt_model *m)
{
    if (!m) return;
    smelt_gguf_close(m->gguf);
    free(m->layers);
    free(m->norm_store);
    free(m);
}

static void each_matrix(const smelt_model *m, void (*fn)(void *, const smelt_wview *), void *u)
{
    fn(u, &m->tok_embd);
    if (!m->tied_output) fn(u, &m->output);
    for (uint32_t i = 0; i < m->hp.n_layer; i++) {
        const smelt_layer *l = &m->layers[i];
        const smelt_wview *vs[] = {&l->wq, &l->wk, &l->wv, &l->wqkv, &l->wo, &l->ffn_gate, &l->ffn_up,
                                   &l->ffn_down, &l->ffn_gate_inp, &l->ffn_gate_exps, &l->ffn_up_exps,
                                   &l->ffn_down_exps};
        for (size_t k = 0; k < sizeof vs / sizeof vs[0]; k++)
            if (vs[k]->data) fn(u, vs[k]);
    }
}

static void add_bytes(void *u, const smelt_wview *v) { *(uint64_t *)u += v->mat_bytes * v->ne[2]; }

uint64_t smelt_model_weight_bytes(const smelt_model *m)
{
    uint64_t b = 0;
    each_matrix(m, add_bytes, &b);
    return b;
}

typedef struct {
    int types[8];
    int n;
} tset;

static void add_type(void *u, const smelt_wview *v)
{
    tset *s = u;
    if (v->ne[1] <= 16 && v->type == SMELT_TYPE_F32) return; /* routers stay f32 */
    for (int i = 0; i < s->n; i++)
        if (s->types[i] == v->type) return;
    if (s->n < 8) s->types[s->n++] = v->type;
}

void smelt_model_type_summary(const smelt_model *m, char *buf, size_t n)
{
    tset s = {{0}, 0};
    each_matrix(m, add_type, &s);
    size_t o = 0;
    buf[0] = 0;
    for (int i = 0; i < s.n && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? "+" : "", smelt_type_name(s.types[i]));
}
