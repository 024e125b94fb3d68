/* lora.c — PEFT LoRA adapter → llama.cpp LoRA adapter GGUF (see lora.h).
 * HF → GGUF names come from the converter's tensor_map.
 * Includes convert/tensor_map.h, formats/ (gguf writer, peft, hfdir, half), base/. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "lora.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "convert/tensor_map.h"
#include "formats/base/finite.h"
#include "formats/base/half.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"

void smelt_lora_gguf_opts_default(smelt_lora_gguf_opts *o)
{
    memset(o, 0, sizeof *o);
    o->out_type = SMELT_TYPE_F32;
    o->full_delta = true;
}

/* ==== names ==== */

bool smelt_lora_gguf_name(const char *hf, char *out, size_t n, int *expert)
{
    *expert = -1;
    smelt_tmap m;
    if (smelt_tmap_parse(hf, &m) != 0) return false;
    smelt_role role = m.role;
    switch (role) { /* one expert's projection → the stacked tensor it goes into */
    case SMELT_R_EXP_W1: role = SMELT_R_GATE_EXPS; break;
    case SMELT_R_EXP_W2: role = SMELT_R_DOWN_EXPS; break;
    case SMELT_R_EXP_W3: role = SMELT_R_UP_EXPS; break;
    case SMELT_R_EXP_GATE_UP: /* fused transformers-v5 experts: not LoRA modules */
    case SMELT_R_EXP_DOWN:
    case SMELT_R_SKIP: return false;
    default: break;
    }
    smelt_tmap_gguf_name(role, m.bid, m.bias, out, n);
    *expert = (int)m.expert;
    return true;
}

/* ==== the plan ==== */

enum { K_A, K_B, K_EMB_A, K_EMB_B, K_STACK_A, K_STACK_B, K_IDENT, K_DELTA };

typedef struct {
    char name[224];
    uint64_t ne[3];
    uint32_t nd;
    int type;
    int kind;
    const smelt_peft_module *mod;      /* K_A / K_B / K_EMB_* */
    const smelt_peft_module **exp;     /* K_STACK_*: n_exp slots, NULL = no LoRA on that expert */
    uint64_t n_exp, r_max;
    int permute_heads;                 /* lora_b / delta rows permuted as llama.cpp permutes q/k */
    int64_t base_idx, rep_idx;         /* K_DELTA: base tensor, adapter replacement tensor */
} gt;

typedef struct {
    gt *t;
    size_t n, cap;
} plan;

static gt *plan_add(plan *pl, smelt_err *e)
{
    if (pl->n == pl->cap) {
        size_t nc = pl->cap ? pl->cap * 2 : 64;
        gt *nt = realloc(pl->t, nc * sizeof *nt);
        if (!nt) {
            SMELT_NOMEM(e, "adapter plan");
            return NULL;
        }
        pl->t = nt;
        pl->cap = nc;
    }
    gt *g = &pl->t[pl->n++];
    memset(g, 0, sizeof *g);
    g->base_idx = g->rep_idx = -1;
    return g;
}

static void plan_free(plan *pl)
{
    for (size_t i = 0; i < pl->n; i++)
        if (pl->t[i].kind == K_STACK_A) free((void *)pl->t[i].exp); /* K_STACK_B shares it */
    free(pl->t);
}

static int cmp_mod(const void *a, const void *b)
{
    return strcmp((*(const smelt_peft_module *const *)a)->name, (*(const smelt_peft_module *const *)b)->name);
}

static int64_t cfg_int(json_t *cfg, const char *k, int64_t dflt)
{
    json_t *v = json_object_get(cfg, k);
    return json_is_integer(v) ? json_integer_value(v) : dflt;
}

static const char *unsupported_tail = ": llama.cpp cannot apply this as a runtime adapter; merge the adapter into the "
                                      "model instead (smelt-merge --gguf OUT.gguf, or smelt-merge -o DIR)";

/* ==== data ==== */

/* An adapter tensor as f32; unless allow_nonfinite, refused when it holds NaN/±Inf. */
static int load_f32(const smelt_peft *p, int64_t ti, bool allow_nonfinite, float **out, smelt_err *e)
{
    const smelt_tsrc *s = smelt_peft_tensors(p);
    const smelt_tinfo *t = smelt_tsrc_info(s, (uint64_t)ti);
    int rc = smelt_tsrc_load_f32(s, (uint64_t)ti, out, e);
    double v;
    uint64_t k = rc || allow_nonfinite ? t->nelements : smelt_nonfinite_first(SMELT_FIN_F32, *out, t->nelements, &v);
    if (k < t->nelements) rc = SMELT_ERR_NONFINITE(e, smelt_peft_weights_path(p), t->name, NULL, k, v, NULL);
    return rc;
}

/* The first NaN/±Inf of a tensor (rows of `cols` values, widened to f32 into buf) in its
 * own order. */
static int refuse_tensor(const char *file, const smelt_tinfo *t, const void *data, uint64_t cols, float *buf, smelt_err *e)
{
    size_t es = smelt_dtype_size(t->dtype);
    for (uint64_t r = 0; cols && r < t->nelements / cols; r++) {
        smelt_dtype_to_f32(t->dtype, (const uint8_t *)data + r * cols * es, buf, (size_t)cols);
        double v;
        uint64_t k = smelt_nonfinite_first(SMELT_FIN_F32, buf, cols, &v);
        if (k < cols) return SMELT_ERR_NONFINITE(e, file, t->name, NULL, r * cols + k, v, NULL);
    }
    return SMELT_ERR(e, SMELT_EINTERNAL, file, t->name, "non-finite values counted but not found again");
}

typedef struct {
    smelt_gguf_writer *w;
    void *buf;
    size_t cap;
    uint64_t bytes;
    /* the tensor being written: NaN/±Inf in what is written (inputs are checked when read;
     * this catches a scaling or a difference that overflows f32) */
    const char *path, *name;
    uint64_t pos, nonfinite;
    bool allow_nonfinite;
} sink;

static int emit(sink *s, const float *v, size_t n, int type, smelt_err *e)
{
    uint64_t nf = smelt_nonfinite_f32(v, n);
    if (nf && !s->allow_nonfinite) {
        double x;
        uint64_t k = smelt_nonfinite_first(SMELT_FIN_F32, v, n, &x);
        return SMELT_ERR_NONFINITE(e, s->path, s->name, "written value", s->pos + k, x,
                                   " although the adapter values are finite (the scaling, or the difference of a "
                                   "replaced tensor and the base, overflows f32)");
    }
    s->nonfinite += nf;
    s->pos += n;
    size_t es = type == SMELT_TYPE_F32 ? 4 : 2;
    if (n * es > s->cap) {
        void *nb = realloc(s->buf, n * es);
        if (!nb) return SMELT_NOMEM(e, "output row");
        s->buf = nb;
        s->cap = n * es;
    }
    if (type == SMELT_TYPE_F32) memcpy(s->buf, v, n * 4);
    else if (type == SMELT_TYPE_F16) smelt_row_f32_to_f16(v, s->buf, n, SMELT_F16_OVERFLOW_INF);
    else smelt_row_f32_to_bf16(v, s->buf, n);
    s->bytes += n * es;
    return smelt_gguf_writer_write(s->w, s->buf, n * es, e);
}

static uint64_t perm_src(uint64_t row, uint64_t rows, int n_head)
{
    if (!n_head) return row;
    uint64_t hd = rows / (uint64_t)n_head, h = row / hd, rem = row % hd;
    return h * hd + (rem % 2) * (hd / 2) + rem / 2;
}

/* B [out, r] as lora_b rows (r wide) padded to rp, scaled, optionally head-permuted */
static int emit_b(sink *s, const float *B, uint64_t out, uint64_t r, uint64_t rp, float scale, int perm, int type,
                  float *row, smelt_err *e)
{
    int rc = 0;
    for (uint64_t o = 0; o < out && !rc; o++) {
        const float *src = B ? B + perm_src(o, out, perm) * r : NULL;
        for (uint64_t k = 0; k < rp; k++) {
            float v = src && k < r ? src[k] : 0.0f;
            row[k] = scale == 1.0f ? v : v * scale;
        }
        rc = emit(s, row, (size_t)rp, type, e);
    }
    return rc;
}

/* A [r, in] as lora_a rows (in wide), padded with zero rows to rp */
static int emit_a(sink *s, const float *A, uint64_t r, uint64_t in, uint64_t rp, int type, float *row, smelt_err *e)
{
    int rc = 0;
    for (uint64_t k = 0; k < rp && !rc; k++) {
        if (A && k < r) rc = emit(s, A + k * in, (size_t)in, type, e);
        else {
            memset(row, 0, (size_t)in * sizeof *row);
            rc = emit(s, row, (size_t)in, type, e);
        }
    }
    return rc;
}

static float module_scale(const smelt_peft_module *m, bool baked) { return baked ? (float)m->scaling : 1.0f; }

static int write_tensor(const gt *g, const smelt_peft *p, const smelt_hf *base, bool baked, sink *s, smelt_err *e)
{
    int rc = 0;
    bool allow = s->allow_nonfinite;
    float *A = NULL, *B = NULL, *row = NULL;
    uint64_t widest = g->ne[0] > g->ne[1] ? g->ne[0] : g->ne[1];
    row = malloc((size_t)(widest + 1) * sizeof *row);
    if (!row) return SMELT_NOMEM(e, "output row");
    switch (g->kind) {
    case K_A:
        if (!(rc = load_f32(p, g->mod->a, allow, &A, e))) rc = emit_a(s, A, g->mod->r, g->mod->cols, g->mod->r, g->type, row, e);
        break;
    case K_B:
        if (!(rc = load_f32(p, g->mod->b, allow, &B, e)))
            rc = emit_b(s, B, g->mod->rows, g->mod->r, g->mod->r, module_scale(g->mod, baked), g->permute_heads, g->type,
                        row, e);
        break;
    case K_EMB_A: /* lora_embedding_A [r, vocab] transposed: one row of r per token */
        if (!(rc = load_f32(p, g->mod->a, allow, &A, e)))
            for (uint64_t v = 0; v < g->mod->rows && !rc; v++) {
                for (uint64_t k = 0; k < g->mod->r; k++) row[k] = A[k * g->mod->rows + v];
                rc = emit(s, row, (size_t)g->mod->r, g->type, e);
            }
        break;
    case K_EMB_B: /* lora_embedding_B [dim, r] */
        if (!(rc = load_f32(p, g->mod->b, allow, &B, e)))
            rc = emit_b(s, B, g->mod->cols, g->mod->r, g->mod->r, module_scale(g->mod, baked), 0, g->type, row, e);
        break;
    case K_STACK_A:
    case K_STACK_B:
        for (uint64_t x = 0; x < g->n_exp && !rc; x++) {
            const smelt_peft_module *m = g->exp[x];
            float *F = NULL;
            if (m && (rc = load_f32(p, g->kind == K_STACK_A ? m->a : m->b, allow, &F, e))) {
                free(F);
                break;
            }
            if (g->kind == K_STACK_A) rc = emit_a(s, F, m ? m->r : 0, g->ne[0], g->r_max, g->type, row, e);
            else rc = emit_b(s, F, g->ne[1], m ? m->r : 0, g->r_max, m ? module_scale(m, baked) : 1.0f, 0, g->type, row, e);
            free(F);
        }
        break;
    case K_IDENT:
        for (uint64_t i = 0; i < g->ne[1] && !rc; i++) {
            memset(row, 0, (size_t)g->ne[0] * sizeof *row);
            row[i] = 1.0f;
            rc = emit(s, row, (size_t)g->ne[0], SMELT_TYPE_F32, e);
        }
        break;
    case K_DELTA: {
        const smelt_tsrc *bs = smelt_hf_tensors(base), *as = smelt_peft_tensors(p);
        const smelt_tinfo *bt = smelt_tsrc_info(bs, (uint64_t)g->base_idx), *at = smelt_tsrc_info(as, (uint64_t)g->rep_idx);
        smelt_scratch s1 = {0}, s2 = {0};
        const void *bd, *ad;
        uint64_t rows = bt->shape[0], cols = bt->nelements / (rows ? rows : 1);
        float *tmp = malloc((size_t)(cols + 1) * sizeof *tmp);
        if (!tmp) rc = SMELT_NOMEM(e, "delta row");
        if (!rc) rc = smelt_tsrc_read(bs, (uint64_t)g->base_idx, &bd, &s1, e);
        if (!rc) rc = smelt_tsrc_read(as, (uint64_t)g->rep_idx, &ad, &s2, e);
        size_t bes = smelt_dtype_size(bt->dtype), aes = smelt_dtype_size(at->dtype);
        for (uint64_t r = 0; r < rows && !rc; r++) {
            uint64_t sr = perm_src(r, rows, g->permute_heads);
            smelt_dtype_to_f32(at->dtype, (const uint8_t *)ad + sr * cols * aes, row, (size_t)cols);
            smelt_dtype_to_f32(bt->dtype, (const uint8_t *)bd + sr * cols * bes, tmp, (size_t)cols);
            if (!allow && smelt_nonfinite_f32(row, cols)) {
                rc = refuse_tensor(smelt_peft_weights_path(p), at, ad, cols, row, e);
                break;
            }
            if (!allow && smelt_nonfinite_f32(tmp, cols)) {
                rc = refuse_tensor(bt->file ? bt->file : smelt_hf_dir(base), bt, bd, cols, row, e);
                break;
            }
            for (uint64_t c = 0; c < cols; c++) row[c] = row[c] - tmp[c];
            rc = emit(s, row, (size_t)cols, SMELT_TYPE_F32, e);
        }
        smelt_tsrc_release(bs, (uint64_t)g->base_idx);
        smelt_tsrc_release(as, (uint64_t)g->rep_idx);
        smelt_scratch_free(&s1);
        smelt_scratch_free(&s2);
        free(tmp);
        break;
    }
    }
    free(A);
    free(B);
    free(row);
    return rc;
}

/* ==== planning ==== */

typedef struct {
    char gguf[200];
    const smelt_peft_module **slots;
    uint64_t n;
    size_t last; /* index in the sorted module list of its last member */
} group;

static char *title_case(const char *dir)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t s = len;
    while (s > 0 && dir[s - 1] != '/') s--;
    char *out = malloc(len - s + 1);
    if (!out) return NULL;
    bool start = true;
    size_t o = 0;
    for (size_t i = s; i < len; i++) {
        char c = dir[i] == '-' ? ' ' : dir[i];
        out[o++] = start && islower((unsigned char)c) ? (char)toupper((unsigned char)c) : c;
        start = c == ' ';
    }
    out[o] = 0;
    return out;
}

int smelt_lora_to_gguf(const smelt_peft *p, const smelt_hf *base, const char *out_path,
                       const smelt_lora_gguf_opts *o, smelt_lora_gguf_report *rep, const smelt_progress *prog,
                       smelt_err *e)
{
    smelt_lora_gguf_opts dflt;
    smelt_lora_gguf_opts_default(&dflt);
    if (!o) o = &dflt;
    smelt_lora_gguf_report rloc;
    if (!rep) rep = &rloc;
    memset(rep, 0, sizeof *rep);
    const char *ad = smelt_peft_dir(p);
    json_t *cfg = smelt_hf_config(base);
    json_t *arch = json_array_get(json_object_get(cfg, "architectures"), 0);
    json_t *mt = json_object_get(cfg, "model_type");
    const char *an = json_is_string(arch) ? json_string_value(arch) : "";
    const char *mts = json_is_string(mt) ? json_string_value(mt) : "";
    if (strcmp(an, "LlamaForCausalLM") && strcmp(an, "MistralForCausalLM") && strcmp(an, "MixtralForCausalLM") &&
        strcmp(mts, "llama") && strcmp(mts, "mistral") && strcmp(mts, "mixtral"))
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, smelt_hf_dir(base), "architectures",
                         "LoRA adapter GGUF: architecture \"%s\" (model_type \"%s\") is not supported (Llama, "
                         "Mistral and Mixtral are)",
                         an, mts);
    if (o->out_type != SMELT_TYPE_F32 && o->out_type != SMELT_TYPE_F16 && o->out_type != SMELT_TYPE_BF16)
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "adapter tensor type must be f32, f16 or bf16");
    int n_head = (int)cfg_int(cfg, "num_attention_heads", 0), n_kv = (int)cfg_int(cfg, "num_key_value_heads", n_head);
    int64_t n_expert = cfg_int(cfg, "num_local_experts", 0);
    json_t *tie = json_object_get(cfg, "tie_word_embeddings");
    bool tied = json_is_true(tie);
    if (smelt_peft_use_dora(p))
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, ad, "use_dora", "DoRA adapters%s", unsupported_tail);
    const smelt_tsrc *bs = smelt_hf_tensors(base);
    size_t nm = smelt_peft_n_modules(p);
    const smelt_peft_module **mods = calloc(nm + 1, sizeof *mods);
    group *groups = NULL;
    size_t ng = 0;
    plan pl = {0};
    int rc = 0;
    char gname[200], hf[1024];
    if (!mods) return SMELT_NOMEM(e, "adapter plan");
    for (size_t i = 0; i < nm; i++) mods[i] = smelt_peft_module_at(p, i);
    qsort(mods, nm, sizeof *mods, cmp_mod);
    bool baked = smelt_peft_use_rslora(p);
    for (size_t i = 0; i < nm && !rc; i++) {
        const smelt_peft_module *m = mods[i];
        const char *aname = smelt_tsrc_info(smelt_peft_tensors(p), (uint64_t)m->a)->name;
        if (m->b_bias >= 0) {
            rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, ad, aname, "lora_B biases (lora_bias=true)%s", unsupported_tail);
            break;
        }
        snprintf(hf, sizeof hf, "%s.weight", m->name);
        int64_t bi = smelt_tsrc_find(bs, hf);
        int x;
        if (bi < 0 || !m->targeted || !smelt_lora_gguf_name(hf, gname, sizeof gname, &x)) {
            rc = SMELT_ERR(e, SMELT_EMISMATCH, ad, aname, "%s",
                           bi < 0 ? "LoRA pair for a module the base model does not have"
                           : !m->targeted ? "LoRA pair for a module that adapter_config.json does not target"
                                          : "no GGUF tensor corresponds to this module");
            break;
        }
        const smelt_tinfo *bt = smelt_tsrc_info(bs, (uint64_t)bi);
        if (bt->n_dims != 2 || bt->shape[0] != m->rows || bt->shape[1] != m->cols) {
            rc = SMELT_ERR(e, SMELT_EMISMATCH, ad, aname,
                           "the pair gives a [%" PRIu64 ", %" PRIu64 "] delta but base '%s' is not that shape "
                           "(wrong base model?)",
                           m->rows, m->cols, hf);
            break;
        }
        if (m->alpha != smelt_peft_alpha(p)) baked = true;
        if (m->kind == SMELT_PEFT_EMBEDDING && tied) {
            rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, ad, aname,
                           "embedding LoRA on a model with tied embeddings (llama.cpp would apply it to the output "
                           "projection as well)%s",
                           unsupported_tail);
            break;
        }
        if (x >= 0) {
            if (x >= n_expert) {
                rc = SMELT_ERR(e, SMELT_EMISMATCH, ad, aname, "expert %d but the base has num_local_experts = %" PRId64,
                               x, n_expert);
                break;
            }
            size_t gi = 0;
            while (gi < ng && strcmp(groups[gi].gguf, gname)) gi++;
            if (gi == ng) {
                group *ngp = realloc(groups, (ng + 1) * sizeof *ngp);
                if (!ngp) {
                    rc = SMELT_NOMEM(e, "adapter plan");
                    break;
                }
                groups = ngp;
                memset(&groups[ng], 0, sizeof groups[ng]);
                snprintf(groups[ng].gguf, sizeof groups[ng].gguf, "%s", gname);
                groups[ng].slots = calloc((size_t)n_expert, sizeof *groups[ng].slots);
                groups[ng].n = (uint64_t)n_expert;
                if (!groups[ng].slots) {
                    rc = SMELT_NOMEM(e, "adapter plan");
                    break;
                }
                ng++;
            }
            groups[gi].slots[x] = m;
            groups[gi].last = i;
        }
    }
    /* experts of one layer: same rank and all present, or bake the scaling and pad */
    for (size_t gi = 0; gi < ng && !rc; gi++) {
        uint64_t r0 = 0;
        for (uint64_t x = 0; x < groups[gi].n; x++) {
            const smelt_peft_module *m = groups[gi].slots[x];
            if (!m) continue;
            if (r0 && m->r != r0) baked = true;
            if (m->r > r0) r0 = m->r;
        }
    }
    /* full replacements */
    size_t nf = smelt_peft_n_full(p);
    if (!rc && nf && !o->full_delta) {
        const smelt_peft_full *f = smelt_peft_full_at(p, 0);
        rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, ad, f->target,
                       "the adapter replaces %zu tensor(s) outright (%s), which llama.cpp's LoRA format has no place "
                       "for; merge instead (smelt-merge --gguf OUT.gguf), or allow full-rank delta pairs",
                       nf, f->why);
    }
    if (nf) baked = true;
    rep->baked = baked;
    rep->alpha = baked ? 0.0f : (float)smelt_peft_alpha(p);
    /* the tensor list, in llama.cpp's converter order: modules by name, an expert group when
     * its last member is reached; then the full-rank pairs */
    for (size_t i = 0; i < nm && !rc; i++) {
        const smelt_peft_module *m = mods[i];
        int x;
        snprintf(hf, sizeof hf, "%s.weight", m->name);
        smelt_lora_gguf_name(hf, gname, sizeof gname, &x);
        int perm = 0;
        if (strstr(gname, ".attn_q.")) perm = n_head;
        if (strstr(gname, ".attn_k.")) perm = n_kv != n_head ? n_kv : n_head;
        gt *a, *b;
        if (x >= 0) {
            size_t gi = 0;
            while (strcmp(groups[gi].gguf, gname)) gi++;
            if (groups[gi].last != i) continue;
            uint64_t rmax = 0, in = 0, out = 0;
            for (uint64_t k = 0; k < groups[gi].n; k++)
                if (groups[gi].slots[k]) {
                    const smelt_peft_module *q = groups[gi].slots[k];
                    if (q->r > rmax) rmax = q->r;
                    in = q->cols;
                    out = q->rows;
                }
            if (!(a = plan_add(&pl, e)) || !(b = plan_add(&pl, e))) {
                rc = SMELT_ENOMEM;
                break;
            }
            const smelt_peft_module **slots = groups[gi].slots;
            groups[gi].slots = NULL; /* the plan owns it now */
            *a = (gt){.ne = {in, rmax, groups[gi].n}, .nd = 3, .type = o->out_type, .kind = K_STACK_A, .exp = slots,
                      .n_exp = groups[gi].n, .r_max = rmax, .base_idx = -1, .rep_idx = -1};
            *b = (gt){.ne = {rmax, out, groups[gi].n}, .nd = 3, .type = o->out_type, .kind = K_STACK_B, .exp = slots,
                      .n_exp = groups[gi].n, .r_max = rmax, .base_idx = -1, .rep_idx = -1};
            for (uint64_t k = 0; k < groups[gi].n; k++) rep->modules += slots[k] != NULL;
        } else {
            if (!(a = plan_add(&pl, e)) || !(b = plan_add(&pl, e))) {
                rc = SMELT_ENOMEM;
                break;
            }
            bool emb = m->kind == SMELT_PEFT_EMBEDDING;
            *a = (gt){.ne = {emb ? m->r : m->cols, emb ? m->rows : m->r}, .nd = 2, .type = o->out_type,
                      .kind = emb ? K_EMB_A : K_A, .mod = m, .base_idx = -1, .rep_idx = -1};
            *b = (gt){.ne = {m->r, emb ? m->cols : m->rows}, .nd = 2, .type = o->out_type, .kind = emb ? K_EMB_B : K_B,
                      .mod = m, .permute_heads = perm, .base_idx = -1, .rep_idx = -1};
            rep->modules++;
        }
        snprintf(a->name, sizeof a->name, "%s.lora_a", gname);
        snprintf(b->name, sizeof b->name, "%s.lora_b", gname);
        rep->pairs++;
    }
    for (size_t k = 0; k < nf && !rc; k++) {
        const smelt_peft_full *f = smelt_peft_full_at(p, k);
        const smelt_tinfo *ft = smelt_tsrc_info(smelt_peft_tensors(p), (uint64_t)f->tensor);
        int64_t bi = smelt_tsrc_find(bs, f->target);
        int x;
        if (bi < 0) {
            rc = SMELT_ERR(e, SMELT_EMISMATCH, ad, ft->name, "replaces '%s', which the base model does not have", f->target);
            break;
        }
        const smelt_tinfo *bt = smelt_tsrc_info(bs, (uint64_t)bi);
        if (!smelt_lora_gguf_name(f->target, gname, sizeof gname, &x) || x >= 0 || bt->n_dims != 2 ||
            strstr(gname, "norm")) {
            rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, ad, ft->name, "a replaced %s tensor ('%s', %s)%s",
                           bt->n_dims == 1 ? "1-D (bias or norm)" : "non-LoRA", f->target, f->why, unsupported_tail);
            break;
        }
        if (ft->n_dims != 2 || ft->shape[0] != bt->shape[0] || ft->shape[1] != bt->shape[1]) {
            rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, ad, ft->name,
                           "'%s' changes shape from [%" PRIu64 ", %" PRIu64 "] to [%" PRIu64 ", %" PRIu64
                           "] (vocabulary resize): a runtime adapter cannot resize the base model%s",
                           f->target, bt->shape[0], bt->shape[1], ft->shape[0], ft->n_dims > 1 ? ft->shape[1] : 0,
                           unsupported_tail);
            break;
        }
        bool embd = !strcmp(gname, "token_embd.weight");
        if (tied && (embd || !strcmp(gname, "output.weight"))) {
            rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, ad, ft->name,
                           "the model ties its embeddings, so llama.cpp would apply a token_embd adapter to the "
                           "output projection too%s",
                           unsupported_tail);
            break;
        }
        int perm = strstr(gname, ".attn_q.") ? n_head : strstr(gname, ".attn_k.") ? (n_kv != n_head ? n_kv : n_head) : 0;
        uint64_t rows = bt->shape[0], cols = bt->shape[1];
        gt *a = plan_add(&pl, e), *b = a ? plan_add(&pl, e) : NULL;
        if (!b) {
            rc = SMELT_ENOMEM;
            break;
        }
        if (embd) { /* lora_a = D [vocab rows of dim], lora_b = I [dim x dim] */
            *a = (gt){.ne = {cols, rows}, .nd = 2, .type = SMELT_TYPE_F32, .kind = K_DELTA, .base_idx = bi,
                      .rep_idx = f->tensor};
            *b = (gt){.ne = {cols, cols}, .nd = 2, .type = SMELT_TYPE_F32, .kind = K_IDENT, .base_idx = -1, .rep_idx = -1};
        } else { /* lora_a = I [in x in], lora_b = D [out rows of in] */
            *a = (gt){.ne = {cols, cols}, .nd = 2, .type = SMELT_TYPE_F32, .kind = K_IDENT, .base_idx = -1, .rep_idx = -1};
            *b = (gt){.ne = {cols, rows}, .nd = 2, .type = SMELT_TYPE_F32, .kind = K_DELTA, .permute_heads = perm,
                      .base_idx = bi, .rep_idx = f->tensor};
        }
        snprintf(a->name, sizeof a->name, "%s.lora_a", gname);
        snprintf(b->name, sizeof b->name, "%s.lora_b", gname);
        rep->pairs++;
        rep->full_pairs++;
        rep->full_bytes += (a->ne[0] * a->ne[1] + b->ne[0] * b->ne[1]) * 4;
    }
    smelt_gguf_writer *w = NULL;
    sink s = {0};
    if (!rc && pl.n == 0) rc = SMELT_ERR(e, SMELT_EFORMAT, ad, NULL, "the adapter has nothing to write");
    if (!rc && !(w = smelt_gguf_writer_new())) rc = SMELT_NOMEM(e, "GGUF writer");
    char *name = NULL;
    if (!rc) {
        name = o->name ? strdup(o->name) : title_case(ad);
        if (!name) rc = SMELT_NOMEM(e, "name");
    }
    if (!rc) rc = smelt_gguf_writer_set_str(w, "general.architecture", "llama", e);
    if (!rc) rc = smelt_gguf_writer_set_str(w, "general.type", "adapter", e);
    if (!rc) rc = smelt_gguf_writer_set_str(w, "adapter.type", "lora", e);
    if (!rc) rc = smelt_gguf_writer_set_str(w, "general.name", name, e);
    if (!rc && o->out_type != SMELT_TYPE_F32)
        rc = smelt_gguf_writer_set_u32(w, "general.file_type", o->out_type == SMELT_TYPE_F16 ? 1u : 32u, e);
    if (!rc) rc = smelt_gguf_writer_set_f32(w, "adapter.lora.alpha", rep->alpha, e);
    if (!rc) rc = smelt_gguf_writer_set_u32(w, "general.quantization_version", 2, e);
    for (size_t i = 0; i < pl.n && !rc; i++) rc = smelt_gguf_writer_add_tensor(w, pl.t[i].name, pl.t[i].nd, pl.t[i].ne, pl.t[i].type, e);
    if (!rc) rc = smelt_gguf_writer_begin(w, out_path, e);
    s.w = w;
    s.path = out_path;
    s.allow_nonfinite = o->allow_nonfinite;
    for (size_t i = 0; i < pl.n && !rc; i++) {
        s.name = pl.t[i].name;
        s.pos = s.nonfinite = 0;
        rc = write_tensor(&pl.t[i], p, base, baked, &s, e);
        if (s.nonfinite) {
            rep->nonfinite += s.nonfinite;
            rep->nonfinite_tensors++;
        }
        smelt_progress_step(prog, i + 1, pl.n, s.bytes, pl.t[i].name);
    }
    if (!rc) rc = smelt_gguf_writer_commit(w, e);
    rep->bytes = s.bytes;
    smelt_gguf_writer_free(w);
    free(s.buf);
    free(name);
    for (size_t gi = 0; gi < ng; gi++) free((void *)groups[gi].slots);
    free(groups);
    plan_free(&pl);
    free(mods);
    return rc;
}
