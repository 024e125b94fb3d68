/* merge.c — the merge plan (which adapter tensors act on which base tensor, with every
 * check done up front) and the merged model as a tensor source computed in row blocks.
 * Includes formats/, convert/merge_int.h (reference GEMM order). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "merge.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "formats/base/cpu.h"
#include "formats/base/finite.h"
#include "formats/base/half.h"
#include "formats/base/names.h"
#include "formats/base/pool.h"
#include "merge_int.h"

/* ==== plan ==== */

typedef enum { OP_DELTA, OP_DORA, OP_BIAS } op_kind;

typedef struct {
    op_kind kind;
    const smelt_peft *peft;
    const smelt_peft_module *mod;
    float scale;   /* fl32(scaling * weight) */
    bool transposed; /* Embedding, or Conv1D-style fan_in_fan_out: delta row = column of B @ A */
    /* BLAS problem of torch.mm(B, A): M = A's columns, N = B's rows, K = r */
    long M, N, K;
} op;

typedef struct {
    uint64_t base;            /* index in the base source */
    const smelt_peft *rep;    /* replacement source (NULL: start from the base tensor) */
    int64_t rep_tensor;
    op *ops;
    size_t n_ops;
    smelt_tinfo info;         /* output info (name borrowed from the base) */
    uint64_t rows, cols;      /* output as a matrix (1-D: one row) */
    bool changed;
    uint64_t nonfinite;       /* NaN/±Inf in the output (set on each read; allow_nonfinite only) */
} tplan;

struct smelt_merge {
    const smelt_tsrc *base;
    smelt_merge_adapter *ads;
    size_t n_ads;
    smelt_merge_opts o;
    tplan *t;
    uint64_t n;
    smelt_merge_report rep;
    smelt_tsrc src;
    smelt_pool *pool;
    smelt_scratch base_scratch, rep_scratch;
    atomic_uint_fast64_t f16_over;
};

void smelt_merge_opts_default(smelt_merge_opts *o)
{
    memset(o, 0, sizeof *o);
    o->out_dtype = -1;
    o->isa = -1;
}

static int rep_addf(char ***arr, size_t *n, smelt_err *e, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int rep_addf(char ***arr, size_t *n, smelt_err *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int len = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (len < 0) return SMELT_NOMEM(e, "report");
    char **na = realloc(*arr, (*n + 1) * sizeof *na);
    if (!na) {
        free(s);
        return SMELT_NOMEM(e, "report");
    }
    na[(*n)++] = s;
    *arr = na;
    return 0;
}

#define WARN(m, e, ...) rep_addf(&(m)->rep.warnings, &(m)->rep.n_warnings, (e), __VA_ARGS__)

static int count_kind(smelt_merge *m, const char *kind, smelt_err *e)
{
    for (size_t i = 0; i < m->rep.n_kinds; i++)
        if (!strcmp(m->rep.pairs[i].kind, kind)) {
            m->rep.pairs[i].n++;
            return 0;
        }
    smelt_merge_count *nk = realloc(m->rep.pairs, (m->rep.n_kinds + 1) * sizeof *nk);
    if (!nk) return SMELT_NOMEM(e, "report");
    m->rep.pairs = nk;
    nk[m->rep.n_kinds].kind = strdup(kind);
    nk[m->rep.n_kinds].n = 1;
    if (!nk[m->rep.n_kinds].kind) return SMELT_NOMEM(e, "report");
    m->rep.n_kinds++;
    return 0;
}

static const char *shape_str(char *buf, size_t n, const uint64_t *shape, uint32_t nd)
{
    size_t o = (size_t)snprintf(buf, n, "[");
    for (uint32_t i = 0; i < nd && o < n; i++) o += (size_t)snprintf(buf + o, n - o, i ? ", %" PRIu64 : "%" PRIu64, shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

static int add_op(tplan *t, op o, smelt_err *e)
{
    op *no = realloc(t->ops, (t->n_ops + 1) * sizeof *no);
    if (!no) return SMELT_NOMEM(e, "merge plan");
    t->ops = no;
    t->ops[t->n_ops++] = o;
    return 0;
}

static bool is_conv1d_model(json_t *cfg)
{
    json_t *mt = cfg ? json_object_get(cfg, "model_type") : NULL;
    const char *s = json_is_string(mt) ? json_string_value(mt) : "";
    return !strcmp(s, "gpt2") || !strcmp(s, "openai-gpt");
}

static bool ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

/* Was this adapter (by hash) recorded as merged in the base's config.json? */
static bool already_merged(json_t *cfg, const char *hash)
{
    json_t *rec = cfg ? json_object_get(cfg, "smelt_merge") : NULL;
    json_t *ads = rec ? json_object_get(rec, "adapters") : NULL;
    size_t i;
    json_t *a;
    json_array_foreach(ads, i, a) {
        json_t *h = json_object_get(a, "xxh64");
        if (json_is_string(h) && !strcmp(json_string_value(h), hash)) return true;
    }
    return false;
}

static const char *basename_of(const char *p, char *buf, size_t n)
{
    size_t len = strlen(p);
    while (len > 1 && p[len - 1] == '/') len--;
    size_t s = len;
    while (s > 0 && p[s - 1] != '/') s--;
    snprintf(buf, n, "%.*s", (int)(len - s), p + s);
    return buf;
}

static int check_base_name(smelt_merge *m, const smelt_peft *p, smelt_err *e)
{
    const char *want = smelt_peft_base_name(p);
    if (!*want || !m->o.base_dir) return 0;
    char a[512], b[512];
    basename_of(want, a, sizeof a);
    basename_of(m->o.base_dir, b, sizeof b);
    json_t *np = m->o.base_config ? json_object_get(m->o.base_config, "_name_or_path") : NULL;
    const char *cfg_name = json_is_string(np) ? json_string_value(np) : NULL;
    char c[512] = "";
    if (cfg_name) basename_of(cfg_name, c, sizeof c);
    if (!strcasecmp(a, b) || (cfg_name && (!strcmp(want, cfg_name) || !strcasecmp(a, c)))) return 0;
    return WARN(m, e,
                "%s: adapter_config.json names base_model_name_or_path \"%s\" but the base is %s%s%s%s: the "
                "tensor shapes fit, check it is the right base",
                smelt_peft_dir(p), want, m->o.base_dir, cfg_name ? " (_name_or_path \"" : "", cfg_name ? cfg_name : "",
                cfg_name ? "\")" : "");
}

static int plan_adapter(smelt_merge *m, size_t ai, smelt_err *e)
{
    const smelt_peft *p = m->ads[ai].peft;
    double w = m->ads[ai].weight;
    const smelt_tsrc *as = smelt_peft_tensors(p);
    const char *W = smelt_peft_weights_path(p);
    size_t matched = 0, total = smelt_peft_n_modules(p) + smelt_peft_n_full(p);
    char s1[128], s2[128], nm[1024];
    int rc;
    if (!isfinite(w))
        return SMELT_ERR(e, SMELT_EUSAGE, smelt_peft_dir(p), NULL, "the adapter weight must be a finite number, not %g", w);
    if (!m->o.force && already_merged(m->o.base_config, smelt_peft_hash(p)))
        return SMELT_ERR(e, SMELT_EMISMATCH, smelt_peft_dir(p), NULL,
                         "this adapter (xxh64 %s) is already merged into the base: its config.json records it under "
                         "\"smelt_merge\"; use --force to merge it again",
                         smelt_peft_hash(p));
    if ((rc = check_base_name(m, p, e))) return rc;
    /* replacements first: a LoRA of the same adapter applies on top of them */
    char full_list[512] = "";
    bool full_mts = true;
    for (size_t k = 0; k < smelt_peft_n_full(p); k++) {
        const smelt_peft_full *f = smelt_peft_full_at(p, k);
        const smelt_tinfo *ft = smelt_tsrc_info(as, (uint64_t)f->tensor);
        int64_t bi = smelt_tsrc_find(m->base, f->target);
        if (bi < 0) {
            if (!m->o.allow_unused)
                return SMELT_ERR(e, SMELT_EMISMATCH, W, ft->name,
                                 "adapter tensor (%s) replaces '%s', which the base model does not have "
                                 "(--allow-unused skips it)",
                                 f->why, f->target);
            if ((rc = rep_addf(&m->rep.unused, &m->rep.n_unused, e, "%s (%s: no '%s' in the base)", ft->name, f->why,
                               f->target)))
                return rc;
            continue;
        }
        matched++;
        tplan *t = &m->t[bi];
        const smelt_tinfo *bt = smelt_tsrc_info(m->base, (uint64_t)bi);
        if (!smelt_dtype_is_float(ft->dtype) || !smelt_dtype_is_float(bt->dtype))
            return SMELT_ERR(e, SMELT_EUNSUPPORTED, W, ft->name, "replacement of '%s' is %s over %s: only float tensors "
                             "can be replaced", f->target, smelt_dtype_name(ft->dtype), smelt_dtype_name(bt->dtype));
        bool same = ft->n_dims == bt->n_dims;
        for (uint32_t d = 0; same && d < ft->n_dims; d++)
            if (ft->shape[d] != bt->shape[d] && d != 0) same = false;
        if (!same)
            return SMELT_ERR(e, SMELT_EMISMATCH, W, ft->name, "replacement %s does not fit base '%s' %s",
                             shape_str(s1, sizeof s1, ft->shape, ft->n_dims), f->target,
                             shape_str(s2, sizeof s2, bt->shape, bt->n_dims));
        free(t->ops); /* a replacement discards earlier changes to the tensor */
        t->ops = NULL;
        t->n_ops = 0;
        t->rep = p;
        t->rep_tensor = f->tensor;
        t->info.n_dims = ft->n_dims;
        memcpy(t->info.shape, ft->shape, sizeof t->info.shape);
        t->info.nelements = ft->nelements;
        if (ft->dtype != bt->dtype && m->o.out_dtype < 0 &&
            (rc = WARN(m, e, "%s: %s is %s, written as %s like the base tensor (as PEFT loads it)", smelt_peft_dir(p),
                       ft->name, smelt_dtype_name(ft->dtype), smelt_dtype_name(bt->dtype))))
            return rc;
        if ((rc = rep_addf(&m->rep.replaced, &m->rep.n_replaced, e, "%s (%s)", f->target, f->why))) return rc;
        if (w != 1.0) {
            size_t u = strlen(full_list);
            snprintf(full_list + u, sizeof full_list - u, "%s%s", u ? ", " : "", f->target);
            if (strcmp(f->why, "modules_to_save")) full_mts = false;
        }
    }
    /* PEFT loads replacement tensors as they are; an adapter weight scales the LoRA pairs only */
    if (full_list[0] &&
        (rc = WARN(m, e, "%s: %s tensors (%s) replace the base at full weight; the weight %g scales only the LoRA pairs "
                         "(as PEFT does)",
                   smelt_peft_dir(p), full_mts ? "modules_to_save" : "replacement", full_list, w)))
        return rc;
    for (size_t k = 0; k < smelt_peft_n_modules(p); k++) {
        const smelt_peft_module *mod = smelt_peft_module_at(p, k);
        const smelt_tinfo *A = smelt_tsrc_info(as, (uint64_t)mod->a);
        snprintf(nm, sizeof nm, "%s.weight", mod->name);
        int64_t bi = smelt_tsrc_find(m->base, nm);
        if (bi < 0 || !mod->targeted) {
            if (!m->o.allow_unused)
                return SMELT_ERR(e, SMELT_EMISMATCH, W, A->name, "%s (--allow-unused skips it)",
                                 bi < 0 ? "LoRA pair for a module the base model does not have"
                                        : "LoRA pair for a module that adapter_config.json does not target (PEFT would "
                                          "not load it)");
            if ((rc = rep_addf(&m->rep.unused, &m->rep.n_unused, e, "%s (%s)", A->name,
                               bi < 0 ? "no such module in the base" : "not targeted by the config")))
                return rc;
            continue;
        }
        matched++;
        tplan *t = &m->t[bi];
        const smelt_tinfo *bt = smelt_tsrc_info(m->base, (uint64_t)bi);
        uint64_t rows = t->info.shape[0], cols = t->info.n_dims > 1 ? t->info.shape[1] : 0;
        bool transposed = mod->kind == SMELT_PEFT_EMBEDDING;
        bool ok = t->info.n_dims == 2 && rows == mod->rows && cols == mod->cols;
        if (mod->kind == SMELT_PEFT_LINEAR && smelt_peft_fan_in_fan_out(p) && t->info.n_dims == 2) {
            bool conv_shape = rows == mod->cols && cols == mod->rows;
            if (conv_shape && (!ok || is_conv1d_model(m->o.base_config))) {
                transposed = true;
                ok = true;
            } else if (ok && (rc = WARN(m, e, "%s: fan_in_fan_out is set but '%s' is an nn.Linear weight [out, in]; "
                                        "PEFT resets it to false, so does smelt", smelt_peft_dir(p), nm))) {
                return rc;
            }
        }
        if (!ok) {
            uint64_t dshape[2] = {mod->rows, mod->cols};
            const smelt_tinfo *B = smelt_tsrc_info(as, (uint64_t)mod->b);
            char sa[96], sb[96];
            return SMELT_ERR(e, SMELT_EMISMATCH, W, A->name,
                             "%s %s and %s %s give a %s delta, but the base tensor '%s' is %s (wrong base model?)",
                             mod->kind == SMELT_PEFT_LINEAR ? "lora_A" : "lora_embedding_A",
                             shape_str(sa, sizeof sa, A->shape, A->n_dims),
                             mod->kind == SMELT_PEFT_LINEAR ? "lora_B" : "lora_embedding_B",
                             shape_str(sb, sizeof sb, B->shape, B->n_dims), shape_str(s1, sizeof s1, dshape, 2), nm,
                             shape_str(s2, sizeof s2, t->info.shape, t->info.n_dims));
        }
        if (!smelt_dtype_is_float(bt->dtype))
            return SMELT_ERR(e, SMELT_EUNSUPPORTED, W, A->name, "base tensor '%s' is %s, not a float weight", nm,
                             smelt_dtype_name(bt->dtype));
        op o = {.kind = mod->magnitude >= 0 ? OP_DORA : OP_DELTA,
                .peft = p,
                .mod = mod,
                .scale = (float)(mod->scaling * w),
                .transposed = transposed};
        o.K = (long)mod->r;
        if (mod->kind == SMELT_PEFT_EMBEDDING) {
            o.M = (long)mod->rows; /* A [r, vocab] */
            o.N = (long)mod->cols; /* B [dim, r] */
        } else {
            o.M = (long)mod->cols; /* A [r, in] */
            o.N = (long)mod->rows; /* B [out, r] */
        }
        if ((rc = add_op(t, o, e)) || (rc = count_kind(m, mod->kind_name, e))) return rc;
        m->rep.pairs_total++;
        if (o.kind == OP_DORA) m->rep.dora_total++;
        if (mod->b_bias >= 0) {
            snprintf(nm, sizeof nm, "%s.bias", mod->name);
            int64_t bb = smelt_tsrc_find(m->base, nm);
            if (bb < 0)
                return SMELT_ERR(e, SMELT_EMISMATCH, W, smelt_tsrc_info(as, (uint64_t)mod->b_bias)->name,
                                 "lora_B.bias needs the base bias '%s', which does not exist (PEFT: \"Impossible to "
                                 "merge LoRA with lora_bias=True because the base layer has no bias\")",
                                 nm);
            op ob = o;
            ob.kind = OP_BIAS;
            if ((rc = add_op(&m->t[bb], ob, e))) return rc;
            m->rep.bias_total++;
        }
    }
    if (matched == 0 && total > 0)
        return SMELT_ERR(e, SMELT_EMISMATCH, smelt_peft_dir(p), NULL,
                         "none of the adapter's %zu modules/tensors exist in the base model (first: '%s'): is it for a "
                         "different architecture?",
                         total,
                         smelt_peft_n_modules(p) ? smelt_peft_module_at(p, 0)->name : smelt_peft_full_at(p, 0)->target);
    /* config targets that have no weights in the adapter */
    uint64_t missing = 0;
    const char *first = NULL;
    for (uint64_t i = 0; i < m->n; i++) {
        const smelt_tinfo *bt = smelt_tsrc_info(m->base, i);
        if (bt->n_dims != 2 || !ends_with(bt->name, ".weight")) continue;
        size_t l = strlen(bt->name) - strlen(".weight");
        if (l >= sizeof nm) continue;
        memcpy(nm, bt->name, l);
        nm[l] = 0;
        const char *last = strrchr(nm, '.');
        last = last ? last + 1 : nm;
        int flags = (strstr(last, "embed") || !strcmp(last, "wte") ? SMELT_PEFT_EMBEDDING_LAYER : 0) |
                    (!strcmp(last, "lm_head") ? SMELT_PEFT_OUTPUT_LAYER : 0);
        if (!smelt_peft_targets(p, nm, flags)) continue;
        bool have = false;
        for (size_t k = 0; k < smelt_peft_n_modules(p) && !have; k++) have = !strcmp(smelt_peft_module_at(p, k)->name, nm);
        if (!have) {
            if (!missing) first = bt->name;
            missing++;
        }
    }
    if (missing && (rc = WARN(m, e, "%s: adapter_config.json targets %" PRIu64 " module(s) that have no weights in the "
                              "adapter (first: %s); they are left unchanged",
                              smelt_peft_dir(p), missing, first)))
        return rc;
    return 0;
}

static int check_vocab(smelt_merge *m, smelt_err *e)
{
    int64_t ie = -1, io = -1;
    for (uint64_t i = 0; i < m->n; i++) {
        const char *n = smelt_tsrc_info(m->base, i)->name;
        if (ends_with(n, "embed_tokens.weight") && ie < 0) ie = (int64_t)i;
        if (!strcmp(n, "lm_head.weight")) io = (int64_t)i;
    }
    m->rep.vocab_old = m->rep.vocab_new = -1;
    if (ie < 0) return 0;
    uint64_t old = smelt_tsrc_info(m->base, (uint64_t)ie)->shape[0];
    uint64_t nv = m->t[ie].info.shape[0];
    for (uint64_t i = 0; i < m->n; i++) {
        const smelt_tinfo *bt = smelt_tsrc_info(m->base, i);
        if (m->t[i].info.shape[0] != bt->shape[0] && (int64_t)i != ie && (int64_t)i != io)
            return SMELT_ERR(e, SMELT_EMISMATCH, NULL, bt->name,
                             "an adapter replacement changes the first dimension from %" PRIu64 " to %" PRIu64
                             "; only embed_tokens / lm_head may change (vocabulary resize)",
                             bt->shape[0], m->t[i].info.shape[0]);
    }
    if (io >= 0) {
        uint64_t ov = m->t[io].info.shape[0];
        if (ov != nv)
            return SMELT_ERR(e, SMELT_EMISMATCH, NULL, "lm_head.weight",
                             "vocabulary sizes disagree after the merge: embed_tokens has %" PRIu64
                             " rows, lm_head %" PRIu64 "%s",
                             nv, ov, m->t[io].rep ? "" : " (the adapter resized the embeddings but does not replace "
                                                        "lm_head, whose new rows PEFT users would have initialised)");
    }
    if (nv != old) {
        m->rep.vocab_old = (int64_t)old;
        m->rep.vocab_new = (int64_t)nv;
    }
    return 0;
}

static size_t dtsize(smelt_dtype d) { return smelt_dtype_size(d); }

/* ==== computing a tensor ==== */

typedef struct {
    float *A, *B, *mag, *bb; /* adapter factors as f32 (borrowed buffers) */
} factors;

/* NaN/±Inf met by one row-block task: in the values it started from (base or replacement
 * tensor) and in the merged values it produced. first is a flat index in the tensor. */
typedef struct {
    uint64_t in_n, in_first, out_n, out_first;
    float in_v, out_v;
} nf_stat;

typedef struct {
    smelt_merge *m;
    tplan *t;
    nf_stat *nf;            /* per task of the main pass */
    const uint8_t *base_data, *rep_data;
    smelt_dtype base_dt, rep_dt;
    factors *f;             /* per op */
    double **colnorm;       /* per op: column norms for transposed DoRA (NULL otherwise) */
    uint8_t *out;
    uint64_t rows_per;      /* rows per task */
    size_t n_threads;
    float **work;           /* per thread: rows_per*cols state + cols scratch + K gather */
    /* pre-pass */
    size_t upto;            /* ops [0, upto) applied, then column sums of squares for op upto */
    double *partial;        /* n_part x cols */
    uint64_t part_rows;
    int failed;
} job;

static void load_rows(job *j, uint64_t r0, uint64_t nr, float *dst)
{
    tplan *t = j->t;
    uint64_t cols = t->cols, nel = nr * cols;
    const uint8_t *src = t->rep ? j->rep_data : j->base_data;
    smelt_dtype dt = t->rep ? j->rep_dt : j->base_dt;
    smelt_dtype_to_f32(dt, src + r0 * cols * dtsize(dt), dst, (size_t)nel);
}

/* Delta of op o for rows [r0, r0+nr) added into W (nr x cols), then DoRA if asked. */
static void apply_op(job *j, size_t oi, uint64_t r0, uint64_t nr, float *W, float *tmp, float *gather, bool delta_only)
{
    const op *o = &j->t->ops[oi];
    const factors *f = &j->f[oi];
    uint64_t cols = j->t->cols;
    long K = o->K;
    if (o->kind == OP_BIAS) {
        for (uint64_t c = 0; c < cols; c++) {
            float d = f->bb[c] * o->scale;
            W[c] = W[c] + d;
        }
        return;
    }
    for (uint64_t r = 0; r < nr; r++) {
        float *w = W + r * cols;
        uint64_t row = r0 + r;
        if (!o->transposed) {
            smelt_gemm_col(f->A, (size_t)o->M, f->B + row * (uint64_t)K, o->M, o->N, K, (long)row, 0, o->M, tmp,
                           j->m->o.isa);
        } else {
            for (long k = 0; k < K; k++) gather[k] = f->A[(uint64_t)k * (uint64_t)o->M + row];
            for (uint64_t c = 0; c < cols; c++)
                tmp[c] = smelt_gemm_dot(gather, f->B + c * (uint64_t)K, o->M, o->N, K, (long)row, (long)c);
        }
        for (uint64_t c = 0; c < cols; c++) {
            float d = tmp[c] * o->scale;
            w[c] = w[c] + d;
        }
        if (o->kind != OP_DORA || delta_only) continue;
        if (!o->transposed) {
            double ss = 0;
            for (uint64_t c = 0; c < cols; c++) ss += (double)w[c] * (double)w[c];
            float norm = (float)sqrt(ss);
            float fac = f->mag[row] / norm;
            for (uint64_t c = 0; c < cols; c++) w[c] = fac * w[c];
        } else if (j->colnorm[oi]) {
            const double *cn = j->colnorm[oi];
            for (uint64_t c = 0; c < cols; c++) {
                float norm = (float)cn[c];
                float fac = f->mag[c] / norm;
                w[c] = fac * w[c];
            }
        }
    }
}

/* Count (and locate the first of) the NaN/±Inf among the n values of a task's rows. */
static uint64_t nf_scan(const float *W, uint64_t n, uint64_t at, uint64_t *first, float *v)
{
    uint64_t c = smelt_nonfinite_f32(W, n);
    if (c) {
        double x;
        uint64_t k = smelt_nonfinite_first(SMELT_FIN_F32, W, n, &x);
        *first = at + k;
        *v = (float)x;
    }
    return c;
}

static void task_rows(job *j, uint64_t r0, uint64_t nr, size_t n_ops, int thread, nf_stat *st)
{
    uint64_t cols = j->t->cols;
    float *W = j->work[thread];
    float *tmp = W + j->rows_per * cols;
    float *gather = tmp + cols;
    load_rows(j, r0, nr, W);
    st->in_n = nf_scan(W, nr * cols, r0 * cols, &st->in_first, &st->in_v);
    for (size_t oi = 0; oi < n_ops; oi++) apply_op(j, oi, r0, nr, W, tmp, gather, false);
    st->out_n = nf_scan(W, nr * cols, r0 * cols, &st->out_first, &st->out_v);
}

static void task_main(void *ctx, size_t task, int thread)
{
    job *j = ctx;
    uint64_t r0 = task * j->rows_per, nr = j->t->rows - r0 < j->rows_per ? j->t->rows - r0 : j->rows_per;
    task_rows(j, r0, nr, j->t->n_ops, thread, &j->nf[task]);
    float *W = j->work[thread];
    uint64_t nel = nr * j->t->cols;
    smelt_dtype od = j->t->info.dtype;
    uint8_t *dst = j->out + r0 * j->t->cols * dtsize(od);
    if (od == SMELT_DT_F32) memcpy(dst, W, nel * 4);
    else if (od == SMELT_DT_BF16) smelt_row_f32_to_bf16(W, (uint16_t *)dst, (size_t)nel);
    else {
        size_t over = smelt_row_f32_to_f16(W, (uint16_t *)dst, (size_t)nel, SMELT_F16_OVERFLOW_INF);
        if (over) atomic_fetch_add(&j->m->f16_over, over);
    }
}

/* Pre-pass for a column-norm DoRA op: partial sums of squares of (state after ops < upto,
 * plus this op's delta) per fixed row partition. */
static void task_colsum(void *ctx, size_t part, int thread)
{
    job *j = ctx;
    uint64_t cols = j->t->cols;
    double *acc = j->partial + part * cols;
    memset(acc, 0, cols * sizeof *acc);
    uint64_t lo = part * j->part_rows, hi = lo + j->part_rows < j->t->rows ? lo + j->part_rows : j->t->rows;
    for (uint64_t r0 = lo; r0 < hi; r0 += j->rows_per) {
        uint64_t nr = hi - r0 < j->rows_per ? hi - r0 : j->rows_per;
        /* state through ops [0, upto] where op upto contributes only its delta */
        float *W = j->work[thread];
        float *tmp = W + j->rows_per * cols;
        float *gather = tmp + cols;
        load_rows(j, r0, nr, W);
        for (size_t oi = 0; oi < j->upto; oi++) apply_op(j, oi, r0, nr, W, tmp, gather, false);
        apply_op(j, j->upto, r0, nr, W, tmp, gather, true);
        for (uint64_t r = 0; r < nr; r++)
            for (uint64_t c = 0; c < cols; c++) acc[c] += (double)W[r * cols + c] * (double)W[r * cols + c];
    }
}

static void free_factors(factors *f, size_t n)
{
    for (size_t i = 0; f && i < n; i++) {
        free(f[i].A);
        free(f[i].B);
        free(f[i].mag);
        free(f[i].bb);
    }
    free(f);
}

/* An adapter factor as a new f32 array. */
static int load_f32(const smelt_peft *p, int64_t ti, float **out, smelt_err *e)
{
    return smelt_tsrc_load_f32(smelt_peft_tensors(p), (uint64_t)ti, out, e);
}

static int fin_fmt(smelt_dtype d)
{
    switch (d) {
    case SMELT_DT_F32: return SMELT_FIN_F32;
    case SMELT_DT_F16: return SMELT_FIN_F16;
    case SMELT_DT_BF16: return SMELT_FIN_BF16;
    case SMELT_DT_F64: return SMELT_FIN_F64;
    case SMELT_DT_F8_E4M3: return SMELT_FIN_F8_E4M3;
    case SMELT_DT_F8_E5M2: return SMELT_FIN_F8_E5M2;
    default: return -1;
    }
}

static void set_nonfinite(smelt_merge *m, tplan *t, uint64_t n)
{
    m->rep.nonfinite = m->rep.nonfinite - t->nonfinite + n;
    if (t->nonfinite && !n) m->rep.nonfinite_tensors--;
    if (!t->nonfinite && n) m->rep.nonfinite_tensors++;
    t->nonfinite = n;
}

/* An adapter factor (lora_A, lora_B, magnitude, lora_B.bias) holding NaN/±Inf. */
static int check_factor(const smelt_merge *m, const op *o, int64_t ti, const float *v, smelt_err *e)
{
    if (m->o.allow_nonfinite || !v || ti < 0) return 0;
    const smelt_tinfo *t = smelt_tsrc_info(smelt_peft_tensors(o->peft), (uint64_t)ti);
    double x;
    uint64_t k = smelt_nonfinite_first(SMELT_FIN_F32, v, t->nelements, &x);
    if (k == t->nelements) return 0;
    return SMELT_ERR_NONFINITE(e, smelt_peft_weights_path(o->peft), t->name, NULL, k, x, NULL);
}

static int compute_tensor(smelt_merge *m, tplan *t, uint8_t *out, smelt_err *e)
{
    job j = {0};
    j.m = m;
    j.t = t;
    j.out = out;
    int rc = 0;
    const void *bd = NULL, *rd = NULL;
    const smelt_tinfo *bt = smelt_tsrc_info(m->base, t->base);
    j.base_dt = bt->dtype;
    if (!t->rep || t->n_ops) { /* base bytes are needed unless a replacement stands alone */
        if ((rc = smelt_tsrc_read(m->base, t->base, &bd, &m->base_scratch, e))) return rc;
    }
    if (t->rep) {
        const smelt_tsrc *rs = smelt_peft_tensors(t->rep);
        j.rep_dt = smelt_tsrc_info(rs, (uint64_t)t->rep_tensor)->dtype;
        if ((rc = smelt_tsrc_read(rs, (uint64_t)t->rep_tensor, &rd, &m->rep_scratch, e))) return rc;
    }
    j.base_data = bd;
    j.rep_data = rd;
    j.f = calloc(t->n_ops + 1, sizeof *j.f);
    j.colnorm = calloc(t->n_ops + 1, sizeof *j.colnorm);
    j.n_threads = (size_t)smelt_pool_threads(m->pool);
    j.work = calloc(j.n_threads, sizeof *j.work);
    if (!j.f || !j.colnorm || !j.work) {
        rc = SMELT_NOMEM(e, "merge buffers");
        goto done;
    }
    long maxk = 1;
    for (size_t oi = 0; oi < t->n_ops && !rc; oi++) {
        const op *o = &t->ops[oi];
        if (o->K > maxk) maxk = o->K;
        if (o->kind == OP_BIAS) {
            rc = load_f32(o->peft, o->mod->b_bias, &j.f[oi].bb, e);
            continue;
        }
        if (!rc) rc = load_f32(o->peft, o->mod->a, &j.f[oi].A, e);
        if (!rc) rc = load_f32(o->peft, o->mod->b, &j.f[oi].B, e);
        if (!rc && o->kind == OP_DORA) rc = load_f32(o->peft, o->mod->magnitude, &j.f[oi].mag, e);
    }
    for (size_t oi = 0; oi < t->n_ops && !rc; oi++) {
        const op *o = &t->ops[oi];
        if (o->kind == OP_BIAS) {
            rc = check_factor(m, o, o->mod->b_bias, j.f[oi].bb, e);
            continue;
        }
        if (!rc) rc = check_factor(m, o, o->mod->a, j.f[oi].A, e);
        if (!rc) rc = check_factor(m, o, o->mod->b, j.f[oi].B, e);
        if (!rc && o->kind == OP_DORA) rc = check_factor(m, o, o->mod->magnitude, j.f[oi].mag, e);
    }
    if (rc) goto done;
    uint64_t cols = t->cols ? t->cols : 1;
    j.rows_per = 16384 / cols ? 16384 / cols : 1;
    for (size_t th = 0; th < j.n_threads; th++) {
        j.work[th] = malloc(((size_t)(j.rows_per * cols) + (size_t)cols + (size_t)maxk) * sizeof(float));
        if (!j.work[th]) {
            rc = SMELT_NOMEM(e, "merge buffers");
            goto done;
        }
    }
    /* column-norm DoRA ops: one pre-pass each, over a fixed partition of the rows */
    for (size_t oi = 0; oi < t->n_ops; oi++) {
        if (t->ops[oi].kind != OP_DORA || !t->ops[oi].transposed) continue;
        size_t nparts = 64;
        j.part_rows = (t->rows + nparts - 1) / nparts;
        if (!j.part_rows) j.part_rows = 1;
        nparts = (size_t)((t->rows + j.part_rows - 1) / j.part_rows);
        j.partial = malloc(nparts * (size_t)cols * sizeof(double));
        j.colnorm[oi] = calloc((size_t)cols, sizeof(double));
        if (!j.partial || !j.colnorm[oi]) {
            rc = SMELT_NOMEM(e, "DoRA norms");
            goto done;
        }
        j.upto = oi;
        smelt_pool_run(m->pool, nparts, task_colsum, &j);
        for (size_t p = 0; p < nparts; p++)
            for (uint64_t c = 0; c < cols; c++) j.colnorm[oi][c] += j.partial[p * cols + c];
        for (uint64_t c = 0; c < cols; c++) j.colnorm[oi][c] = (double)(float)sqrt(j.colnorm[oi][c]);
        free(j.partial);
        j.partial = NULL;
    }
    size_t ntasks = (size_t)((t->rows + j.rows_per - 1) / j.rows_per);
    if (!(j.nf = calloc(ntasks + 1, sizeof *j.nf))) {
        rc = SMELT_NOMEM(e, "merge buffers");
        goto done;
    }
    smelt_pool_run(m->pool, ntasks, task_main, &j);
    /* tasks cover the rows in order: the first task that met one holds the first index */
    const nf_stat *in = NULL, *res = NULL;
    uint64_t n_out = 0;
    for (size_t k = 0; k < ntasks; k++) {
        if (j.nf[k].in_n && !in) in = &j.nf[k];
        if (j.nf[k].out_n && !res) res = &j.nf[k];
        n_out += j.nf[k].out_n;
    }
    if (m->o.allow_nonfinite || (!in && !res)) {
        set_nonfinite(m, t, n_out);
        goto done;
    }
    if (in && t->rep) {
        const smelt_tinfo *rt = smelt_tsrc_info(smelt_peft_tensors(t->rep), (uint64_t)t->rep_tensor);
        rc = SMELT_ERR_NONFINITE(e, smelt_peft_weights_path(t->rep), rt->name, NULL, in->in_first, in->in_v, NULL);
    } else if (in) {
        rc = SMELT_ERR_NONFINITE(e, bt->file ? bt->file : "base", bt->name, NULL, in->in_first, in->in_v, NULL);
    } else {
        rc = SMELT_ERR_NONFINITE(e, bt->file ? bt->file : "base", bt->name, "merged value", res->out_first, res->out_v,
                                 " although the base and adapter values are finite (the weighted LoRA delta, or DoRA's "
                                 "scaling, overflows f32)");
    }
done:
    free(j.nf);
    free(j.partial);
    free_factors(j.f, t->n_ops);
    for (size_t oi = 0; j.colnorm && oi < t->n_ops; oi++) free(j.colnorm[oi]);
    free(j.colnorm);
    for (size_t th = 0; j.work && th < j.n_threads; th++) free(j.work[th]);
    free(j.work);
    if (t->rep) smelt_tsrc_release(smelt_peft_tensors(t->rep), (uint64_t)t->rep_tensor);
    return rc;
}

/* ==== the merged tensor source ==== */

static uint64_t ms_count(void *self) { return ((smelt_merge *)self)->n; }

static const smelt_tinfo *ms_info(void *self, uint64_t i)
{
    smelt_merge *m = self;
    return i < m->n ? &m->t[i].info : NULL;
}

static int64_t ms_find(void *self, const char *name) { return smelt_tsrc_find(((smelt_merge *)self)->base, name); }

static int ms_read(void *self, uint64_t i, const void **data, smelt_scratch *sc, smelt_err *e)
{
    smelt_merge *m = self;
    if (i >= m->n) return SMELT_ERR(e, SMELT_EINTERNAL, NULL, NULL, "tensor index out of range");
    tplan *t = &m->t[i];
    if (!t->changed) {
        int rc = smelt_tsrc_read(m->base, t->base, data, sc, e);
        int fmt = fin_fmt(t->info.dtype);
        if (rc || fmt < 0) return rc;
        uint64_t nf = smelt_nonfinite_count((smelt_fin_fmt)fmt, *data, t->info.nelements);
        if (!nf || m->o.allow_nonfinite) {
            set_nonfinite(m, t, nf);
            return 0;
        }
        double v;
        uint64_t k = smelt_nonfinite_first((smelt_fin_fmt)fmt, *data, t->info.nelements, &v);
        smelt_tsrc_release(m->base, t->base);
        return SMELT_ERR_NONFINITE(e, t->info.file ? t->info.file : "base", t->info.name, NULL, k, v, NULL);
    }
    void *out = smelt_scratch_get(sc, t->info.nbytes ? (size_t)t->info.nbytes : 1);
    if (!out) return SMELT_NOMEM(e, t->info.name);
    int rc = compute_tensor(m, t, out, e);
    if (rc) {
        if (!smelt_err_is_nonfinite(e)) smelt_err_prefix(e, "while merging %s", t->info.name);
        return rc;
    }
    m->rep.f16_overflow = atomic_load(&m->f16_over);
    *data = out;
    return 0;
}

static void ms_release(void *self, uint64_t i)
{
    smelt_merge *m = self;
    if (i < m->n) smelt_tsrc_release(m->base, m->t[i].base);
}

static void ms_close(void *self) { (void)self; /* owned by smelt_merge_close() */ }

static const smelt_tsrc_vt ms_vt = {ms_count, ms_info, ms_find, ms_read, ms_release, ms_close};

/* ==== open / close ==== */

int smelt_merge_open(smelt_merge **out, const smelt_tsrc *base, const smelt_merge_adapter *ads, size_t n,
                     const smelt_merge_opts *o, smelt_err *e)
{
    *out = NULL;
    smelt_merge *m = calloc(1, sizeof *m);
    if (!m) return SMELT_NOMEM(e, "merge");
    int rc = 0;
    m->base = base;
    if (o) m->o = *o;
    else smelt_merge_opts_default(&m->o);
    m->o.isa = smelt_cpu_isa(m->o.isa);
    if (m->o.out_dtype >= 0 && m->o.out_dtype != SMELT_DT_F32 && m->o.out_dtype != SMELT_DT_F16 &&
        m->o.out_dtype != SMELT_DT_BF16) {
        rc = SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "output dtype must be F32, F16 or BF16");
        goto fail;
    }
    m->n_ads = n;
    m->ads = calloc(n + 1, sizeof *m->ads);
    m->n = smelt_tsrc_count(base);
    m->t = calloc(m->n + 1, sizeof *m->t);
    if (!m->ads || !m->t) {
        rc = SMELT_NOMEM(e, "merge plan");
        goto fail;
    }
    memcpy(m->ads, ads, n * sizeof *ads);
    for (uint64_t i = 0; i < m->n; i++) {
        const smelt_tinfo *bt = smelt_tsrc_info(base, i);
        m->t[i].base = i;
        m->t[i].info = *bt;
    }
    for (size_t a = 0; a < n; a++)
        if ((rc = plan_adapter(m, a, e))) goto fail;
    if ((rc = check_vocab(m, e))) goto fail;
    /* output dtypes and sizes */
    uint64_t counts[SMELT_DT_COUNT] = {0};
    for (uint64_t i = 0; i < m->n; i++) {
        tplan *t = &m->t[i];
        const smelt_tinfo *bt = smelt_tsrc_info(base, i);
        if (smelt_dtype_is_float(bt->dtype)) counts[bt->dtype]++;
        smelt_dtype od = bt->dtype;
        if (smelt_dtype_is_float(bt->dtype) && m->o.out_dtype >= 0) od = (smelt_dtype)m->o.out_dtype;
        bool touched = t->rep || t->n_ops;
        if (touched && od != SMELT_DT_F32 && od != SMELT_DT_F16 && od != SMELT_DT_BF16) {
            rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, bt->file, bt->name,
                           "merged tensors are written as F32, F16 or BF16; the base tensor is %s (use --dtype)",
                           smelt_dtype_name(od));
            goto fail;
        }
        t->info.dtype = od;
        t->rows = t->info.n_dims >= 1 ? t->info.shape[0] : 1;
        t->cols = 1;
        for (uint32_t d = 1; d < t->info.n_dims; d++) t->cols *= t->info.shape[d];
        if (t->info.n_dims == 1) {
            t->rows = 1;
            t->cols = t->info.shape[0];
        }
        if (t->info.n_dims == 0) t->rows = t->cols = 1;
        t->info.nbytes = t->info.nelements * smelt_dtype_size(od);
        t->changed = touched || od != bt->dtype;
        m->rep.tensors_total++;
        if (t->changed) m->rep.tensors_changed++;
    }
    int kinds = 0;
    for (int d = 0; d < SMELT_DT_COUNT; d++) kinds += counts[d] > 0;
    if (kinds > 1 && m->o.out_dtype < 0) {
        char buf[256];
        size_t off = 0;
        for (int d = 0; d < SMELT_DT_COUNT && off < sizeof buf; d++)
            if (counts[d])
                off += (size_t)snprintf(buf + off, sizeof buf - off, "%s%s: %" PRIu64, off ? ", " : "",
                                        smelt_dtype_name((smelt_dtype)d), counts[d]);
        if ((rc = WARN(m, e, "the base mixes float dtypes (%s); each tensor keeps its own (use --dtype for one)", buf)))
            goto fail;
    }
    m->pool = smelt_pool_new(m->o.n_threads);
    if (!m->pool) {
        rc = SMELT_NOMEM(e, "thread pool");
        goto fail;
    }
    m->src.vt = &ms_vt;
    m->src.self = m;
    *out = m;
    return 0;
fail:
    smelt_merge_close(m);
    return rc;
}

void smelt_merge_close(smelt_merge *m)
{
    if (!m) return;
    for (uint64_t i = 0; m->t && i < m->n; i++) free(m->t[i].ops);
    free(m->t);
    free(m->ads);
    smelt_pool_free(m->pool);
    smelt_scratch_free(&m->base_scratch);
    smelt_scratch_free(&m->rep_scratch);
    smelt_merge_report *r = &m->rep;
    for (size_t i = 0; i < r->n_kinds; i++) free(r->pairs[i].kind);
    free(r->pairs);
    for (size_t i = 0; i < r->n_replaced; i++) free(r->replaced[i]);
    free(r->replaced);
    for (size_t i = 0; i < r->n_unused; i++) free(r->unused[i]);
    free(r->unused);
    for (size_t i = 0; i < r->n_warnings; i++) free(r->warnings[i]);
    free(r->warnings);
    free(m);
}

const smelt_tsrc *smelt_merge_source(smelt_merge *m) { return &m->src; }
const smelt_merge_report *smelt_merge_get_report(const smelt_merge *m) { return &m->rep; }
const smelt_tsrc *smelt_merge_base(const smelt_merge *m) { return m->base; }
bool smelt_merge_changed(const smelt_merge *m, uint64_t i) { return i < m->n && m->t[i].changed; }
