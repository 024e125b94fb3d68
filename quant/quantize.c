/* quantize.c — smelt_quantize_run(): open the input (and its shards), read the imatrix,
 * plan every tensor's type with policy.c, check everything that can fail, then stream:
 * per tensor, row slabs are decoded to f32, quantized over the thread pool and appended
 * to the (atomic) GGUF writer. Includes formats/ and quant/ only. */
#include "quantize.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "formats/base/ckd.h"
#include "formats/base/file.h"
#include "formats/base/finite.h"
#include "formats/base/guard.h"
#include "formats/base/names.h"
#include "formats/base/pool.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"
#include "formats/imatrix.h"
#include "formats/model_check.h"
#include "quant/qtypes.h"

#define QUANT_VERSION 2            /* general.quantization_version of ggml's block formats */
#define MAX_SHARDS 9999
#define SLAB_ELEMS (16u << 20)     /* values encoded per write (the output slab) */
#define COPY_CHUNK (16u << 20)     /* bytes per write when a tensor is copied as is */
#define MAX_LISTED 5               /* names quoted in a summary warning */

#define K_SPLIT_NO SMELT_GGUF_SPLIT_NO
#define K_SPLIT_COUNT SMELT_GGUF_SPLIT_COUNT
#define K_SPLIT_TENSORS SMELT_GGUF_SPLIT_TENSORS

/* ==== small helpers ==== */

void smelt_quantize_opts_default(smelt_quantize_opts *o)
{
    memset(o, 0, sizeof *o);
    o->ftype = "Q8_0";
    o->output_tensor_type = -1;
    o->token_embedding_type = -1;
}

int smelt_kv_override_parse(const char *spec, smelt_kv_override *out, smelt_err *e)
{
    memset(out, 0, sizeof *out);
    const char *eq = strchr(spec, '=');
    if (!eq || eq == spec || (size_t)(eq - spec) >= sizeof out->key)
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL,
                         "--override-kv '%s': expected KEY=TYPE:VALUE with a key of 1..127 bytes", spec);
    memcpy(out->key, spec, (size_t)(eq - spec));
    const char *v = eq + 1;
    char *end;
    if (!strncmp(v, "int:", 4)) {
        long long x = strtoll(v + 4, &end, 10);
        if (end == v + 4 || *end || llabs(x) > (long long)UINT32_MAX)
            return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "--override-kv '%s': '%s' is not an integer of at most 32 bits",
                             spec, v + 4);
        out->vtype = SMELT_GGUF_U32; /* llama-quantize stores |value| as u32 */
        out->u32 = (uint32_t)llabs(x);
    } else if (!strncmp(v, "float:", 6)) {
        double x = strtod(v + 6, &end);
        if (end == v + 6 || *end)
            return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "--override-kv '%s': '%s' is not a number", spec, v + 6);
        out->vtype = SMELT_GGUF_F32;
        out->f32 = (float)x;
    } else if (!strncmp(v, "bool:", 5)) {
        if (strcmp(v + 5, "true") && strcmp(v + 5, "false"))
            return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "--override-kv '%s': bool value must be true or false", spec);
        out->vtype = SMELT_GGUF_BOOL;
        out->b = !strcmp(v + 5, "true");
    } else if (!strncmp(v, "str:", 4)) {
        if (strlen(v + 4) >= sizeof out->str)
            return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "--override-kv '%s': string value longer than 127 bytes", spec);
        out->vtype = SMELT_GGUF_STRING;
        strcpy(out->str, v + 4);
    } else {
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "--override-kv '%s': type must be int, float, bool or str", spec);
    }
    return 0;
}

/* ==== inputs ==== */

typedef struct in_tensor {
    const smelt_gguf_tensor *t;
    uint16_t shard;
    uint64_t index; /* in the model's tensor list (what a source's read_rows takes) */
} in_tensor;

typedef struct inputs {
    smelt_gguf **g;
    uint16_t n;
    char **paths;
    in_tensor *t;
    size_t nt;
    const smelt_quantize_source *src; /* the model is this source (g[0] is its metadata, borrowed) */
} inputs;

static void inputs_close(inputs *in)
{
    if (in->g && !in->src) smelt_gguf_close(in->g[0]); /* closes the other shards too */
    free(in->g);
    free(in->paths);
    free(in->t);
    memset(in, 0, sizeof *in);
}

/* The model: its first file (and the other shards of a split model, which the reader finds
 * and checks), with the tensors of all shards. */
static int open_inputs(const char *path, unsigned flags, const smelt_quantize_source *src, inputs *in, smelt_err *e)
{
    memset(in, 0, sizeof *in);
    smelt_gguf *g0;
    int rc = 0;
    if (src) {
        g0 = (smelt_gguf *)src->meta;
        in->src = src;
        if (smelt_gguf_n_shards(g0) != 1)
            return SMELT_ERR(e, SMELT_EINTERNAL, path, NULL, "a model source is one file");
    } else if ((rc = smelt_gguf_open(path, flags, &g0, e))) {
        return rc;
    }
    uint16_t count = smelt_gguf_n_shards(g0);
    in->g = calloc(count, sizeof *in->g);
    in->paths = calloc(count, sizeof *in->paths);
    if (!in->g || !in->paths) {
        if (!src) smelt_gguf_close(g0);
        free(in->g);
        free(in->paths);
        return SMELT_NOMEM(e, "shard list");
    }
    in->n = count;
    for (uint16_t i = 0; i < count; i++) {
        in->g[i] = (smelt_gguf *)smelt_gguf_shard(g0, i);
        in->paths[i] = (char *)(src ? path : smelt_gguf_path(in->g[i]));
    }
    size_t total = smelt_gguf_n_tensors(g0);
    in->t = calloc(total ? total : 1, sizeof *in->t);
    if (!in->t) return SMELT_NOMEM(e, "tensor list");
    for (uint64_t j = 0; j < total; j++) {
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g0, j);
        in->t[in->nt++] = (in_tensor){t, t->shard, j};
    }
    return 0;
}

/* Model hyperparameters the mix rules need, from the first shard's metadata. */
static int read_model(const smelt_gguf *g, smelt_policy_model *m, smelt_err *e)
{
    memset(m, 0, sizeof *m);
    smelt_str arch;
    int rc = smelt_gguf_get_str(g, "general.architecture", &arch, e);
    if (rc) return rc;
    char a[64], key[160];
    snprintf(a, sizeof a, "%.*s", (int)(arch.n < 63 ? arch.n : 63), arch.p);
    if (!strcmp(a, "falcon"))
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, smelt_gguf_path(g), "general.architecture",
                         "falcon has its own mix rules, which smelt does not implement");
    snprintf(key, sizeof key, "%s.block_count", a);
    if ((rc = smelt_gguf_get_u32(g, key, &m->n_layer, e))) return rc;
    const char *hk[2] = {"attention.head_count", "attention.head_count_kv"};
    uint32_t *dst[2] = {&m->n_head, &m->n_head_kv};
    for (int i = 0; i < 2; i++) {
        snprintf(key, sizeof key, "%s.%s", a, hk[i]);
        const smelt_gguf_kv *kv = smelt_gguf_get_kv(g, key);
        if (!kv) {
            *dst[i] = i ? m->n_head : 0; /* head_count_kv defaults to head_count */
            continue;
        }
        if (kv->type == SMELT_GGUF_ARRAY) { /* per-layer counts: the rules read layer 0 */
            if (!kv->n || kv->arr_type == SMELT_GGUF_STRING || kv->arr_type == SMELT_GGUF_ARRAY)
                return SMELT_ERR(e, SMELT_EFORMAT, smelt_gguf_path(g), key, "expected an integer or integer array");
            *dst[i] = (uint32_t)smelt_gguf_kv_uint(kv, 0);
        } else if ((rc = smelt_gguf_get_u32(g, key, dst[i], e))) {
            return rc;
        }
    }
    snprintf(key, sizeof key, "%s.expert_count", a);
    if (smelt_gguf_find_kv(g, key) >= 0 && (rc = smelt_gguf_get_u32(g, key, &m->n_expert, e))) return rc;
    m->is_70b = !strcmp(a, "llama") && m->n_layer == 80 && m->n_head != m->n_head_kv;
    return 0;
}

/* ==== the importance matrix ==== */

typedef struct imx_set {
    smelt_imx *m;
    bool *keep; /* per entry, after --include/--exclude-weights */
    size_t n_keep;
} imx_set;

static bool name_has_any(const char *name, const char *const *subs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strstr(name, subs[i])) return true;
    return false;
}

static int load_imatrix(const smelt_quantize_opts *o, imx_set *s, smelt_err *e)
{
    memset(s, 0, sizeof *s);
    int rc = smelt_imx_read(o->imatrix, &s->m, e);
    if (rc) return rc;
    if (s->m->format == SMELT_IMX_GGUF && !s->m->has_metadata)
        return SMELT_ERR(e, SMELT_EFORMAT, o->imatrix, NULL,
                         "GGUF imatrix without its metadata (imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size)");
    s->keep = calloc(s->m->n_entries, sizeof *s->keep);
    if (!s->keep) return SMELT_NOMEM(e, "imatrix filter");
    for (size_t i = 0; i < s->m->n_entries; i++) {
        const char *nm = s->m->entries[i].name;
        bool k = !name_has_any(nm, o->exclude_weights, o->n_exclude);
        if (o->n_include) k = k && name_has_any(nm, o->include_weights, o->n_include);
        s->keep[i] = k;
        s->n_keep += k;
    }
    return 0;
}

static const smelt_imx_entry *imx_lookup(const imx_set *s, const char *name)
{
    if (!s->m || !s->n_keep) return NULL;
    const smelt_imx_entry *en = smelt_imx_find(s->m, name);
    return en && s->keep[en - s->m->entries] ? en : NULL;
}

/* ==== the plan ==== */

typedef struct job {
    const smelt_quantize_opts *o;
    const smelt_ftype_info *fi;
    inputs in;
    imx_set imx;
    smelt_qplan plan;
    size_t *order; /* plan index → in.t index */
    smelt_policy_tensor *pt;
    char budget_text[64]; /* smelt.quantize.plan.budget of a size-budget plan */
} job;

static int apply_replay(job *j, smelt_err *e);
static void set_chosen_file_type(smelt_qplan *p);
static int grow(void **p, size_t *cap, size_t need, size_t elem, smelt_err *e);
static int model_rows(const inputs *in, const in_tensor *it, uint64_t row0, uint64_t nrows, uint8_t **buf, size_t *cap,
                      const uint8_t **out, smelt_err *e);
static int set_metadata(job *j, smelt_gguf_writer *w, smelt_err *e);
static const smelt_qerr *error_model(const smelt_quantize_opts *o, int type, bool with_imatrix, const char *tensor);

static int cmp_llama(const void *a, const void *b, void *ctx)
{
    const inputs *in = ctx;
    const in_tensor *x = &in->t[*(const size_t *)a], *y = &in->t[*(const size_t *)b];
    return smelt_policy_cmp(x->t->name, y->t->name);
}

static int cmp_shard(const void *a, const void *b, void *ctx)
{
    const inputs *in = ctx;
    const in_tensor *x = &in->t[*(const size_t *)a], *y = &in->t[*(const size_t *)b];
    if (x->shard != y->shard) return x->shard < y->shard ? -1 : 1;
    return x->t->offset < y->t->offset ? -1 : x->t->offset > y->t->offset;
}

static uint32_t ggml_ndims(const uint64_t ne[4])
{
    uint32_t d = 4;
    while (d > 1 && ne[d - 1] == 1) d--;
    return d;
}

static void list_names(char *buf, size_t n, const char *const *names, size_t count)
{
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < count && i < MAX_LISTED && used < n; i++)
        used += (size_t)snprintf(buf + used, n - used, "%s'%s'", i ? ", " : "", names[i]);
    if (count > MAX_LISTED && used < n) snprintf(buf + used, n - used, ", … (%zu in all)", count);
}

static int build_plan(job *j, smelt_err *e)
{
    const smelt_quantize_opts *o = j->o;
    inputs *in = &j->in;
    size_t n = in->nt;
    j->order = malloc((n ? n : 1) * sizeof *j->order);
    j->pt = calloc(n ? n : 1, sizeof *j->pt);
    j->plan.t = calloc(n ? n : 1, sizeof *j->plan.t);
    if (!j->order || !j->pt || !j->plan.t) return SMELT_NOMEM(e, "plan");
    for (size_t i = 0; i < n; i++) j->order[i] = i;
    qsort_r(j->order, n, sizeof *j->order, o->keep_split ? cmp_shard : cmp_llama, in);

    smelt_policy_model model;
    int rc = read_model(in->g[0], &model, e);
    if (rc) return rc;
    /* a size-budget or replayed plan starts from the pure Q8_0 plan: it says which tensors are
     * kept as they are and which an option names; the types of the others are replaced */
    bool chosen = o->target || o->replay;
    smelt_policy_opts po = {j->fi->ftype, j->fi->copy, o->output_tensor_type, o->token_embedding_type, o->pure || chosen,
                            o->leave_output, j->imx.n_keep > 0, o->tensor_types, o->n_tensor_types};
    for (size_t i = 0; i < n; i++) {
        const smelt_gguf_tensor *t = in->t[j->order[i]].t;
        j->pt[i].name = t->name;
        memcpy(j->pt[i].ne, t->ne, sizeof t->ne);
        j->pt[i].type = t->type;
    }
    if ((rc = smelt_policy_plan(&model, &po, j->pt, n, e))) {
        if (!e->file[0]) snprintf(e->file, sizeof e->file, "%s", in->paths[0]);
        return rc;
    }
    if (o->replay && (rc = apply_replay(j, e))) return rc;

    smelt_qplan *p = &j->plan;
    p->input = in->paths[0];
    p->ftype_name = j->fi->alias_of ? j->fi->alias_of : j->fi->name;
    p->default_type = j->fi->default_type;
    p->n = n;
    p->n_shards_in = in->n;
    p->n_shards_out = o->keep_split ? in->n : 1;
    p->can_run = true;
    if (chosen) {
        p->ftype_name = o->replay ? "plan" : "target";
        p->file_type = 0; /* set_chosen_file_type(), once the types are known */
    } else if (j->fi->copy) {
        uint32_t ft;
        smelt_err tmp;
        if (smelt_gguf_find_kv(in->g[0], "general.file_type") >= 0 &&
            !smelt_gguf_get_u32(in->g[0], "general.file_type", &ft, &tmp)) {
            p->file_type = ft;
        } else {
            int *types = malloc((n ? n : 1) * sizeof *types);
            if (!types) return SMELT_NOMEM(e, "types");
            for (size_t i = 0; i < n; i++) types[i] = j->pt[i].type;
            p->file_type = (uint32_t)smelt_ftype_guess(types, n);
            free(types);
        }
    } else {
        p->file_type = (uint32_t)j->fi->ftype;
    }
    for (size_t i = 0; i < n; i++) {
        smelt_qplan_tensor *q = &p->t[i];
        const smelt_policy_tensor *s = &j->pt[i];
        const in_tensor *it = &in->t[j->order[i]];
        q->name = s->name;
        memcpy(q->ne, s->ne, sizeof q->ne);
        q->n_dims = ggml_ndims(q->ne);
        q->type = s->type;
        q->new_type = s->new_type;
        q->flags = s->flags;
        q->rule = s->rule;
        q->shard = it->shard;
        q->bytes = it->t->nbytes;
        uint64_t rows = q->ne[1] * q->ne[2] * q->ne[3], rb;
        if (smelt_type_row_bytes(q->new_type, q->ne[0], &rb, e) || !smelt_mul_u64(rb, rows, &q->new_bytes)) {
            snprintf(e->object, sizeof e->object, "%s", q->name);
            return e->code ? e->code : SMELT_EFORMAT;
        }
        p->bytes += q->bytes;
        p->new_bytes += q->new_bytes;
        p->n_elements += it->t->nelements;
        if (q->new_type != q->type) p->n_changed++;
        if (q->flags & SMELT_PT_FALLBACK) p->n_fallback++;
    }
    if (chosen) set_chosen_file_type(p);
    return 0;
}

/* Everything that can be known wrong before writing a byte. */
/* A token embedding table: rows are looked up, not multiplied, and llama-imatrix never
 * collects it. */
static bool is_token_embedding(const char *name)
{
    return !strcmp(name, "token_embd.weight") || !strcmp(name, "per_layer_token_embd.weight");
}

static int check_plan(job *j, smelt_err *e)
{
    const smelt_quantize_opts *o = j->o;
    smelt_qplan *p = &j->plan;
    const char *in0 = j->in.paths[0];
    const char **no_w = calloc(p->n ? p->n : 1, sizeof *no_w), **req = calloc(p->n ? p->n : 1, sizeof *req);
    size_t n_no_w = 0, n_req = 0, n_matched = 0, first_req = 0;
    const char *unsupported = NULL;
    const smelt_qplan_tensor *missing_imx = NULL; /* the first tensor that needs an imatrix and has none */
    int rc = 0;
    if (!no_w || !req) {
        rc = SMELT_NOMEM(e, "plan check");
        goto out;
    }
    for (size_t i = 0; i < p->n && !rc; i++) {
        smelt_qplan_tensor *q = &p->t[i];
        if (q->new_type == q->type) continue;
        bool is_tok = is_token_embedding(q->name);
        if (!smelt_q_can_dequantize(q->type)) {
            rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, j->in.paths[q->shard], q->name, "cannot convert tensors of type %s",
                           smelt_type_name(q->type));
            break;
        }
        if (smelt_type_is_quantized(q->type)) {
            if (!n_req) first_req = i;
            p->n_requant++;
            req[n_req++] = q->name;
        }
        if (!smelt_q_can_quantize(q->new_type)) {
            p->can_run = false;
            if (!unsupported) unsupported = q->name;
        }
        if (smelt_q_requires_imatrix(q->new_type) && !is_tok && strcmp(q->name, "output.weight"))
            q->flags |= SMELT_PT_NEEDS_IMX;
        const smelt_imx_entry *en = imx_lookup(&j->imx, q->name);
        if (en) {
            n_matched++;
            if (en->n_values != q->ne[0] * q->ne[2]) {
                if (!is_tok) {
                    rc = SMELT_ERR(e, SMELT_EMISMATCH, o->imatrix, q->name,
                                   "imatrix entry has %" PRIu64 " values (%" PRIu64 " matrices), the tensor in %s needs "
                                   "%" PRIu64 " (%" PRIu64 " columns x %" PRIu64 " experts)",
                                   en->n_values, en->n_mat, j->in.paths[q->shard], q->ne[0] * q->ne[2], q->ne[0], q->ne[2]);
                    break;
                }
                smelt_note(&o->notes, "imatrix entry for '%s' has %" PRIu64 " values, the tensor needs %" PRIu64 ": not used", q->name,
                      en->n_values, q->ne[0] * q->ne[2]);
            } else {
                q->imatrix = true;
                p->n_imatrix++;
            }
        } else if (j->imx.n_keep && smelt_type_is_quantized(q->new_type) && !is_tok && strcmp(q->name, "output.weight")) {
            no_w[n_no_w++] = q->name; /* llama-imatrix never collects token_embd, nor output by default */
        }
        if (q->flags & SMELT_PT_NEEDS_IMX) p->n_needs_imatrix++;
        if ((q->flags & SMELT_PT_NEEDS_IMX) && !q->imatrix && !missing_imx) missing_imx = q;
    }
    if (rc) goto out;
    /* a type smelt cannot write is said before what it would need */
    if (missing_imx && !o->dry_run && p->can_run) {
        if (j->imx.m)
            rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, in0, missing_imx->name,
                           "%s %s needs importance weights (the imatrix has no usable entry for it); quantizing it "
                           "without them gives garbage", p->ftype_name, smelt_type_name(missing_imx->new_type));
        else if (j->in.src) /* smelt-imatrix runs a GGUF file of the model */
            rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, in0, missing_imx->name,
                           "%s %s needs importance weights (pass --imatrix FILE; make one with: smelt-imatrix -m F16.gguf "
                           "-f CALIB.txt -o FILE, F16.gguf a float GGUF of %s); quantizing it without them gives garbage",
                           p->ftype_name, smelt_type_name(missing_imx->new_type), in0);
        else
            rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, in0, missing_imx->name,
                           "%s %s needs importance weights (pass --imatrix FILE; make one with: smelt-imatrix -m %s "
                           "-f CALIB.txt -o FILE); quantizing it without them gives garbage",
                           p->ftype_name, smelt_type_name(missing_imx->new_type), in0);
        goto out;
    }
    char names[600];
    if (j->imx.n_keep && !n_matched && p->n_changed) {
        rc = SMELT_ERR(e, SMELT_EMISMATCH, o->imatrix, NULL,
                       "no imatrix entry matches a tensor of %s (imatrix has e.g. '%s', the model e.g. '%s')", in0,
                       j->imx.m->entries[0].name, no_w[0] ? no_w[0] : p->t[0].name);
        goto out;
    }
    if (n_no_w) {
        list_names(names, sizeof names, no_w, n_no_w);
        smelt_note(&o->notes, "no importance weights for %zu tensor%s, quantized without: %s", n_no_w, n_no_w > 1 ? "s" : "", names);
    }
    if (n_req) {
        if (!o->allow_requantize && !o->dry_run) {
            const smelt_qplan_tensor *q = &p->t[first_req];
            rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, j->in.paths[q->shard], q->name,
                           "already quantized (%s → %s); requantizing loses quality, pass --allow-requantize to do it anyway",
                           smelt_type_name(q->type), smelt_type_name(q->new_type));
            goto out;
        }
        list_names(names, sizeof names, req, n_req);
        smelt_note(&o->notes, "requantizing %zu already-quantized tensor%s (quality is lower than quantizing from F16/F32): %s", n_req,
              n_req > 1 ? "s" : "", names);
    }
    if (p->n_needs_imatrix && o->dry_run && !p->n_imatrix)
        smelt_note(&o->notes, "%s: %zu tensor%s will need an importance matrix (--imatrix) when quantizing for real", p->ftype_name,
              p->n_needs_imatrix, p->n_needs_imatrix > 1 ? "s" : "");
    if (p->n_fallback)
        smelt_note(&o->notes, "%zu of %zu tensors have rows that do not fit the chosen block size and use a fallback type",
              p->n_fallback, p->n);
    if (!p->can_run) {
        const smelt_qplan_tensor *q = NULL;
        for (size_t i = 0; i < p->n && !q; i++)
            if (p->t[i].name == unsupported) q = &p->t[i];
        if (!o->dry_run) {
            rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, in0, unsupported, "smelt cannot quantize to %s yet (needed by %s)",
                           smelt_type_name(q->new_type), p->ftype_name);
            goto out;
        }
        smelt_note(&o->notes, "smelt cannot quantize to %s yet: this plan can only be shown", smelt_type_name(q->new_type));
    }
out:
    free(no_w);
    free(req);
    return rc;
}


/* ==== chosen plans: size budgets and replays ==== */

/* general.file_type of a chosen plan: the ftype llama.cpp would guess for a file of the new
 * type that holds the most elements among the tensors the plan changes (without the
 * guessed flag). */
static void set_chosen_file_type(smelt_qplan *p)
{
    uint64_t elements[SMELT_TYPE_COUNT] = {0};
    int best = SMELT_TYPE_F32;
    for (size_t i = 0; i < p->n; i++) {
        const smelt_qplan_tensor *q = &p->t[i];
        if (q->new_type == q->type || q->new_type < 0 || q->new_type >= SMELT_TYPE_COUNT) continue;
        elements[q->new_type] += q->ne[0] * q->ne[1] * q->ne[2] * q->ne[3];
        if (elements[q->new_type] > elements[best] || (elements[q->new_type] == elements[best] && q->new_type < best))
            best = q->new_type;
    }
    p->file_type = (uint32_t)smelt_ftype_guess(&best, 1) & ~(uint32_t)SMELT_FTYPE_GUESSED;
}

/* Bytes and totals after new types were chosen. */
static int recount(job *j, smelt_err *e)
{
    smelt_qplan *p = &j->plan;
    p->new_bytes = 0;
    p->n_changed = 0;
    for (size_t i = 0; i < p->n; i++) {
        smelt_qplan_tensor *q = &p->t[i];
        uint64_t rb;
        if (smelt_type_row_bytes(q->new_type, q->ne[0], &rb, e)) return SMELT_EINTERNAL;
        q->new_bytes = rb * q->ne[1] * q->ne[2] * q->ne[3];
        p->new_bytes += q->new_bytes;
        p->n_changed += q->new_type != q->type;
    }
    set_chosen_file_type(p);
    return 0;
}

static bool block_divides(int type, uint64_t row_len)
{
    const smelt_type_info *ti = smelt_type_get(type);
    return ti && ti->blck && row_len % ti->blck == 0;
}

/* --plan: every tensor that is not kept as it is gets the plan's type. */
static int apply_replay(job *j, smelt_err *e)
{
    const smelt_quantize_opts *o = j->o;
    const char *pf = o->plan_file ? o->plan_file : "the plan";
    size_t n = j->in.nt;
    bool *seen = calloc(n ? n : 1, sizeof *seen);
    int rc = 0;
    if (!seen) return SMELT_NOMEM(e, "plan");
    for (size_t k = 0; k < o->n_replay && !rc; k++) {
        const smelt_plan_entry *pe = &o->replay[k];
        size_t i = 0;
        while (i < n && strcmp(j->pt[i].name, pe->tensor)) i++;
        smelt_policy_tensor *t = &j->pt[i];
        if (i == n)
            rc = SMELT_ERR(e, SMELT_EMISMATCH, pf, pe->tensor, "the plan names a tensor that %s does not have", j->in.paths[0]);
        else if (seen[i])
            rc = SMELT_ERR(e, SMELT_EFORMAT, pf, pe->tensor, "the plan gives this tensor a type twice");
        else if (!smelt_type_valid(pe->type))
            rc = SMELT_ERR(e, SMELT_EFORMAT, pf, pe->tensor, "not a ggml type id: %d", pe->type);
        else if ((t->flags & SMELT_PT_KEPT) && pe->type != t->type)
            rc = SMELT_ERR(e, SMELT_EMISMATCH, pf, pe->tensor,
                           "this tensor is kept as it is (%s) in every plan; the plan gives it %s", smelt_type_name(t->type),
                           smelt_type_name(pe->type));
        else if (!block_divides(pe->type, t->ne[0]))
            rc = SMELT_ERR(e, SMELT_EMISMATCH, pf, pe->tensor,
                           "%s has blocks of %u values; the tensor's rows have %" PRIu64 " (a multiple is needed)",
                           smelt_type_name(pe->type), smelt_type_get(pe->type)->blck, t->ne[0]);
        if (rc) break;
        seen[i] = true;
        if (t->flags & SMELT_PT_KEPT) continue;
        t->new_type = pe->type;
        t->flags &= ~(unsigned)(SMELT_PT_FALLBACK | SMELT_PT_MIX | SMELT_PT_MANUAL);
        t->rule = "plan";
    }
    for (size_t i = 0; i < n && !rc; i++)
        if (!seen[i] && !(j->pt[i].flags & SMELT_PT_KEPT))
            rc = SMELT_ERR(e, SMELT_EMISMATCH, pf, j->pt[i].name, "the plan has no type for this tensor of %s",
                           j->in.paths[0]);
    free(seen);
    if (!rc) {
        j->plan.plan_method = o->replay_method ? o->replay_method : "plan";
        j->plan.plan_budget = o->replay_budget ? o->replay_budget : "";
    }
    return rc;
}

/* Size of the single-file output of the plan as it stands (with a split: of all files). */
static int layout_size(job *j, bool split, uint64_t *bytes, uint16_t *n_files, smelt_err *e)
{
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    if (!w) return SMELT_NOMEM(e, "writer");
    int rc = set_metadata(j, w, e);
    if (!rc && split) smelt_gguf_writer_set_split(w, j->o->split_max_bytes, j->o->split_max_tensors);
    for (size_t i = 0; i < j->plan.n && !rc; i++)
        rc = smelt_gguf_writer_add_tensor(w, j->plan.t[i].name, j->plan.t[i].n_dims, j->plan.t[i].ne, j->plan.t[i].new_type, e);
    if (!rc) *bytes = smelt_gguf_writer_file_size(w);
    if (!rc && n_files) *n_files = (uint16_t)smelt_gguf_writer_n_files(w);
    smelt_gguf_writer_free(w);
    return rc;
}

typedef struct target_model_ctx {
    const smelt_quantize_opts *o;
    const smelt_qplan_tensor *q;
} target_model_ctx;

static const smelt_qerr *target_error_model(void *user, int type)
{
    const target_model_ctx *c = user;
    return error_model(c->o, type, c->q->imatrix, c->q->name);
}

static uint64_t padded(uint64_t n, uint64_t align) { return (n + align - 1) / align * align; }

/* The budget in bytes of tensor data (target-bpw) or of the file (target-size), and what the
 * tensors whose type is not chosen take of it (header included for a file). */
static int target_budget(job *j, uint64_t align, uint64_t *budget, uint64_t *fixed, smelt_err *e)
{
    const smelt_quantize_opts *o = j->o;
    smelt_qplan *p = &j->plan;
    bool file = o->target == SMELT_TARGET_SIZE;
    *fixed = 0;
    if (file) {
        uint64_t size, data = 0;
        int rc = layout_size(j, false, &size, NULL, e);
        if (rc) return rc;
        for (size_t i = 0; i < p->n; i++) data += padded(p->t[i].new_bytes, align);
        *fixed = size - data; /* header, KVs, tensor infos: the same for every choice of types */
        *budget = o->target_bytes;
    } else {
        *budget = (uint64_t)floor(o->target_bpw * (double)p->n_elements / 8.0);
    }
    return 0;
}

/* The candidates of plan_target: the types of target.h, their bytes for each tensor. */
typedef struct target_ctx {
    job *j;
    smelt_pool *pool;
    const int *types;
    size_t nt;
    bool file;
    uint64_t align;
    float *weights;
    size_t cap_w;
    uint8_t *tbuf; /* a model source's tensor */
    size_t cap_t;
} target_ctx;

static bool slow_encoder(int type) { return smelt_qtype_slow_encoder(smelt_q_ops(type)); }

/* a has fewer bits per weight than b */
static bool fewer_bits(const smelt_type_info *a, const smelt_type_info *b)
{
    return (uint64_t)a->bytes * b->blck < (uint64_t)b->bytes * a->blck;
}

/* Bytes of candidate k for tensor q as the budget counts them; 0 when k cannot be used. */
static uint64_t candidate_bytes(const target_ctx *c, const smelt_qplan_tensor *q, size_t k)
{
    uint64_t rb;
    smelt_err ignored;
    if (!block_divides(c->types[k], q->ne[0]) || !smelt_q_can_quantize(c->types[k]) ||
        smelt_type_row_bytes(c->types[k], q->ne[0], &rb, &ignored))
        return 0;
    uint64_t b = rb * q->ne[1] * q->ne[2] * q->ne[3];
    return c->file ? padded(b, c->align) : b;
}

/* Put type's candidate (bytes b, cost) in the item, in place of an earlier estimate of the
 * same type; b = 0 takes it out. */
static void set_candidate(smelt_target_item *item, int type, uint64_t b, double cost)
{
    size_t k = 0;
    while (k < item->n_cand && item->type[k] != type) k++;
    if (!b) {
        if (k < item->n_cand) {
            memmove(&item->type[k], &item->type[k + 1], (item->n_cand - k - 1) * sizeof item->type[0]);
            memmove(&item->bytes[k], &item->bytes[k + 1], (item->n_cand - k - 1) * sizeof item->bytes[0]);
            memmove(&item->cost[k], &item->cost[k + 1], (item->n_cand - k - 1) * sizeof item->cost[0]);
            item->n_cand--;
        }
        return;
    }
    if (k == item->n_cand) item->n_cand++;
    item->type[k] = type;
    item->bytes[k] = b;
    item->cost[k] = cost;
}

/* Estimate the errors of the candidates ks[0..n) for tensor q (coarse: the slowest
 * encoders on one row; slow_rows: on at least that many, smelt_target_source) and put the
 * usable ones in its item. A type that needs an imatrix is no candidate for a tensor the
 * imatrix lacks. */
static int estimate_candidates(target_ctx *c, size_t ti, const size_t *ks, size_t n, bool coarse, uint64_t slow_rows,
                               smelt_target_item *item, smelt_err *e)
{
    job *j = c->j;
    smelt_qplan_tensor *q = &j->plan.t[ti];
    const in_tensor *it = &j->in.t[j->order[ti]];
    const smelt_imx_entry *en = q->imatrix ? imx_lookup(&j->imx, q->name) : NULL;
    int sub[SMELT_TARGET_MAX_TYPES];
    double err[SMELT_TARGET_MAX_TYPES];
    size_t m = 0, at[SMELT_TARGET_MAX_TYPES];
    for (size_t i = 0; i < n; i++)
        if (en || !smelt_q_requires_imatrix(c->types[ks[i]])) {
            at[m] = ks[i];
            sub[m++] = c->types[ks[i]];
        }
    if (!m) return 0;
    int rc;
    if (en) {
        uint64_t zero;
        if ((rc = grow((void **)&c->weights, &c->cap_w, (size_t)en->n_values, sizeof(float), e))) return rc;
        if ((rc = smelt_imx_weights(j->imx.m, en, c->weights, &zero, e))) return rc;
    }
    target_model_ctx mc = {j->o, q};
    const uint8_t *data;
    if ((rc = model_rows(&j->in, it, 0, smelt_gguf_tensor_rows(it->t), &c->tbuf, &c->cap_t, &data, e))) return rc;
    smelt_target_source src = {q->name, {q->ne[0], q->ne[1], q->ne[2], q->ne[3]}, q->type, data,
                               smelt_gguf_tensor_row_bytes(it->t), en ? c->weights : NULL, target_error_model, &mc,
                               coarse, slow_rows};
    if ((rc = smelt_target_estimate(&src, sub, m, c->pool, err, e))) {
        if (!e->file[0]) snprintf(e->file, sizeof e->file, "%s", j->in.paths[it->shard]);
        return rc;
    }
    smelt_gguf_release_tensor(j->in.g[it->shard], it->t);
    for (size_t i = 0; i < m; i++) {
        uint64_t b = isfinite(err[i]) ? candidate_bytes(c, q, at[i]) : 0;
        q->rel_err[at[i]] = b ? err[i] : NAN;
        set_candidate(item, c->types[at[i]], b, q->sensitivity * err[i]);
    }
    return 0;
}

/* --target-bpw / --target-size: estimate the error of the candidate types of every tensor
 * whose type is not fixed, then choose under the budget (quant/target.h). The slowest
 * encoders (the grid i-quants) are estimated in full only for a tensor where the choice may
 * fall on them: between the sizes of its chosen type and its neighbours. First the fast
 * types are estimated and the choice made; then, until the choice falls on no such type
 * not yet estimated, the slow types in those gaps are, and the choice made again. When the
 * budget is below what the fast types can reach, the first pass also takes a first look
 * (one row, smelt_target_source.coarse) at the slow types smaller than every fast type, and
 * those are estimated in full where they are chosen or a neighbour of the choice; as most
 * tensors then get such estimates, on 4 sampled rows rather than 8. */
static int plan_target(job *j, smelt_err *e)
{
    const smelt_quantize_opts *o = j->o;
    smelt_qplan *p = &j->plan;
    bool file = o->target == SMELT_TARGET_SIZE;
    size_t nt = smelt_target_n_types();
    int types[SMELT_TARGET_MAX_TYPES];
    for (size_t k = 0; k < nt; k++) types[k] = smelt_target_type_at(k);
    target_ctx c = {.j = j, .types = types, .nt = nt, .file = file, .align = smelt_gguf_alignment(j->in.g[0])};
    p->plan_method = file ? "target-size" : "target-bpw";
    if (file) snprintf(j->budget_text, sizeof j->budget_text, "%" PRIu64, o->target_bytes);
    else snprintf(j->budget_text, sizeof j->budget_text, "%g", o->target_bpw);
    p->plan_budget = j->budget_text;
    uint64_t budget, fixed, total = 0;
    int rc = target_budget(j, c.align, &budget, &fixed, e);
    if (rc) return rc;
    smelt_target_item *items = calloc(p->n ? p->n : 1, sizeof *items);
    size_t *which = calloc(p->n ? p->n : 1, sizeof *which), n_todo = 0;
    c.pool = smelt_pool_new(o->n_threads);
    if (!items || !which || !c.pool) {
        rc = SMELT_NOMEM(e, "plan");
        goto out;
    }
    uint64_t least = 0, least_fast = 0; /* the smallest plans, known before any estimate */
    for (size_t i = 0; i < p->n; i++) {
        const smelt_qplan_tensor *q = &p->t[i];
        uint64_t small = UINT64_MAX, small_fast = UINT64_MAX;
        for (size_t k = 0; k < nt; k++) {
            uint64_t b = candidate_bytes(&c, q, k);
            if (b && b < small) small = b;
            if (b && b < small_fast && !slow_encoder(types[k])) small_fast = b;
        }
        if (!(q->flags & (SMELT_PT_KEPT | SMELT_PT_MANUAL)) && small != UINT64_MAX && smelt_q_can_dequantize(q->type)) {
            which[n_todo++] = i;
            least += small;
            least_fast += small_fast != UINT64_MAX ? small_fast : small;
        } else {
            fixed += file ? padded(q->new_bytes, c.align) : q->new_bytes;
        }
    }
    if (fixed + least > budget) {
        rc = SMELT_ERR(e, SMELT_EUSAGE, j->in.paths[0], NULL,
                       "the budget (%s %s) is below the smallest plan: %" PRIu64 " bytes%s, %.3f bits per weight", p->plan_method,
                       p->plan_budget, least + fixed, file ? " of file" : " of tensor data",
                       (double)(least + fixed) * 8.0 / (double)p->n_elements);
        goto out;
    }
    bool all_at_once = fixed + least_fast > budget;
    size_t first[SMELT_TARGET_MAX_TYPES], n_first = 0;
    /* bit k: types[k] is a slow encoder; one the first pass looks at (below the fast types'
     * reach, the slow types smaller than all of them: the ones the budget needs) */
    uint32_t slow = 0, coarse = 0;
    const smelt_type_info *fast_min = NULL;
    for (size_t k = 0; k < nt; k++) {
        const smelt_type_info *ti = smelt_type_get(types[k]);
        if (!slow_encoder(types[k]) && ti && (!fast_min || fewer_bits(ti, fast_min))) fast_min = ti;
    }
    for (size_t k = 0; k < nt; k++) {
        const smelt_type_info *ti = smelt_type_get(types[k]);
        if (slow_encoder(types[k])) slow |= 1u << k;
        if (all_at_once && slow >> k & 1 && ti && (!fast_min || fewer_bits(ti, fast_min))) coarse |= 1u << k;
        if (!(slow >> k & 1) || coarse >> k & 1) first[n_first++] = k;
    }
    uint64_t bytes_done = 0;
    for (size_t w = 0; w < n_todo && !rc; w++) {
        smelt_qplan_tensor *q = &p->t[which[w]];
        for (size_t k = 0; k < nt; k++) q->rel_err[k] = NAN;
        q->planned = true;
        q->tclass = smelt_target_class_of(q->name);
        q->sensitivity = o->sensitivity ? o->sensitivity[q->tclass] : smelt_target_default_sensitivity(q->tclass);
        if ((rc = estimate_candidates(&c, which[w], first, n_first, all_at_once, 0, &items[w], e))) break;
        if (!items[w].n_cand) rc = SMELT_ERR(e, SMELT_EINTERNAL, j->in.paths[0], q->name, "no candidate type can be estimated");
        bytes_done += q->bytes;
        smelt_progress_step(o->plan_progress, w + 1, n_todo, bytes_done, q->name);
    }
    /* per tensor, the slow types estimated in full (bit k), and those with a first look */
    uint32_t *full = calloc(n_todo ? n_todo : 1, sizeof *full);
    if (!rc && !full) rc = SMELT_NOMEM(e, "plan");
    for (bool again = true; again && !rc;) {
        if ((rc = smelt_target_solve(items, n_todo, budget - fixed, &total, e))) break;
        again = false;
        for (size_t w = 0; w < n_todo && !rc; w++) {
            smelt_target_item *item = &items[w];
            uint64_t at = item->bytes[item->chosen], lo = 0, hi = UINT64_MAX;
            for (size_t k = 0; k < item->n_cand; k++) {
                if (item->bytes[k] < at && item->bytes[k] > lo) lo = item->bytes[k];
                if (item->bytes[k] > at && item->bytes[k] < hi) hi = item->bytes[k];
            }
            size_t more[SMELT_TARGET_MAX_TYPES], n_more = 0;
            for (size_t k = 0; k < nt; k++) {
                uint64_t b = slow >> k & 1 && !(full[w] >> k & 1) ? candidate_bytes(&c, &p->t[which[w]], k) : 0;
                bool looked = coarse >> k & 1;
                if (b && (looked ? b >= lo && b <= hi : b > lo && b < hi)) more[n_more++] = k;
            }
            for (size_t i = 0; i < n_more; i++) full[w] |= 1u << more[i];
            if (n_more) {
                rc = estimate_candidates(&c, which[w], more, n_more, false, all_at_once ? 4 : 0, item, e);
                again = true;
            }
        }
    }
    free(full);
    if (rc) goto out;
    p->budget_bytes = budget;
    p->predicted_cost = 0;
    for (size_t w = 0; w < n_todo; w++) {
        smelt_qplan_tensor *q = &p->t[which[w]];
        const smelt_target_item *item = &items[w];
        q->new_type = item->type[item->chosen];
        q->flags &= ~(unsigned)(SMELT_PT_FALLBACK | SMELT_PT_MIX);
        q->rule = "target";
        p->predicted_cost += item->cost[item->chosen];
    }
    rc = recount(j, e);
    if (!rc && fixed + total < budget - budget / 200)
        smelt_note(&o->notes, "the plan takes %" PRIu64 " of the %" PRIu64 " bytes of the budget: every tensor has its largest type",
                   fixed + total, budget);
out:
    free(items);
    free(which);
    free(c.weights);
    free(c.tbuf);
    smelt_pool_free(c.pool);
    return rc;
}

/* ==== output metadata ==== */

static int set_override(smelt_gguf_writer *w, const smelt_kv_override *kv, smelt_err *e)
{
    smelt_gguf_writer_remove_kv(w, kv->key);
    switch (kv->vtype) {
    case SMELT_GGUF_U32: return smelt_gguf_writer_set_u32(w, kv->key, kv->u32, e);
    case SMELT_GGUF_F32: return smelt_gguf_writer_set_f32(w, kv->key, kv->f32, e);
    case SMELT_GGUF_BOOL: return smelt_gguf_writer_set_bool(w, kv->key, kv->b, e);
    default: return smelt_gguf_writer_set_str(w, kv->key, kv->str, e);
    }
}

/* The outputs may be none of the inputs: the model's files and the importance matrix. */
static smelt_guard *input_guard(const job *j, smelt_err *e)
{
    smelt_guard *g = smelt_guard_new();
    if (!g) {
        SMELT_NOMEM(e, "the list of inputs");
        return NULL;
    }
    int rc = 0;
    for (uint16_t k = 0; k < j->in.n && !rc; k++) rc = smelt_guard_add(g, j->in.paths[k], "the model", NULL, e);
    if (!rc && j->o->imatrix) rc = smelt_guard_add(g, j->o->imatrix, "the importance matrix", NULL, e);
    if (!rc && j->o->plan_file) rc = smelt_guard_add(g, j->o->plan_file, "the plan", NULL, e);
    if (rc) {
        smelt_guard_free(g);
        return NULL;
    }
    return g;
}

/* The override list llama-quantize builds: the user's, then the imatrix provenance. */
static int set_metadata(job *j, smelt_gguf_writer *w, smelt_err *e)
{
    const smelt_quantize_opts *o = j->o;
    int rc = smelt_gguf_writer_copy_all_kv(w, j->in.g[0], e);
    if (rc) return rc;
    smelt_gguf_writer_remove_kv(w, "general.quantization_version");
    if ((rc = smelt_gguf_writer_set_u32(w, "general.quantization_version", QUANT_VERSION, e))) return rc;
    smelt_gguf_writer_remove_kv(w, "general.file_type");
    if ((rc = smelt_gguf_writer_set_u32(w, "general.file_type", j->plan.file_type, e))) return rc;
    smelt_gguf_writer_remove_kv(w, K_SPLIT_NO);
    smelt_gguf_writer_remove_kv(w, K_SPLIT_COUNT);
    smelt_gguf_writer_remove_kv(w, K_SPLIT_TENSORS);
    for (size_t i = 0; i < o->n_kv_overrides; i++)
        if ((rc = set_override(w, &o->kv_overrides[i], e))) return rc;
    if (j->plan.plan_method) { /* a chosen plan: how it was made */
        smelt_kv_override kv = {.vtype = SMELT_GGUF_STRING};
        strcpy(kv.key, "smelt.quantize.plan.method");
        snprintf(kv.str, sizeof kv.str, "%s", j->plan.plan_method);
        if ((rc = set_override(w, &kv, e))) return rc;
        strcpy(kv.key, "smelt.quantize.plan.budget");
        snprintf(kv.str, sizeof kv.str, "%s", j->plan.plan_budget);
        if ((rc = set_override(w, &kv, e))) return rc;
    }
    if (j->imx.n_keep) {
        smelt_kv_override kv = {.vtype = SMELT_GGUF_STRING};
        strcpy(kv.key, "quantize.imatrix.file");
        snprintf(kv.str, sizeof kv.str, "%s", o->imatrix); /* llama-quantize keeps 127 bytes */
        if ((rc = set_override(w, &kv, e))) return rc;
        if (j->imx.m->n_datasets) {
            strcpy(kv.key, "quantize.imatrix.dataset");
            snprintf(kv.str, sizeof kv.str, "%s", j->imx.m->datasets[0]);
            if ((rc = set_override(w, &kv, e))) return rc;
        }
        kv.vtype = SMELT_GGUF_U32;
        strcpy(kv.key, "quantize.imatrix.entries_count");
        kv.u32 = (uint32_t)j->imx.n_keep;
        if ((rc = set_override(w, &kv, e))) return rc;
        if (j->imx.m->chunk_count > 0) {
            strcpy(kv.key, "quantize.imatrix.chunks_count");
            kv.u32 = j->imx.m->chunk_count;
            if ((rc = set_override(w, &kv, e))) return rc;
        }
    }
    return 0;
}

/* ==== streaming ==== */

/* The first NaN/Inf a task met: index in the slab, and the value. */
typedef struct nf_hit {
    uint64_t at;
    float v;
} nf_hit;

/* One pool task: decode a few rows (about 64k values) into the thread's scratch, count
 * NaN/Inf, and encode them straight into the output slab. The scratch stays in cache and
 * no tensor-sized f32 copy exists. Encoders are row-independent, so the bytes do not
 * depend on how rows are split over threads. */
typedef struct conv_job {
    const smelt_qtype_ops *enc;
    int src_type;
    const uint8_t *src;
    uint64_t src_row_bytes, dst_row_bytes, row_len, rows_per_task, n_rows;
    uint8_t *dst;
    const float *imx;
    const smelt_qerr *err;
    bool sanitize;
    float *scratch; /* per thread: rows_per_task × row_len */
    uint64_t *bad;  /* per task */
    nf_hit *hit;    /* per task: its first NaN/Inf (when bad) */
    bool allow;     /* allow_nonfinite: encode them too (else the slab is refused) */
} conv_job;

static void conv_task(void *ctx, size_t task, int thread)
{
    conv_job *c = ctx;
    uint64_t r0 = task * c->rows_per_task;
    uint64_t nr = c->n_rows - r0 < c->rows_per_task ? c->n_rows - r0 : c->rows_per_task;
    float *f = c->scratch + (size_t)thread * c->rows_per_task * c->row_len;
    smelt_q_dequantize_row(c->src_type, c->src + r0 * c->src_row_bytes, f, (size_t)(nr * c->row_len));
    uint64_t bad = smelt_nonfinite_f32(f, nr * c->row_len);
    c->bad[task] = bad;
    if (bad) {
        double v;
        c->hit[task].at = r0 * c->row_len + smelt_nonfinite_first(SMELT_FIN_F32, f, nr * c->row_len, &v);
        c->hit[task].v = (float)v;
        if (!c->allow) return; /* refused: not worth encoding */
        if (c->sanitize)
            for (uint64_t i = 0; i < nr * c->row_len; i++)
                if (!isfinite(f[i])) f[i] = 0.0f;
    }
    smelt_qtype_quantize(c->enc, f, c->dst + r0 * c->dst_row_bytes, (int64_t)nr, (int64_t)c->row_len, c->imx, c->err);
}

typedef struct stream {
    smelt_pool *pool;
    float *scratch;
    uint8_t *qbuf;
    uint64_t *bad;
    nf_hit *hit;
    size_t cap_scratch, cap_q, cap_bad, cap_hit;
    float *weights;
    size_t cap_w;
    uint8_t *src; /* rows made by a model source */
    size_t cap_src;
} stream;

/* Drop the whole pages of an input byte range from RSS once it has been encoded (the
 * mapping is read-only and private: the data stays readable, re-read on access). */
static void release_range(const uint8_t *p, uint64_t n)
{
    uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + pg - 1) & ~(pg - 1), b = ((uintptr_t)p + n) & ~(pg - 1);
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem, smelt_err *e)
{
    if (need <= *cap) return 0;
    void *np = realloc(*p, need * elem);
    if (!np) return SMELT_NOMEM(e, "tensor buffer");
    *p = np;
    *cap = need;
    return 0;
}

/* Rows [row0, row0 + nrows) of a tensor in its type: where the file is mapped, or made by
 * the model source into *buf. */
static int model_rows(const inputs *in, const in_tensor *it, uint64_t row0, uint64_t nrows, uint8_t **buf, size_t *cap,
                      const uint8_t **out, smelt_err *e)
{
    uint64_t rb = smelt_gguf_tensor_row_bytes(it->t);
    if (it->t->data) {
        *out = it->t->data + row0 * rb;
        return 0;
    }
    if (!in->src) return SMELT_ERR(e, SMELT_EINTERNAL, in->paths[it->shard], it->t->name, "tensor data is not mapped");
    int rc = grow((void **)buf, cap, (size_t)(nrows * rb), 1, e);
    if (!rc) rc = in->src->read_rows(in->src->user, it->index, row0, nrows, *buf, e);
    if (!rc) *out = *buf;
    return rc;
}

/* The error model for a block type: a --error-model override for it, else plain or the
 * tuned default. NULL = the plain squared error. */
static const smelt_qerr *error_model(const smelt_quantize_opts *o, int type, bool with_imatrix, const char *tensor)
{
    smelt_qerr_role role = with_imatrix                 ? SMELT_QERR_IMATRIX
                           : is_token_embedding(tensor) ? SMELT_QERR_EMBEDDING
                                                        : SMELT_QERR_NOIMATRIX;
    for (size_t i = o->n_err_overrides; i-- > 0;) { /* the last one given wins */
        const smelt_qerr_override *v = &o->err_overrides[i];
        if (v->type != type || (v->when != SMELT_QERR_ALL && v->when != role)) continue;
        return v->plain ? NULL : &v->model;
    }
    return o->plain_error ? NULL : smelt_q_tuned_err(type, role);
}

/* The token embedding's column importance from the model's RMSNorm weights (smelt_qerr.norms):
 * the mean of gamma^2 over every attn_norm, ffn_norm and output_norm of length n. 0 if there
 * is none (then the caller uses no weights). */
static int norm_importance(const inputs *in, uint64_t n, float *w, int *found, smelt_err *e)
{
    *found = 0;
    uint8_t *buf = NULL;
    size_t cap = 0;
    int rc = 0;
    for (uint64_t i = 0; i < n; i++) w[i] = 0;
    for (size_t k = 0; k < in->nt && !rc; k++) {
        const smelt_gguf_tensor *t = in->t[k].t;
        size_t l = strlen(t->name);
        bool norm = !strcmp(t->name, "output_norm.weight") ||
                    (l > 16 && (!strcmp(t->name + l - 16, "attn_norm.weight") || !strcmp(t->name + l - 15, "ffn_norm.weight")));
        if (!norm || t->type != SMELT_TYPE_F32 || t->ne[0] != n || t->nelements != n || (!t->data && !in->src)) continue;
        const uint8_t *d;
        if ((rc = model_rows(in, &in->t[k], 0, 1, &buf, &cap, &d, e))) break;
        for (uint64_t i = 0; i < n; i++) {
            float g;
            memcpy(&g, d + 4 * i, 4);
            w[i] += isfinite(g) ? g * g : 0;
        }
        (*found)++;
    }
    free(buf);
    for (uint64_t i = 0; !rc && *found && i < n; i++) w[i] /= (float)*found;
    return rc;
}

static int write_tensor(job *j, stream *st, smelt_gguf_writer *w, size_t i, smelt_err *e)
{
    smelt_qplan_tensor *q = &j->plan.t[i];
    const in_tensor *it = &j->in.t[j->order[i]];
    const smelt_gguf_tensor *t = it->t;
    int rc;
    if (q->new_type == q->type) {
        /* float tensors copied as they are are checked too (in their own bit layout) */
        int fmt = q->type == SMELT_TYPE_F32 ? SMELT_FIN_F32 : q->type == SMELT_TYPE_F16 ? SMELT_FIN_F16
                  : q->type == SMELT_TYPE_BF16 ? SMELT_FIN_BF16 : -1;
        size_t es = fmt == SMELT_FIN_F32 ? 4 : 2;
        uint64_t rb = smelt_gguf_tensor_row_bytes(t), rows = smelt_gguf_tensor_rows(t);
        uint64_t step = rb && COPY_CHUNK / rb ? COPY_CHUNK / rb : 1; /* rows per write */
        for (uint64_t r = 0; r < rows; r += step) {
            uint64_t nr = rows - r < step ? rows - r : step, off = r * rb, k = nr * rb;
            const uint8_t *d;
            if ((rc = model_rows(&j->in, it, r, nr, &st->src, &st->cap_src, &d, e))) return rc;
            uint64_t nf = fmt < 0 ? 0 : smelt_nonfinite_count((smelt_fin_fmt)fmt, d, k / es);
            q->nonfinite += nf;
            if (nf && !j->o->allow_nonfinite) {
                double v;
                uint64_t at = smelt_nonfinite_first((smelt_fin_fmt)fmt, d, k / es, &v);
                return SMELT_ERR_NONFINITE(e, j->in.paths[it->shard], q->name, NULL, off / es + at, v, NULL);
            }
            if ((rc = smelt_gguf_writer_write(w, d, (size_t)k, e))) return rc;
            if (t->data) release_range(d, k);
        }
        if (q->nonfinite)
            smelt_note(&j->o->notes, "tensor '%s': %" PRIu64 " NaN/Inf value%s in the input, kept as they are", q->name, q->nonfinite,
                  q->nonfinite > 1 ? "s" : "");
        return 0;
    }
    const uint64_t row_len = q->ne[0], rows_per_mat = q->ne[1], n_mat = q->ne[2] * q->ne[3];
    if (!row_len || !rows_per_mat || !n_mat) /* the reader refuses these; never divide by them */
        return SMELT_ERR(e, SMELT_EFORMAT, j->in.paths[it->shard], q->name, "shape [%" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64
                         "] has no elements", q->ne[0], q->ne[1], q->ne[2], q->ne[3]);
    uint64_t src_rb = smelt_gguf_tensor_row_bytes(t), dst_rb;
    if ((rc = smelt_type_row_bytes(q->new_type, row_len, &dst_rb, e))) return rc;
    const smelt_imx_entry *en = q->imatrix ? imx_lookup(&j->imx, q->name) : NULL;
    if (en) {
        if ((rc = grow((void **)&st->weights, &st->cap_w, (size_t)en->n_values, sizeof(float), e))) return rc;
        uint64_t zero;
        if ((rc = smelt_imx_weights(j->imx.m, en, st->weights, &zero, e))) {
            snprintf(e->file, sizeof e->file, "%s", j->o->imatrix);
            return rc;
        }
        if (zero)
            smelt_note(&j->o->notes, "imatrix: '%s': %" PRIu64 " of %" PRIu64 " experts saw no calibration tokens; they get uniform "
                        "importance weights", q->name, zero, en->n_mat);
    }
    const smelt_qtype_ops *enc = smelt_q_ops(q->new_type);
    if (!smelt_qtype_encodes(enc))
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, NULL, q->name, "smelt cannot quantize to %s", smelt_type_name(q->new_type));
    uint64_t per = (65536 + row_len - 1) / row_len; /* rows per task */
    uint64_t slab = SLAB_ELEMS / row_len;           /* rows per write */
    if (slab < per) slab = per;
    if (slab > rows_per_mat) slab = rows_per_mat;
    if (per > slab) per = slab;
    size_t nthr = (size_t)smelt_pool_threads(st->pool);
    if ((rc = grow((void **)&st->scratch, &st->cap_scratch, (size_t)(per * row_len) * (nthr ? nthr : 1), sizeof(float), e)) ||
        (rc = grow((void **)&st->qbuf, &st->cap_q, (size_t)(slab * dst_rb), 1, e)))
        return rc;
    bool sanitize = smelt_type_is_quantized(q->new_type);
    const smelt_qerr *err = error_model(j->o, q->new_type, en != NULL, q->name);
    bool norm_weights = false;
    if (!en && err && err->norms) {
        if ((rc = grow((void **)&st->weights, &st->cap_w, (size_t)row_len, sizeof(float), e))) return rc;
        int found;
        if ((rc = norm_importance(&j->in, row_len, st->weights, &found, e))) return rc;
        norm_weights = found > 0;
    }
    for (uint64_t m = 0; m < n_mat; m++) {
        const float *imx = en ? st->weights + (m % q->ne[2]) * row_len : norm_weights ? st->weights : NULL;
        for (uint64_t r = 0; r < rows_per_mat; r += slab) {
            uint64_t nr = rows_per_mat - r < slab ? rows_per_mat - r : slab;
            uint64_t row0 = m * rows_per_mat + r;
            const uint8_t *rows;
            if ((rc = model_rows(&j->in, it, row0, nr, &st->src, &st->cap_src, &rows, e))) return rc;
            conv_job c = {enc, q->type, rows, src_rb, dst_rb, row_len, per, nr, st->qbuf, imx,
                          err, sanitize, st->scratch, NULL};
            size_t tasks = (size_t)((nr + per - 1) / per);
            if ((rc = grow((void **)&st->bad, &st->cap_bad, tasks, sizeof(uint64_t), e)) ||
                (rc = grow((void **)&st->hit, &st->cap_hit, tasks, sizeof(nf_hit), e)))
                return rc;
            c.bad = st->bad;
            c.hit = st->hit;
            c.allow = j->o->allow_nonfinite;
            smelt_pool_run(st->pool, tasks, conv_task, &c);
            for (size_t k = 0; k < tasks; k++) q->nonfinite += st->bad[k];
            if (q->nonfinite && !c.allow) { /* tasks cover the rows in order: the first with one has it */
                size_t k = 0;
                while (!st->bad[k]) k++;
                return SMELT_ERR_NONFINITE(e, j->in.paths[it->shard], q->name, NULL, row0 * row_len + st->hit[k].at,
                                           st->hit[k].v, NULL);
            }
            if ((rc = smelt_gguf_writer_write(w, st->qbuf, (size_t)(nr * dst_rb), e))) return rc;
            if (t->data) release_range(c.src, nr * src_rb);
        }
    }
    if (q->nonfinite)
        smelt_note(&j->o->notes, "tensor '%s': %" PRIu64 " NaN/Inf value%s in the input%s", q->name, q->nonfinite,
              q->nonfinite > 1 ? "s" : "", sanitize ? ", quantized as 0" : ", kept as they are");
    return 0;
}

static int run_output(job *j, const char *out_path, const smelt_progress *progress, smelt_err *e)
{
    const smelt_quantize_opts *o = j->o;
    smelt_qplan *p = &j->plan;
    uint16_t ns = o->keep_split ? p->n_shards_out : 1; /* writers (a --split-max-* writer makes its own files) */
    char prefix[4096];
    snprintf(prefix, sizeof prefix, "%s", out_path);
    size_t lp = strlen(prefix);
    if (o->keep_split && lp > 5 && !strcmp(prefix + lp - 5, ".gguf")) prefix[lp - 5] = 0;
    char **paths = calloc(ns, sizeof *paths);
    smelt_gguf_writer **w = calloc(ns, sizeof *w);
    stream st = {0};
    int rc = 0;
    /* a model source lists its inputs itself */
    smelt_guard *owned = j->in.src ? NULL : input_guard(j, e);
    const smelt_guard *guard = j->in.src ? j->in.src->guard : owned;
    if (!paths || !w || (!j->in.src && !owned)) {
        rc = j->in.src || owned ? SMELT_NOMEM(e, "writers") : (e->code ? e->code : SMELT_ENOMEM);
        goto out;
    }
    for (uint16_t s = 0; s < ns && !rc; s++) {
        char pth[4200];
        if (o->keep_split) smelt_gguf_split_path(pth, sizeof pth, prefix, s, ns);
        else snprintf(pth, sizeof pth, "%s", out_path);
        if (!(paths[s] = strdup(pth)) || !(w[s] = smelt_gguf_writer_new())) {
            rc = SMELT_NOMEM(e, "writer");
            break;
        }
        if (!rc && guard) rc = smelt_guard_check_file(guard, pth, e);
        if (!rc && s == 0) rc = set_metadata(j, w[0], e);
        if (!rc && o->split) {
            smelt_gguf_writer_set_split(w[s], o->split_max_bytes, o->split_max_tensors);
            smelt_gguf_writer_set_guard(w[s], guard); /* checks each file of the split */
        }
        if (!rc && ns > 1) {
            if (!(rc = smelt_gguf_writer_set_u16(w[s], K_SPLIT_NO, s, e)) &&
                !(rc = smelt_gguf_writer_set_u16(w[s], K_SPLIT_COUNT, ns, e)))
                rc = smelt_gguf_writer_set_i32(w[s], K_SPLIT_TENSORS, (int32_t)p->n, e);
        }
    }
    for (size_t i = 0; i < p->n && !rc; i++) {
        const smelt_qplan_tensor *q = &p->t[i];
        rc = smelt_gguf_writer_add_tensor(w[o->keep_split ? q->shard : 0], q->name, q->n_dims, q->ne, q->new_type, e);
    }
    if (rc) goto out;
    if (o->split) p->n_shards_out = (uint16_t)smelt_gguf_writer_n_files(w[0]);
    if (o->shard_count) {
        if (o->shard_count != p->n_shards_out) {
            rc = SMELT_ERR(e, SMELT_EUSAGE, paths[0], NULL,
                           "--shard %" PRIu32 "/%" PRIu32 ": the split makes %u files; give --shard I/%u", o->shard_index,
                           o->shard_count, p->n_shards_out, p->n_shards_out);
            goto out;
        }
        smelt_gguf_writer_set_only_file(w[0], o->shard_index - 1);
    }
    p->out_bytes = 0;
    for (uint16_t s = 0; s < ns; s++) p->out_bytes += smelt_gguf_writer_file_size(w[s]);
    if ((rc = smelt_fs_check_space(paths[0], p->out_bytes, o->assume_free_bytes, e))) goto out;
    if (o->on_plan) o->on_plan(o->user, p);
    if (!(st.pool = smelt_pool_new(o->n_threads))) {
        rc = SMELT_NOMEM(e, "thread pool");
        goto out;
    }
    int cur = -1;
    uint64_t done_bytes = 0;
    for (size_t i = 0; i < p->n && !rc; i++) {
        int s = o->keep_split ? p->t[i].shard : 0;
        if (o->shard_count && smelt_gguf_writer_file_of(w[0], i) != o->shard_index - 1) continue; /* another process's */
        if (s != cur) {
            if ((rc = smelt_gguf_writer_begin(w[s], paths[s], e))) break;
            cur = s;
        }
        rc = write_tensor(j, &st, w[s], i, e);
        const in_tensor *it = &j->in.t[j->order[i]];
        smelt_gguf_release_tensor(j->in.g[it->shard], it->t);
        done_bytes += p->t[i].bytes;
        if (!rc) smelt_progress_step(progress, i + 1, p->n, done_bytes, p->t[i].name);
    }
    for (uint16_t s = 0; s < ns && !rc; s++) /* shards with no tensors still get their header */
        if (smelt_gguf_writer_current(w[s]) == 0 && smelt_gguf_writer_n_tensors(w[s]) == 0)
            rc = smelt_gguf_writer_begin(w[s], paths[s], e);
    uint16_t committed = 0;
    for (; committed < ns && !rc; committed++) rc = smelt_gguf_writer_commit(w[committed], e);
    if (rc)
        for (uint16_t s = 0; s + 1 < committed; s++) unlink(paths[s]); /* a partial set is not a model */
out:
    for (uint16_t s = 0; w && s < ns; s++) smelt_gguf_writer_free(w[s]);
    for (uint16_t s = 0; paths && s < ns; s++) free(paths[s]);
    free(w);
    free(paths);
    smelt_guard_free(owned);
    smelt_pool_free(st.pool);
    free(st.src);
    free(st.scratch);
    free(st.qbuf);
    free(st.bad);
    free(st.hit);
    free(st.weights);
    return rc;
}

/* ==== entry point ==== */

static int unknown_ftype(const char *name, smelt_err *e)
{
    char list[700];
    size_t used = 0;
    list[0] = 0;
    for (size_t i = 0; i < smelt_ftype_count() && used < sizeof list; i++)
        used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? " " : "", smelt_ftype_at(i)->name);
    return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "unknown quantization type '%s'; valid types: %s", name ? name : "",
                     list);
}

int smelt_quantize_run(const smelt_quantize_opts *o, const char *in_path, const char *out_path,
                       const smelt_progress *progress, smelt_err *e)
{
    job j;
    memset(&j, 0, sizeof j);
    j.o = o;
    /* a size-budget or replayed plan starts from the pure Q8_0 plan (build_plan) */
    const char *ftype = o->target || o->replay ? "Q8_0" : o->ftype;
    if (!(j.fi = smelt_ftype_find(ftype))) return unknown_ftype(ftype, e);
    if (o->n_include && o->n_exclude)
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "--include-weights and --exclude-weights cannot be used together");
    if (!o->dry_run && !out_path) return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "no output file given");
    if (o->target && o->replay)
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "--plan replays a plan; --target-bpw/--target-size make one: give one");
    if (o->target == SMELT_TARGET_BPW && !(o->target_bpw > 0 && o->target_bpw <= 32))
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "--target-bpw %g: expected bits per weight in (0, 32]", o->target_bpw);
    if (o->target && !o->imatrix)
        return SMELT_ERR(e, SMELT_EUSAGE, in_path, NULL,
                         "--target-bpw/--target-size weigh each type's error by an importance matrix; pass --imatrix FILE "
                         "(make one with: smelt-imatrix -m %s -f CALIBRATION.txt -o imatrix.gguf)",
                         in_path);
    if (o->shard_count && (!o->split || !o->shard_index || o->shard_index > o->shard_count))
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL,
                         "--shard I/N needs 1 <= I <= N and --split-max-size or --split-max-tensors (the split it is a part of)");
    if (o->split && o->keep_split)
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL,
                         "--keep-split keeps the input's shards; --split-max-size/--split-max-tensors make new ones: give one");
    /* a size-budget plan reads the weights even for a dry run */
    if (o->source && o->keep_split)
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "--keep-split keeps the shards of an input file; this model is not read from one");
    int rc = open_inputs(in_path, o->dry_run && !o->target ? SMELT_GGUF_META_ONLY : 0, o->source, &j.in, e);
    /* the model check every tool shares (llama models; other architectures pass as is) */
    if (!rc && !o->skip_model_check && (rc = smelt_mc_check_gguf(j.in.g[0], SMELT_MC_OTHER_ARCH_OK, NULL, e)) > 0)
        rc = 0; /* SMELT_MC_SKIPPED */
    if (!rc && o->imatrix) {
        rc = load_imatrix(o, &j.imx, e);
        if (!rc && !j.imx.n_keep)
            smelt_note(&o->notes, "imatrix %s: --include/--exclude-weights left no entries; quantizing without importance weights",
                  o->imatrix);
    }
    if (!rc) rc = build_plan(&j, e);
    if (!rc) {
        j.plan.imatrix = j.imx.n_keep ? o->imatrix : NULL;
        j.plan.imatrix_entries = j.imx.n_keep;
        j.plan.imatrix_chunks = j.imx.m ? j.imx.m->chunk_count : 0;
        rc = check_plan(&j, e);
    }
    if (!rc && o->target && !j.imx.n_keep)
        rc = SMELT_ERR(e, SMELT_EUSAGE, o->imatrix, NULL, "--include/--exclude-weights left no imatrix entries to plan with");
    if (!rc && o->target) rc = plan_target(&j, e);
    if (!rc && o->dry_run) {
        /* the size of the output (with --keep-split: of the single file; the extra shards' headers are small) */
        uint16_t files = 1;
        rc = layout_size(&j, o->split, &j.plan.out_bytes, &files, e);
        if (!rc && o->split) j.plan.n_shards_out = files;
        if (!rc && o->on_plan) o->on_plan(o->user, &j.plan);
    } else if (!rc) {
        rc = run_output(&j, out_path, progress, e);
        uint64_t nf = 0, nf_t = 0;
        for (size_t i = 0; !rc && i < j.plan.n; i++) {
            nf += j.plan.t[i].nonfinite;
            nf_t += j.plan.t[i].nonfinite > 0;
        }
        if (nf)
            smelt_note(&o->notes, "wrote %" PRIu64 " NaN/Inf value%s in %" PRIu64 " tensor%s (--allow-nonfinite)", nf, nf == 1 ? "" : "s",
                  nf_t, nf_t == 1 ? "" : "s");
        if (!rc && o->on_done) o->on_done(o->user, &j.plan);
    }
    inputs_close(&j.in);
    smelt_imx_free(j.imx.m);
    free(j.imx.keep);
    free(j.order);
    free(j.pt);
    free(j.plan.t);
    return rc;
}
