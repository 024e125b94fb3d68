/* model_check.c — see model_check.h. Includes gguf.h only. Key and tensor names and the
 * rules are llama.cpp's (facts of the GGUF format and of its loader: llama-model.cpp,
 * llama-model-loader.cpp, llama-vocab.cpp, models/llama.cpp): keys are read with the
 * exact GGUF types that loader accepts, and a tensor must have exactly the shape it asks
 * for. */
#include "model_check.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 512   /* LLAMA_MAX_LAYERS */
#define MAX_EXPERTS 1024 /* LLAMA_MAX_EXPERTS */

typedef struct {
    const smelt_mc_model *m;
    smelt_err *e;
    const smelt_arch *a;
    smelt_mc_hparams hp;
    size_t *by_name; /* tensor indices sorted by name */
    bool *used;
    char keys[4][96]; /* K()'s buffers: up to four key names in one message */
    int next_key;
} ck;

/* "<arch>.<suffix>", valid until four more calls */
static const char *K(ck *c, const char *suffix)
{
    char *b = c->keys[c->next_key++ & 3];
    return smelt_arch_key(c->a, suffix, b, sizeof c->keys[0]);
}

/* ==== metadata ==== */

static const smelt_mc_kv *kv_get(const smelt_mc_model *m, const char *key)
{
    for (size_t i = 0; i < m->n_kv; i++)
        if (!strcmp(m->kv[i].key, key)) return &m->kv[i];
    return NULL;
}

/* Element i of a packed array of integers (u64 above INT64_MAX: INT64_MAX). */
static int64_t arr_int(const smelt_mc_kv *kv, uint64_t i)
{
    return smelt_gguf_int_at(kv->arr_type, (const uint8_t *)kv->arr + i * smelt_gguf_vtype_size(kv->arr_type));
}

/* "a string", "an array of 3 u32", "i32 -5", "f32 -1" — what a value is, for messages. */
static void describe(const smelt_mc_kv *kv, char *buf, size_t n)
{
    if (kv->type == SMELT_GGUF_ARRAY)
        snprintf(buf, n, "an array of %" PRIu64 " %s", kv->n, smelt_gguf_vtype_name(kv->arr_type));
    else if (kv->type == SMELT_GGUF_STRING) snprintf(buf, n, "a string");
    else if (kv->type == SMELT_GGUF_BOOL) snprintf(buf, n, "bool %s", kv->i ? "true" : "false");
    else if (kv->type == SMELT_GGUF_F32 || kv->type == SMELT_GGUF_F64)
        snprintf(buf, n, "%s %g", smelt_gguf_vtype_name(kv->type), kv->f);
    else snprintf(buf, n, "%s %" PRId64, smelt_gguf_vtype_name(kv->type), kv->i);
}

static int missing(ck *c, const char *key)
{
    return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, key, "required key is missing (llama.cpp's loader needs it)");
}

/* <arch>.<suffix> as llama.cpp's get_key<uint32_t> (a u32 scalar) or, with per_layer, its
 * get_key_or_arr (also a u32/i32 array of block_count values, which smelt requires to be
 * equal). *present tells whether the key exists; absent → def. */
static int get_u32(ck *c, const char *suffix, bool required, bool per_layer, uint32_t def, uint32_t *out, bool *present)
{
    char what[96];
    const char *key = K(c, suffix);
    const smelt_mc_kv *kv = kv_get(c->m, key);
    if (present) *present = kv != NULL;
    *out = def;
    if (!kv) return required ? missing(c, key) : 0;
    if (per_layer && kv->type == SMELT_GGUF_ARRAY) {
        if (kv->arr_type != SMELT_GGUF_U32 && kv->arr_type != SMELT_GGUF_I32) {
            describe(kv, what, sizeof what);
            return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, key, "expected a u32 or a u32/i32 array (one value per layer), found %s",
                             what);
        }
        if (kv->n != c->hp.n_layer)
            return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, key,
                             "expected one value per layer (%" PRIu32 " values, %s), found an array of %" PRIu64,
                             c->hp.n_layer, K(c, "block_count"), kv->n);
        int64_t v0 = arr_int(kv, 0);
        for (uint64_t i = 0; i < kv->n; i++) {
            int64_t v = arr_int(kv, i);
            if (v < 0) return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, key, "expected values >= 0, found %" PRId64 " for layer %" PRIu64, v, i);
            if (v != v0)
                return SMELT_ERR(c->e, SMELT_EUNSUPPORTED, c->m->path, key,
                                 "per-layer values differ (layer 0: %" PRId64 ", layer %" PRIu64 ": %" PRId64
                                 "); smelt handles one value for all layers",
                                 v0, i, v);
        }
        *out = (uint32_t)v0;
        return 0;
    }
    if (kv->type != SMELT_GGUF_U32) {
        describe(kv, what, sizeof what);
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, key, "expected a u32, found %s", what);
    }
    *out = (uint32_t)kv->i;
    return 0;
}

/* <arch>.<suffix> as get_key<float>: an f32 scalar. */
static int get_f32(ck *c, const char *suffix, bool required, float def, float *out, bool *present)
{
    char what[96];
    const char *key = K(c, suffix);
    const smelt_mc_kv *kv = kv_get(c->m, key);
    if (present) *present = kv != NULL;
    *out = def;
    if (!kv) return required ? missing(c, key) : 0;
    if (kv->type != SMELT_GGUF_F32) {
        describe(kv, what, sizeof what);
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, key, "expected an f32, found %s", what);
    }
    *out = (float)kv->f;
    return 0;
}

static int at_least(ck *c, const char *suffix, uint32_t v, uint32_t min)
{
    if (v >= min) return 0;
    return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, K(c, suffix), "expected at least %" PRIu32 ", found %" PRIu32, min, v);
}

static int positive_finite(ck *c, const char *suffix, float v)
{
    if (isfinite(v) && v > 0) return 0;
    return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, K(c, suffix), "expected a finite number > 0, found %g", (double)v);
}

static bool str_is(const smelt_mc_kv *kv, const char *s)
{
    return kv && kv->type == SMELT_GGUF_STRING && kv->slen == strlen(s) && !memcmp(kv->s, s, kv->slen);
}

/* general.type and general.architecture. 0: a model of a known architecture (c->a); SMELT_MC_SKIPPED; or an error. */
static int identify(ck *c, unsigned flags)
{
    const smelt_mc_kv *type = kv_get(c->m, "general.type"), *arch = kv_get(c->m, "general.architecture");
    if (str_is(type, "adapter")) {
        if (flags & SMELT_MC_NON_MODEL_OK) {
            snprintf(c->hp.skipped, sizeof c->hp.skipped, "a LoRA adapter, not a model");
            return SMELT_MC_SKIPPED;
        }
        return SMELT_ERR(c->e, SMELT_EUNSUPPORTED, c->m->path, NULL, SMELT_MC_ADAPTER_MSG);
    }
    if (!arch) {
        if (flags & SMELT_MC_NON_MODEL_OK) {
            snprintf(c->hp.skipped, sizeof c->hp.skipped, "no general.architecture: not a model");
            return SMELT_MC_SKIPPED;
        }
        return missing(c, "general.architecture");
    }
    if (arch->type != SMELT_GGUF_STRING) {
        char what[96];
        describe(arch, what, sizeof what);
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, "general.architecture", "expected a string, found %s", what);
    }
    c->a = smelt_arch_by_name(arch->s, arch->slen);
    if (!c->a) {
        int l = (int)(arch->slen > 64 ? 64 : arch->slen);
        if (flags & SMELT_MC_OTHER_ARCH_OK) {
            snprintf(c->hp.skipped, sizeof c->hp.skipped, "architecture '%.*s': smelt validates %s models", l, arch->s,
                     smelt_arch_names);
            return SMELT_MC_SKIPPED;
        }
        return SMELT_ERR(c->e, SMELT_EUNSUPPORTED, c->m->path, "general.architecture",
                         "architecture '%.*s' is not supported; smelt handles %s", l, arch->s, smelt_arch_names);
    }
    c->hp.arch = c->a;
    return 0;
}

static int check_hparams(ck *c)
{
    smelt_mc_hparams *hp = &c->hp;
    int rc;
    bool has_kl, has_vl, has;
    if ((rc = get_u32(c, "block_count", true, false, 0, &hp->n_layer, NULL))) return rc;
    if (hp->n_layer < 1 || hp->n_layer > MAX_LAYERS)
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, K(c, "block_count"), "expected 1..%d layers, found %" PRIu32,
                         MAX_LAYERS, hp->n_layer);
    if ((rc = get_u32(c, "context_length", true, false, 0, &hp->n_ctx_train, NULL)) ||
        (rc = at_least(c, "context_length", hp->n_ctx_train, 1)) ||
        (rc = get_u32(c, "embedding_length", true, false, 0, &hp->n_embd, NULL)) ||
        (rc = at_least(c, "embedding_length", hp->n_embd, 1)) ||
        (rc = get_u32(c, "feed_forward_length", true, true, 0, &hp->n_ff, NULL)) ||
        (rc = at_least(c, "feed_forward_length", hp->n_ff, 1)) ||
        (rc = get_u32(c, "attention.head_count", true, true, 0, &hp->n_head, NULL)) ||
        (rc = at_least(c, "attention.head_count", hp->n_head, 1)) ||
        (rc = get_u32(c, "attention.head_count_kv", false, true, hp->n_head, &hp->n_head_kv, NULL)) ||
        (rc = at_least(c, "attention.head_count_kv", hp->n_head_kv, 1)))
        return rc;
    if (hp->n_head % hp->n_head_kv)
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, K(c, "attention.head_count_kv"),
                         "expected a divisor of %s %" PRIu32 ", found %" PRIu32, K(c, "attention.head_count"), hp->n_head,
                         hp->n_head_kv);
    uint32_t def = hp->n_embd / hp->n_head;
    if ((rc = get_u32(c, "attention.key_length", false, false, def, &hp->head_dim, &has_kl)) ||
        (rc = get_u32(c, "attention.value_length", false, false, def, &hp->head_dim_v, &has_vl)))
        return rc;
    if ((!has_kl || !has_vl) && hp->n_embd % hp->n_head)
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, K(c, "attention.head_count"),
                         "%s %" PRIu32 " is not a multiple of the head count %" PRIu32
                         " (and %s, which would give the head size, is not set)",
                         K(c, "embedding_length"), hp->n_embd, hp->n_head,
                         K(c, has_kl ? "attention.value_length" : "attention.key_length"));
    if (hp->head_dim == 0 || hp->head_dim % 2)
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, K(c, "attention.key_length"),
                         "expected an even head size >= 2 (RoPE rotates pairs), found %" PRIu32, hp->head_dim);
    if (hp->head_dim_v != hp->head_dim)
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, K(c, "attention.value_length"),
                         "expected %" PRIu32 " (= %s: the %s architecture has one head size), "
                         "found %" PRIu32,
                         hp->head_dim, K(c, "attention.key_length"), c->a->name, hp->head_dim_v);
    if ((rc = get_u32(c, "rope.dimension_count", false, false, hp->head_dim, &hp->n_rot, NULL))) return rc;
    if (hp->n_rot != hp->head_dim)
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, K(c, "rope.dimension_count"),
                         "expected %" PRIu32 " (the head size: %s rotates the whole head), found %" PRIu32, hp->head_dim,
                         c->a->name, hp->n_rot);
    if ((rc = get_f32(c, "attention.layer_norm_rms_epsilon", true, 0, &hp->rms_eps, NULL)) ||
        (rc = positive_finite(c, "attention.layer_norm_rms_epsilon", hp->rms_eps)) ||
        (rc = get_f32(c, "rope.freq_base", false, 10000.0f, &hp->rope_base, NULL)) ||
        (rc = positive_finite(c, "rope.freq_base", hp->rope_base)))
        return rc;
    const char *st_key = K(c, "rope.scaling.type");
    const smelt_mc_kv *st = kv_get(c->m, st_key);
    if (st && !str_is(st, "none") && !str_is(st, "linear") && !str_is(st, "yarn") && !str_is(st, "longrope")) {
        if (st->type != SMELT_GGUF_STRING) {
            char what[96];
            describe(st, what, sizeof what);
            return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, st_key, "expected a string, found %s", what);
        }
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, st_key,
                         "expected none, linear, yarn or longrope, found '%.*s'", (int)(st->slen > 32 ? 32 : st->slen), st->s);
    }
    static const char *const factors[] = {"rope.scaling.factor", "rope.scale_linear"};
    for (int i = 0; i < 2; i++) {
        float f;
        if ((rc = get_f32(c, factors[i], false, 0, &f, &has))) return rc;
        if (has && !(isfinite(f) && f >= 0))
            return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, K(c, factors[i]),
                             "expected a finite number >= 0 (0: no scaling), found %g", (double)f);
    }
    /* experts */
    uint32_t groups, groups_used;
    bool has_used;
    if ((rc = get_u32(c, "expert_count", false, false, 0, &hp->n_expert, NULL)) ||
        (rc = get_u32(c, "expert_used_count", false, true, 0, &hp->n_expert_used, &has_used)) ||
        (rc = get_u32(c, "expert_group_count", false, false, 0, &groups, NULL)) ||
        (rc = get_u32(c, "expert_group_used_count", false, false, 0, &groups_used, NULL)) ||
        (rc = get_u32(c, "expert_shared_feed_forward_length", false, false, 0, &hp->n_ff_shexp, NULL)))
        return rc;
    if (hp->n_expert > MAX_EXPERTS)
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, K(c, "expert_count"), "expected at most %d experts, found %" PRIu32,
                         MAX_EXPERTS, hp->n_expert);
    if (hp->n_expert > 0 && (hp->n_expert_used < 1 || hp->n_expert_used > hp->n_expert)) {
        if (!has_used) return missing(c, K(c, "expert_used_count"));
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, K(c, "expert_used_count"),
                         "expected 1..%" PRIu32 " (%s), found %" PRIu32, hp->n_expert, K(c, "expert_count"), hp->n_expert_used);
    }
    if (hp->n_expert == 0 && (hp->n_expert_used || groups))
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, K(c, hp->n_expert_used ? "expert_used_count" : "expert_group_count"),
                         "expected 0 in a model without experts (no %s), found %" PRIu32, K(c, "expert_count"),
                         hp->n_expert_used ? hp->n_expert_used : groups);
    if (groups && (groups >= hp->n_expert || (groups > 1 && (hp->n_expert % groups || groups_used < 1 || groups_used >= groups))))
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, K(c, "expert_group_count"),
                         "%" PRIu32 " expert groups (%" PRIu32 " used) do not fit %s %" PRIu32
                         ": expected fewer groups than experts, dividing them, and 1..groups-1 used",
                         groups, groups_used, K(c, "expert_count"), hp->n_expert);
    /* the architecture's feed-forward: dense only, experts only, or either */
    if (hp->n_expert > 0 && !(c->a->ffn & SMELT_FFN_MOE))
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, K(c, "expert_count"),
                         "expected no experts (%s is a dense architecture), found %" PRIu32, c->a->name, hp->n_expert);
    if (hp->n_expert == 0 && !(c->a->ffn & SMELT_FFN_DENSE))
        return missing(c, K(c, "expert_count"));
    hp->n_ff_exp = hp->n_ff;
    if (c->a->expert_ff && hp->n_expert > 0) {
        /* llama.cpp: expert_feed_forward_length, else n_ff / n_expert_used */
        if ((rc = get_u32(c, "expert_feed_forward_length", false, true, 0, &hp->n_ff_exp, NULL))) return rc;
        if (!hp->n_ff_exp) hp->n_ff_exp = hp->n_ff / hp->n_expert_used;
        if (!hp->n_ff_exp)
            return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, K(c, "expert_feed_forward_length"),
                             "expected an expert width >= 1, found 0");
    }
    return 0;
}

/* tokenizer arrays and <arch>.vocab_size */
static int check_vocab(ck *c)
{
    char what[96];
    const smelt_mc_kv *tok = kv_get(c->m, "tokenizer.ggml.tokens");
    if (tok) {
        if (tok->type != SMELT_GGUF_ARRAY || tok->arr_type != SMELT_GGUF_STRING) {
            describe(tok, what, sizeof what);
            return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, "tokenizer.ggml.tokens", "expected an array of strings, found %s", what);
        }
        c->hp.n_tokens = tok->n;
        static const struct {
            const char *key;
            int t1, t2;
        } per_token[] = {{"tokenizer.ggml.scores", SMELT_GGUF_F32, SMELT_GGUF_I32}, {"tokenizer.ggml.token_type", SMELT_GGUF_I32, -1}};
        for (int i = 0; i < 2; i++) {
            const smelt_mc_kv *kv = kv_get(c->m, per_token[i].key);
            if (!kv) continue;
            if (kv->type != SMELT_GGUF_ARRAY || (kv->arr_type != per_token[i].t1 && kv->arr_type != per_token[i].t2)) {
                describe(kv, what, sizeof what);
                return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, per_token[i].key, "expected an array of %s%s, found %s",
                                 i ? "i32" : "f32", i ? "" : " (or i32)", what);
            }
            if (kv->n < tok->n)
                return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, per_token[i].key,
                                 "expected one entry per token (%" PRIu64 ", tokenizer.ggml.tokens), found %" PRIu64, tok->n, kv->n);
        }
    }
    uint32_t vs;
    bool has_vs;
    int rc = get_u32(c, "vocab_size", false, false, 0, &vs, &has_vs);
    if (rc) return rc;
    if (has_vs && tok && vs != tok->n)
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, K(c, "vocab_size"),
                         "expected %" PRIu64 " (the entries of tokenizer.ggml.tokens), found %" PRIu32, tok->n, vs);
    c->hp.n_vocab = tok ? tok->n : has_vs ? vs : 0;
    return 0;
}

/* ==== tensors ==== */

static const char *t_file(const ck *c, const smelt_mc_tensor *t) { return t->file ? t->file : c->m->path; }

static int cmp_idx(const void *a, const void *b, void *ctx)
{
    const smelt_mc_tensor *t = ctx;
    return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

static const smelt_mc_tensor *t_find(ck *c, const char *name)
{
    size_t lo = 0, hi = c->m->n_t;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const smelt_mc_tensor *t = &c->m->t[c->by_name[mid]];
        int d = strcmp(t->name, name);
        if (!d) {
            c->used[c->by_name[mid]] = true;
            return t;
        }
        if (d < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

static void fmt_shape(char *buf, size_t n, const uint64_t *ne, int nd)
{
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < nd && o < n; i++) o += (size_t)snprintf(buf + o, n - o, "%s%" PRIu64, i ? ", " : "", ne[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

/* A tensor of shape [d0(, d1(, d2))] (ggml order); `what` names the dimensions. Absent:
 * an error if required. *found (may be NULL) tells whether it exists. */
static int want(ck *c, const char *name, bool required, int nd, uint64_t d0, uint64_t d1, uint64_t d2, const char *what,
                const smelt_mc_tensor **found)
{
    const smelt_mc_tensor *t = t_find(c, name);
    if (found) *found = t;
    uint64_t ne[4] = {d0, d1, d2, 1};
    char exp[96], got[96];
    if (!t) {
        if (!required) return 0;
        fmt_shape(exp, sizeof exp, ne, nd);
        return SMELT_ERR(c->e, SMELT_EFORMAT, c->m->path, name,
                         "required tensor is missing (llama.cpp's loader needs it: %s = [%s])", exp, what);
    }
    bool ok = true;
    for (int i = 0; i < 4; i++) ok = ok && t->ne[i] == (i < nd ? ne[i] : 1);
    if (ok) return 0;
    int gd = 4;
    while (gd > 1 && t->ne[gd - 1] == 1) gd--;
    fmt_shape(got, sizeof got, t->ne, gd);
    fmt_shape(exp, sizeof exp, ne, nd);
    return SMELT_ERR(c->e, SMELT_EFORMAT, t_file(c, t), name, "shape %s does not match the hyperparameters: expected %s = [%s]",
                     got, exp, what);
}

/* The shape llama.cpp's loader asks for a tensor kind (ggml order) and the names of its
 * dimensions, for messages. */
static int kind_shape(const ck *c, smelt_tk k, bool bias, uint64_t ne[3], const char **what)
{
    const smelt_mc_hparams *hp = &c->hp;
    uint64_t E = hp->n_embd, q = (uint64_t)hp->n_head * hp->head_dim, kv = (uint64_t)hp->n_head_kv * hp->head_dim,
             v = (uint64_t)hp->n_head_kv * hp->head_dim_v, F = hp->n_ff, FX = hp->n_ff_exp, X = hp->n_expert,
             S = hp->n_ff_shexp;
    bool fx = c->a->expert_ff;
#define SHAPE(nd, a, b, d, text) (ne[0] = (a), ne[1] = (b), ne[2] = (d), *what = (text), (nd))
    if (bias) switch (k) {
        case SMELT_TK_ATTN_QKV: return SHAPE(1, q + kv + v, 1, 1, "(n_head + 2 n_head_kv) × head size");
        case SMELT_TK_ATTN_Q: return SHAPE(1, q, 1, 1, "n_head × head size");
        case SMELT_TK_ATTN_K:
        case SMELT_TK_ATTN_V: return SHAPE(1, k == SMELT_TK_ATTN_K ? kv : v, 1, 1, "n_head_kv × head size");
        case SMELT_TK_ATTN_OUT:
        case SMELT_TK_FFN_DOWN: return SHAPE(1, E, 1, 1, "n_embd");
        default: return SHAPE(1, F, 1, 1, "n_ff"); /* ffn_gate, ffn_up */
        }
    switch (k) {
    case SMELT_TK_ROPE_FREQS: return SHAPE(1, hp->n_rot / 2, 1, 1, "head size / 2");
    case SMELT_TK_ATTN_NORM:
    case SMELT_TK_FFN_NORM:
    case SMELT_TK_OUTPUT_NORM: return SHAPE(1, E, 1, 1, "n_embd");
    case SMELT_TK_ATTN_QKV: return SHAPE(2, E, q + kv + v, 1, "n_embd, (n_head + 2 n_head_kv) × head size");
    case SMELT_TK_ATTN_Q: return SHAPE(2, E, q, 1, "n_embd, n_head × head size");
    case SMELT_TK_ATTN_K:
    case SMELT_TK_ATTN_V: return SHAPE(2, E, k == SMELT_TK_ATTN_K ? kv : v, 1, "n_embd, n_head_kv × head size");
    case SMELT_TK_ATTN_Q_NORM:
    case SMELT_TK_ATTN_K_NORM: return SHAPE(1, hp->head_dim, 1, 1, "head size");
    case SMELT_TK_ATTN_OUT: return SHAPE(2, q, E, 1, "n_head × head size, n_embd");
    case SMELT_TK_FFN_GATE:
    case SMELT_TK_FFN_UP: return SHAPE(2, E, F, 1, "n_embd, n_ff");
    case SMELT_TK_FFN_DOWN: return SHAPE(2, F, E, 1, "n_ff, n_embd");
    case SMELT_TK_FFN_GATE_INP: return SHAPE(2, E, X, 1, "n_embd, n_expert");
    case SMELT_TK_FFN_GATE_EXPS:
    case SMELT_TK_FFN_UP_EXPS: return SHAPE(3, E, FX, X, fx ? "n_embd, n_ff_exp, n_expert" : "n_embd, n_ff, n_expert");
    case SMELT_TK_FFN_DOWN_EXPS: return SHAPE(3, FX, E, X, fx ? "n_ff_exp, n_embd, n_expert" : "n_ff, n_embd, n_expert");
    case SMELT_TK_FFN_GATE_SHEXP:
    case SMELT_TK_FFN_UP_SHEXP: return SHAPE(2, E, S, 1, "n_embd, n_ff_shexp");
    case SMELT_TK_FFN_DOWN_SHEXP: return SHAPE(2, S, E, 1, "n_ff_shexp, n_embd");
    default: return SHAPE(2, E, hp->n_vocab, 1, "n_embd, n_vocab");
    }
#undef SHAPE
}

/* Whether the loader looks for a per-layer kind at all in this model: the dense or the
 * expert feed-forward by expert_count, shared experts by their width, and either the fused
 * attn_qkv or the separate attn_q/k/v. */
static bool kind_applies(const ck *c, smelt_tk k, bool fused_qkv)
{
    const smelt_mc_hparams *hp = &c->hp;
    switch (k) {
    case SMELT_TK_ATTN_Q:
    case SMELT_TK_ATTN_K:
    case SMELT_TK_ATTN_V: return !fused_qkv;
    case SMELT_TK_FFN_GATE:
    case SMELT_TK_FFN_DOWN:
    case SMELT_TK_FFN_UP: return hp->n_expert == 0;
    case SMELT_TK_FFN_GATE_INP:
    case SMELT_TK_FFN_GATE_EXPS:
    case SMELT_TK_FFN_DOWN_EXPS:
    case SMELT_TK_FFN_UP_EXPS: return hp->n_expert > 0;
    case SMELT_TK_FFN_GATE_SHEXP:
    case SMELT_TK_FFN_UP_SHEXP:
    case SMELT_TK_FFN_DOWN_SHEXP: return hp->n_expert > 0 && hp->n_ff_shexp > 0;
    default: return true;
    }
}

/* One tensor kind of the architecture (weight or bias), by its entry in formats/arch.c. */
static int want_kind(ck *c, smelt_tk k, bool bias, uint32_t il, const smelt_mc_tensor **found)
{
    uint8_t p = bias ? c->a->bias[k] : c->a->weight[k];
    if (found) *found = NULL;
    if (p == SMELT_TP_NO) return 0;
    char n[SMELT_GGUF_MAX_NAME + 32];
    uint64_t ne[3];
    const char *what;
    smelt_tk_name(k, il, bias, n, sizeof n);
    int nd = kind_shape(c, k, bias, ne, &what);
    return want(c, n, p == SMELT_TP_REQ, nd, ne[0], ne[1], ne[2], what, found);
}

/* A layer: the weights in the order of smelt_tk, then the biases. */
static int check_layer(ck *c, uint32_t il)
{
    const smelt_mc_tensor *qkv;
    int rc = want_kind(c, SMELT_TK_ATTN_QKV, false, il, &qkv);
    for (int b = 0; b < 2 && !rc; b++)
        for (int k = SMELT_TK_FIRST_LAYER; k < SMELT_TK_COUNT && !rc; k++) {
            if ((!b && k == SMELT_TK_ATTN_QKV) || (b && k == SMELT_TK_ATTN_QKV && !qkv)) continue;
            if (kind_applies(c, (smelt_tk)k, qkv != NULL)) rc = want_kind(c, (smelt_tk)k, b, il, NULL);
        }
    return rc;
}

static int check_tensors(ck *c)
{
    const smelt_mc_model *m = c->m;
    smelt_mc_hparams *hp = &c->hp;
    c->by_name = malloc((m->n_t ? m->n_t : 1) * sizeof *c->by_name);
    c->used = calloc(m->n_t ? m->n_t : 1, sizeof *c->used);
    if (!c->by_name || !c->used) return SMELT_NOMEM(c->e, "the tensor index");
    for (size_t i = 0; i < m->n_t; i++) c->by_name[i] = i;
    qsort_r(c->by_name, m->n_t, sizeof *c->by_name, cmp_idx, (void *)m->t);
    for (size_t i = 1; i < m->n_t; i++)
        if (!strcmp(m->t[c->by_name[i]].name, m->t[c->by_name[i - 1]].name))
            return SMELT_ERR(c->e, SMELT_EFORMAT, t_file(c, &m->t[c->by_name[i]]), m->t[c->by_name[i]].name,
                             "tensor name appears twice");
    /* token_embd fixes the vocabulary size unless the tokenizer or vocab_size already did */
    const smelt_mc_tensor *te = t_find(c, "token_embd.weight");
    uint64_t nv = hp->n_vocab ? hp->n_vocab : te ? te->ne[1] : 0;
    char vwhat[96];
    snprintf(vwhat, sizeof vwhat, "n_embd, n_vocab%s%s%s", hp->n_tokens ? " (tokenizer.ggml.tokens)" : hp->n_vocab ? " (" : "",
             !hp->n_tokens && hp->n_vocab ? K(c, "vocab_size") : "", !hp->n_tokens && hp->n_vocab ? ")" : "");
    const smelt_mc_tensor *out;
    int rc;
    if (!te && !nv)
        return SMELT_ERR(c->e, SMELT_EFORMAT, m->path, "token_embd.weight",
                         "required tensor is missing (llama.cpp's loader needs it: [n_embd, n_vocab])");
    if ((rc = want(c, "token_embd.weight", true, 2, hp->n_embd, nv, 1, vwhat, NULL)) ||
        (rc = want_kind(c, SMELT_TK_OUTPUT_NORM, false, 0, NULL)) ||
        (rc = want(c, "output.weight", false, 2, hp->n_embd, nv, 1, vwhat, &out)) ||
        (rc = want_kind(c, SMELT_TK_ROPE_FREQS, false, 0, NULL)))
        return rc;
    hp->n_vocab = nv;
    hp->tied_output = out == NULL;
    for (uint32_t il = 0; il < hp->n_layer; il++)
        if ((rc = check_layer(c, il))) return rc;
    for (size_t i = 0; i < m->n_t; i++)
        if (!c->used[i])
            return SMELT_ERR(c->e, SMELT_EFORMAT, t_file(c, &m->t[i]), m->t[i].name,
                             "tensor is not part of the %s architecture (%s): llama.cpp refuses to load a file with "
                             "tensors it does not use",
                             c->a->name, hp->n_expert ? "mixture of experts, ffn_{gate,up,down}_exps" : "dense feed-forward, no experts");
    return 0;
}

/* ==== entry points ==== */

int smelt_mc_check(const smelt_mc_model *m, unsigned flags, smelt_mc_hparams *hp, smelt_err *e)
{
    ck c;
    memset(&c, 0, sizeof c);
    c.m = m;
    c.e = e;
    int rc = identify(&c, flags);
    if (!rc) rc = check_hparams(&c);
    if (!rc) rc = check_vocab(&c);
    if (!rc && !m->vocab_only) rc = check_tensors(&c);
    free(c.by_name);
    free(c.used);
    if (hp && rc >= 0) *hp = c.hp;
    return rc;
}

smelt_mc_kv *smelt_mc_kvs_of_gguf(const smelt_gguf *g)
{
    uint64_t n = smelt_gguf_n_kv(g);
    smelt_mc_kv *kv = calloc(n ? n : 1, sizeof *kv);
    if (!kv) return NULL;
    for (uint64_t i = 0; i < n; i++) {
        const smelt_gguf_kv *s = smelt_gguf_kv_at(g, i);
        smelt_mc_kv *d = &kv[i];
        d->key = s->key;
        d->type = s->type;
        d->arr_type = s->arr_type;
        d->n = s->n;
        if (s->type == SMELT_GGUF_ARRAY) {
            if (s->arr_type != SMELT_GGUF_STRING) d->arr = s->data;
        } else if (s->type == SMELT_GGUF_STRING) {
            smelt_str str = smelt_gguf_kv_str(s);
            d->s = str.p;
            d->slen = str.n;
        } else if (s->type == SMELT_GGUF_F32 || s->type == SMELT_GGUF_F64) {
            d->f = smelt_gguf_kv_num(s, 0);
        } else {
            uint64_t u = smelt_gguf_kv_uint(s, 0);
            d->i = s->type == SMELT_GGUF_U64 && u > INT64_MAX ? INT64_MAX : smelt_gguf_kv_int(s, 0);
        }
    }
    return kv;
}

int smelt_mc_check_gguf(const smelt_gguf *g, unsigned flags, smelt_mc_hparams *hp, smelt_err *e)
{
    size_t nt = (size_t)smelt_gguf_n_tensors(g);
    smelt_mc_kv *kv = smelt_mc_kvs_of_gguf(g);
    smelt_mc_tensor *t = calloc(nt ? nt : 1, sizeof *t);
    if (!kv || !t) {
        free(kv);
        free(t);
        return SMELT_NOMEM(e, "the model check");
    }
    for (size_t k = 0; k < nt; k++) {
        const smelt_gguf_tensor *s = smelt_gguf_tensor_at(g, k);
        t[k].name = s->name;
        memcpy(t[k].ne, s->ne, sizeof t[k].ne);
        t[k].file = smelt_gguf_path(smelt_gguf_shard(g, s->shard));
    }
    smelt_mc_model m = {smelt_gguf_path(g), kv, smelt_gguf_n_kv(g), t, nt, nt == 0};
    int rc = smelt_mc_check(&m, flags, hp, e);
    free(kv);
    free(t);
    return rc;
}
