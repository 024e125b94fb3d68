/* imatrix_collect.c — the importance-matrix collector (a forward-pass matmul hook) and the
 * smelt-imatrix run over llama-perplexity's chunk loop.
 * Includes formats/, verify/{forward,ppl,imatrix_collect}.h. */
#include "imatrix_collect.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/base/file.h"
#include "formats/base/guard.h"
#include "formats/base/names.h"

/* ==== collector ==== */

typedef struct {
    char *name;       /* owned: the model (and its names) is gone when the imatrix is built */
    uint64_t n_cols, n_mat;
    double *sums;     /* n_mat x n_cols */
    int64_t *counts;  /* n_mat */
} centry;

struct smelt_imxc {
    bool process_output;
    centry *en;
    size_t n, cap;
    smelt_names index; /* name -> en[] */
    smelt_err err;     /* first failure met inside the hook */
    int rc;
};

int smelt_imxc_new(bool process_output, smelt_imxc **out, smelt_err *e)
{
    *out = NULL;
    smelt_imxc *c = calloc(1, sizeof *c);
    if (!c || smelt_names_init(&c->index, 64)) {
        free(c);
        return SMELT_NOMEM(e, "the imatrix collector");
    }
    c->process_output = process_output;
    smelt_err_clear(&c->err);
    *out = c;
    return 0;
}

void smelt_imxc_free(smelt_imxc *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        free(c->en[i].name);
        free(c->en[i].sums);
        free(c->en[i].counts);
    }
    free(c->en);
    smelt_names_free(&c->index);
    free(c);
}

size_t smelt_imxc_n_entries(const smelt_imxc *c) { return c->n; }

static bool wanted(const smelt_imxc *c, const char *name)
{
    return !strncmp(name, "blk.", 4) || (c->process_output && !strcmp(name, "output.weight"));
}

static centry *entry_for(smelt_imxc *c, const char *name, uint64_t n_cols, uint64_t n_mat)
{
    long at = smelt_names_find(&c->index, name);
    if (at >= 0) {
        centry *en = &c->en[at];
        if (en->n_cols != n_cols || en->n_mat != n_mat) {
            c->rc = SMELT_ERR(&c->err, SMELT_EMISMATCH, NULL, name,
                              "product with %" PRIu64 " columns x %" PRIu64 " matrices after %" PRIu64 " x %" PRIu64,
                              n_cols, n_mat, en->n_cols, en->n_mat);
            return NULL;
        }
        return en;
    }
    if (c->n == c->cap) {
        size_t nc = c->cap ? 2 * c->cap : 64;
        centry *ne = realloc(c->en, nc * sizeof *ne);
        if (!ne) goto nomem;
        c->en = ne;
        c->cap = nc;
    }
    centry en = {strdup(name), n_cols, n_mat, calloc(n_cols * n_mat, sizeof(double)), calloc(n_mat, sizeof(int64_t))};
    if (!en.name || !en.sums || !en.counts) {
        free(en.name);
        free(en.sums);
        free(en.counts);
        goto nomem;
    }
    /* the key is the entry's own copy of the name, which lives as long as the map */
    if (smelt_names_add(&c->index, en.name, c->n) != SMELT_NAMES_ADDED) {
        free(en.name);
        free(en.sums);
        free(en.counts);
        goto nomem;
    }
    c->en[c->n] = en;
    return &c->en[c->n++];
nomem:
    c->rc = SMELT_NOMEM(&c->err, "an imatrix entry");
    return NULL;
}

void smelt_imxc_hook(void *collector, const smelt_fwd_mm_info *mm)
{
    smelt_imxc *c = collector;
    if (c->rc || !mm->n_rows || !wanted(c, mm->weight)) return;
    const bool expert = mm->expert >= 0;
    const uint64_t n_mat = expert ? (uint64_t)mm->n_expert : 1, n_cols = mm->n_cols;
    if (expert && mm->expert >= mm->n_expert) {
        c->rc = SMELT_ERR(&c->err, SMELT_EINTERNAL, NULL, mm->weight, "expert %d of %d", mm->expert, mm->n_expert);
        return;
    }
    centry *en = entry_for(c, mm->weight, n_cols, n_mat);
    if (!en) return;
    const size_t m = expert ? (size_t)mm->expert : 0;
    /* Σ x² per column, rows in the order given: each output is one chain over the rows */
    double *acc = en->sums + m * n_cols;
    for (size_t r = 0; r < mm->n_rows; r++) {
        const float *x = mm->x + r * mm->ldx;
        for (size_t j = 0; j < n_cols; j++) acc[j] += (double)x[j] * (double)x[j];
    }
    en->counts[m] += (int64_t)mm->n_rows;
}

int smelt_imxc_build(const smelt_imxc *c, uint32_t chunk_size, const char *const *datasets, size_t n_datasets,
                     smelt_imx **out, smelt_err *e)
{
    *out = NULL;
    if (c->rc) {
        if (e) *e = c->err;
        return c->rc;
    }
    if (!c->n)
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "no matrix product was collected (the model has no blk.* weights)");
    if (!chunk_size) return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "chunk size 0");
    smelt_imx *m = smelt_imx_new();
    float *tmp = NULL;
    size_t tmp_n = 0;
    int rc = m ? 0 : SMELT_NOMEM(e, "the imatrix");
    int64_t max_count = 0;
    for (size_t i = 0; !rc && i < c->n; i++) {
        const centry *en = &c->en[i];
        size_t nv = (size_t)(en->n_cols * en->n_mat);
        if (nv > tmp_n) {
            float *t = realloc(tmp, nv * sizeof(float));
            if (!t) {
                rc = SMELT_NOMEM(e, "an imatrix row");
                break;
            }
            tmp = t;
            tmp_n = nv;
        }
        for (uint64_t k = 0; !rc && k < en->n_mat; k++) {
            if (en->counts[k] > max_count) max_count = en->counts[k];
            for (uint64_t j = 0; j < en->n_cols; j++) {
                double v = en->sums[k * en->n_cols + j];
                tmp[k * en->n_cols + j] = (float)v;
                if (!isfinite(tmp[k * en->n_cols + j])) {
                    if (en->n_mat > 1)
                        rc = SMELT_ERR(e, SMELT_EFORMAT, NULL, en->name,
                                       "the activations reaching expert %" PRIu64 " are not finite (column %" PRIu64
                                       " sums to %g): the model produces NaN/Inf on this text",
                                       k, j, v);
                    else
                        rc = SMELT_ERR(e, SMELT_EFORMAT, NULL, en->name,
                                       "the activations are not finite (column %" PRIu64
                                       " sums to %g): the model produces NaN/Inf on this text",
                                       j, v);
                    break;
                }
            }
        }
        if (!rc) rc = smelt_imx_add(m, en->name, nv, en->n_mat, tmp, en->counts, e);
    }
    for (size_t i = 0; !rc && i < n_datasets; i++) rc = smelt_imx_add_dataset(m, datasets[i], e);
    free(tmp);
    if (rc) {
        smelt_imx_free(m);
        return rc;
    }
    m->chunk_size = chunk_size;
    m->chunk_count = (uint32_t)(max_count / chunk_size);
    m->has_metadata = true;
    *out = m;
    return 0;
}

/* ==== the run ==== */

void smelt_imatrix_opts_default(smelt_imatrix_opts *o)
{
    memset(o, 0, sizeof *o);
    o->format = SMELT_IMX_GGUF;
    o->n_chunks = -1;
    o->isa = -1;
}

void smelt_imatrix_result_free(smelt_imatrix_result *r)
{
    if (!r) return;
    smelt_ppl_result_free(&r->ppl);
    smelt_imx_free(r->imx);
    r->imx = NULL;
}

/* The output may be neither the model nor the calibration text. */
static int check_output_path(const smelt_imatrix_opts *o, smelt_err *e)
{
    const smelt_guard_input in[] = {{o->model, "the model"}, {o->text, "the calibration text"}};
    return smelt_guard_check_file_against(o->output, in, 2, e);
}

int smelt_imatrix_run(const smelt_imatrix_opts *o, smelt_imatrix_result *r, smelt_ppl_chunk_fn fn, void *user,
                      smelt_err *e)
{
    memset(r, 0, sizeof *r);
    if (!o->model) return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "no model given");
    if (!o->text) return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "no calibration text given");
    if (!o->output || !*o->output) return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "no output file given");
    if (o->format != SMELT_IMX_GGUF && o->format != SMELT_IMX_LEGACY)
        return SMELT_ERR(e, SMELT_EUSAGE, o->output, NULL, "unknown imatrix format %d", o->format);
    int rc = check_output_path(o, e);
    if (rc) return rc;

    smelt_imxc *c;
    if ((rc = smelt_imxc_new(o->process_output, &c, e))) return rc;
    smelt_ppl_opts po;
    smelt_ppl_opts_default(&po);
    po.model = o->model;
    po.text = o->text;
    po.n_ctx = o->n_ctx;
    po.n_chunks = o->n_chunks;
    po.n_batch = o->n_batch;
    po.n_threads = o->n_threads;
    po.isa = o->isa;
    po.hook = smelt_imxc_hook;
    po.hook_user = c;
    po.all_logits = true; /* llama-imatrix requests every position's logits */
    po.purpose = "an importance matrix";
    if ((rc = smelt_ppl_run(&po, &r->ppl, fn, user, e))) goto done;
    const char *ds[1] = {o->text};
    if ((rc = smelt_imxc_build(c, r->ppl.n_ctx, ds, 1, &r->imx, e))) goto done;
    r->chunk_size = r->imx->chunk_size;
    r->chunk_count = r->imx->chunk_count;
    r->n_entries = r->imx->n_entries;
    for (size_t i = 0; i < r->imx->n_entries; i++) {
        const smelt_imx_entry *en = &r->imx->entries[i];
        uint64_t zeros = 0;
        for (uint64_t k = 0; k < en->n_mat; k++) zeros += en->counts[k] == 0;
        if (!zeros) continue;
        r->n_partial++;
        if (zeros == en->n_mat)
            smelt_note(&o->notes, "entry '%s' has no data%s", en->name,
                       o->format == SMELT_IMX_LEGACY ? " - skipped in the legacy format" : "");
        else
            smelt_note(&o->notes,
                       "entry '%s' has partial data (%.2f%%): %" PRIu64 " of %" PRIu64 " experts received no token%s",
                       en->name, 100.0 * (double)(en->n_mat - zeros) / (double)en->n_mat, zeros, en->n_mat,
                       o->format == SMELT_IMX_LEGACY ? " (stored as 1 in the legacy format)" : "");
    }
    rc = smelt_imx_write(r->imx, o->output, o->format, e);
done:
    smelt_imxc_free(c);
    if (rc) smelt_imatrix_result_free(r);
    return rc;
}
