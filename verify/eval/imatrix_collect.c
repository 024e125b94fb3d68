/* imatrix_collect.c — the importance-matrix collector (a forward-pass matmul hook) and the
 * smelt-imatrix run over llama-perplexity's chunk loop.
 * Includes formats/, verify/{forward,ppl,imatrix_collect}.h. */
#include "imatrix_collect.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/base/file.h"
#include "formats/base/guard.h"
#include "formats/base/hash.h"
#include "formats/base/names.h"

/* ==== collector ==== */

typedef struct {
    char *name;       /* owned: the model (and its names) is gone when the imatrix is built */
    uint64_t n_cols, n_mat;
    uint64_t *sums;   /* n_mat x n_cols exact sums, 2 words each (formats/imatrix.h) */
    int64_t *counts;  /* n_mat */
    bool bad;         /* a square that is not finite (or beyond 2^64) was met: */
    uint64_t bad_mat, bad_col;
    double bad_value; /* the first one */
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
    centry en = {strdup(name), n_cols, n_mat, calloc(2 * n_cols * n_mat, sizeof(uint64_t)), calloc(n_mat, sizeof(int64_t))};
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
    /* Σ x² per column in exact fixed point: the order of the rows does not matter */
    uint64_t *acc = en->sums + 2 * m * n_cols;
    for (size_t r = 0; r < mm->n_rows; r++) {
        const float *x = mm->x + r * mm->ldx;
        for (size_t j = 0; j < n_cols; j++) {
            const double v = (double)x[j] * (double)x[j];
            if (!smelt_imx_fixed_add_double(acc + 2 * j, v) && !en->bad) {
                en->bad = true;
                en->bad_mat = m;
                en->bad_col = j;
                en->bad_value = v;
            }
        }
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
        for (uint64_t k = 0; k < en->n_mat; k++)
            if (en->counts[k] > max_count) max_count = en->counts[k];
        for (size_t j = 0; j < nv; j++) tmp[j] = smelt_imx_fixed_f32(en->sums + 2 * j);
        if (en->bad) {
            const char *what = isfinite(en->bad_value) ? "are too large (squares summed beyond 2^64)" : "are not finite";
            if (en->n_mat > 1)
                rc = SMELT_ERR(e, SMELT_EFORMAT, NULL, en->name,
                               "the activations reaching expert %" PRIu64 " %s (column %" PRIu64
                               " sums to %g): the model produces NaN/Inf on this text",
                               en->bad_mat, what, en->bad_col, en->bad_value);
            else
                rc = SMELT_ERR(e, SMELT_EFORMAT, NULL, en->name,
                               "the activations %s (column %" PRIu64
                               " sums to %g): the model produces NaN/Inf on this text",
                               what, en->bad_col, en->bad_value);
            break;
        }
        if (!rc) rc = smelt_imx_add(m, en->name, nv, en->n_mat, tmp, en->counts, e);
        smelt_imx_entry *out_en = rc ? NULL : (smelt_imx_entry *)smelt_imx_find(m, en->name);
        if (out_en && !(out_en->exact = malloc(2 * nv * sizeof(uint64_t)))) rc = SMELT_NOMEM(e, "an imatrix entry");
        if (out_en && out_en->exact) memcpy(out_en->exact, en->sums, 2 * nv * sizeof(uint64_t));
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

/* ==== checkpoint ====
 * Little-endian binary: "SMELTIMXCKPT" + u32 version; the run's identity (ckpt_id); u64
 * chunks done (absolute index of the next chunk); u32 n_entries; per entry u32 name
 * length, name, u64 n_cols, u64 n_mat, i64 counts[n_mat], u64 sums[n_mat x n_cols x 2]
 * (the collector's exact sums); then the xxh64 of every byte before it. A resumed run adds
 * the remaining chunks to the same exact sums. */

static const char CKPT_MAGIC[12] = {'S', 'M', 'E', 'L', 'T', 'I', 'M', 'X', 'C', 'K', 'P', 'T'};
enum { CKPT_VERSION = 1 };

typedef struct {
    uint64_t model_size, model_hash, text_hash;
    uint64_t n_chunks, chunk_begin, chunk_end; /* as requested (UINT64_MAX: all / to the last) */
    uint32_t n_ctx, process_output;
} ckpt_id;

/* The model by its size and a hash of its first 4 MiB (the whole header) and 256 blocks of
 * 4 KiB spread evenly over the rest: cheap on a 100 GB file, and two different models (or a
 * changed one) differ in it. */
static int model_fingerprint(const char *path, uint64_t *size, uint64_t *hash, smelt_err *e)
{
    smelt_map map;
    int rc = smelt_map_open(&map, path, e);
    if (rc) return rc;
    smelt_xxh64_state *h = smelt_xxh64_new();
    if (!h) {
        smelt_map_close(&map);
        return SMELT_NOMEM(e, "a hash state");
    }
    const uint64_t head = 4u << 20, block = 4096, n_blocks = 256;
    smelt_xxh64_update(h, map.data, (size_t)(map.size < head ? map.size : head));
    if (map.size > head + block) {
        const uint64_t stride = (map.size - head - block) / n_blocks;
        for (uint64_t i = 0; stride && i < n_blocks; i++) smelt_xxh64_update(h, map.data + head + i * stride, block);
    }
    *size = map.size;
    *hash = smelt_xxh64_digest(h);
    smelt_xxh64_free(h);
    smelt_map_close(&map);
    return 0;
}

static int run_identity(const smelt_imatrix_opts *o, ckpt_id *id, smelt_err *e)
{
    memset(id, 0, sizeof *id);
    int rc = model_fingerprint(o->model, &id->model_size, &id->model_hash, e);
    char *text = NULL;
    size_t len = 0;
    if (!rc) rc = smelt_ppl_read_text(o->text, &text, &len, e);
    if (rc) return rc;
    id->text_hash = smelt_xxh64(text, len);
    free(text);
    id->n_chunks = o->n_chunks < 0 ? UINT64_MAX : (uint64_t)o->n_chunks;
    id->chunk_begin = o->chunk_begin;
    id->chunk_end = o->chunk_end ? o->chunk_end : UINT64_MAX;
    id->n_ctx = o->n_ctx ? o->n_ctx : 512;
    id->process_output = o->process_output;
    return 0;
}

static int put(smelt_outfile *f, smelt_xxh64_state *h, const void *p, size_t n, smelt_err *e)
{
    smelt_xxh64_update(h, p, n);
    return smelt_outfile_write(f, p, n, e);
}

static int ckpt_write(const smelt_imxc *c, const ckpt_id *id, uint64_t done, const char *path, smelt_err *e)
{
    for (size_t i = 0; i < c->n; i++) /* the run will fail: keep the last good checkpoint */
        if (c->en[i].bad)
            return SMELT_ERR(e, SMELT_EFORMAT, path, c->en[i].name, "activations that are not finite were met");
    smelt_xxh64_state *h = smelt_xxh64_new();
    if (!h) return SMELT_NOMEM(e, "a hash state");
    smelt_outfile *f;
    int rc = smelt_outfile_open(&f, path, e);
    if (rc) {
        smelt_xxh64_free(h);
        return rc;
    }
    const uint32_t version = CKPT_VERSION, n = (uint32_t)c->n;
    rc = put(f, h, CKPT_MAGIC, sizeof CKPT_MAGIC, e);
    if (!rc) rc = put(f, h, &version, 4, e);
    if (!rc) rc = put(f, h, id, sizeof *id, e);
    if (!rc) rc = put(f, h, &done, 8, e);
    if (!rc) rc = put(f, h, &n, 4, e);
    for (size_t i = 0; !rc && i < c->n; i++) {
        const centry *en = &c->en[i];
        const uint32_t len = (uint32_t)strlen(en->name);
        rc = put(f, h, &len, 4, e);
        if (!rc) rc = put(f, h, en->name, len, e);
        if (!rc) rc = put(f, h, &en->n_cols, 8, e);
        if (!rc) rc = put(f, h, &en->n_mat, 8, e);
        if (!rc) rc = put(f, h, en->counts, en->n_mat * sizeof(int64_t), e);
        if (!rc) rc = put(f, h, en->sums, 2 * en->n_mat * en->n_cols * sizeof(uint64_t), e);
    }
    const uint64_t digest = smelt_xxh64_digest(h);
    smelt_xxh64_free(h);
    if (!rc) rc = smelt_outfile_write(f, &digest, 8, e);
    if (rc) {
        smelt_outfile_abort(f);
        return rc;
    }
    return smelt_outfile_commit(f, e);
}

typedef struct {
    const uint8_t *p;
    uint64_t size, off;
} ckpt_rd;

static const void *take(ckpt_rd *r, uint64_t n)
{
    if (n > r->size - r->off) return NULL;
    const void *p = r->p + r->off;
    r->off += n;
    return p;
}

/* Little-endian integers at any alignment; false past the end. */
static bool take_u32(ckpt_rd *r, uint32_t *v)
{
    const void *p = take(r, 4);
    if (p) memcpy(v, p, 4);
    return p != NULL;
}

static bool take_u64(ckpt_rd *r, uint64_t *v)
{
    const void *p = take(r, 8);
    if (p) memcpy(v, p, 8);
    return p != NULL;
}

/* What differs between the checkpoint's run and this one, or NULL. */
static const char *id_difference(const ckpt_id *a, const ckpt_id *b)
{
    if (a->model_size != b->model_size || a->model_hash != b->model_hash) return "the model";
    if (a->text_hash != b->text_hash) return "the calibration text";
    if (a->n_ctx != b->n_ctx) return "the context size (-c)";
    if (a->n_chunks != b->n_chunks) return "the number of chunks (--chunks)";
    if (a->chunk_begin != b->chunk_begin || a->chunk_end != b->chunk_end) return "the chunk range (--chunk-range)";
    if (a->process_output != b->process_output) return "--process-output";
    return NULL;
}

/* Restore the collector from the checkpoint at path; *done receives the next chunk. */
static int ckpt_read(smelt_imxc *c, const ckpt_id *id, const char *path, uint64_t *done, smelt_err *e)
{
    smelt_map map;
    int rc = smelt_map_open(&map, path, e);
    if (rc) return rc;
    ckpt_rd r = {map.data, map.size, 0};
    const uint8_t *magic = take(&r, sizeof CKPT_MAGIC);
    const char *what = NULL;
    uint32_t version = 0, n = 0;
    uint64_t digest = 0;
    ckpt_id saved;
    if (!magic || memcmp(magic, CKPT_MAGIC, sizeof CKPT_MAGIC)) {
        rc = SMELT_ERR_AT(e, SMELT_EFORMAT, path, 0, NULL, "not a smelt-imatrix checkpoint");
        goto done;
    }
    if (map.size >= r.off + 8) memcpy(&digest, map.data + map.size - 8, 8);
    if (map.size < r.off + 8 || smelt_xxh64(map.data, (size_t)(map.size - 8)) != digest) {
        rc = SMELT_ERR_AT(e, SMELT_EFORMAT, path, map.size < 8 ? 0 : map.size - 8, NULL,
                          "checksum mismatch: the checkpoint is damaged");
        goto done;
    }
    r.size -= 8;
    if (!take_u32(&r, &version) || version != CKPT_VERSION) {
        rc = SMELT_ERR_AT(e, SMELT_EUNSUPPORTED, path, sizeof CKPT_MAGIC, NULL, "checkpoint version %u, expected %d",
                          version, CKPT_VERSION);
        goto done;
    }
    const void *p = take(&r, sizeof saved);
    if (!p || !take_u64(&r, done) || !take_u32(&r, &n)) goto truncated;
    memcpy(&saved, p, sizeof saved);
    if ((what = id_difference(&saved, id))) {
        rc = SMELT_ERR(e, SMELT_EMISMATCH, path, NULL,
                       "checkpoint of another run (%s differs): remove it to start over, or give another "
                       "--checkpoint path",
                       what);
        goto done;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t len = 0;
        uint64_t n_cols = 0, n_mat = 0;
        const char *name = take_u32(&r, &len) && len && len < 4096 ? take(&r, len) : NULL;
        if (!name || !take_u64(&r, &n_cols) || !take_u64(&r, &n_mat) || !n_cols || !n_mat || n_cols > UINT32_MAX ||
            n_mat > 65536)
            goto truncated;
        const void *counts = take(&r, n_mat * 8), *sums = counts ? take(&r, 2 * n_mat * n_cols * 8) : NULL;
        if (!sums) goto truncated;
        char nm[4096];
        memcpy(nm, name, len);
        nm[len] = '\0';
        centry *en = entry_for(c, nm, n_cols, n_mat);
        if (!en) {
            rc = c->rc;
            if (e) *e = c->err;
            goto done;
        }
        memcpy(en->counts, counts, n_mat * 8);
        memcpy(en->sums, sums, 2 * n_mat * n_cols * 8);
    }
    if (r.off != r.size) goto truncated;
    goto done;
truncated:
    rc = SMELT_ERR_AT(e, SMELT_EFORMAT, path, r.off, NULL, "checkpoint entry runs past its data or is malformed");
done:
    smelt_map_close(&map);
    return rc;
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
static int check_output_path(const smelt_imatrix_opts *o, const char *out, smelt_err *e)
{
    const smelt_guard_input in[] = {{o->model, "the model"}, {o->text, "the calibration text"}};
    return smelt_guard_check_file_against(out, in, 2, e);
}

/* The chunk callback of a run with a checkpoint: save at the end of a batch once
 * save_every chunks were added since the last save, then call the caller's callback. */
typedef struct {
    const smelt_imatrix_opts *o;
    const smelt_imxc *c;
    const ckpt_id *id;
    smelt_imatrix_result *r;
    uint64_t last_saved;
    smelt_ppl_chunk_fn fn;
    void *user;
} saver;

static void on_chunk_save(void *user, const smelt_ppl_result *p)
{
    saver *s = user;
    const uint64_t done = p->chunk_begin + p->chunks_done;
    if (p->chunks_done == p->chunks_evaluated && p->chunks_done < p->n_chunks &&
        done - s->last_saved >= s->o->save_every) {
        smelt_err err;
        smelt_err_clear(&err);
        if (ckpt_write(s->c, s->id, done, s->o->checkpoint, &err)) {
            char msg[512];
            smelt_err_format(&err, msg, sizeof msg);
            smelt_note(&s->o->notes, "checkpoint not written (the run goes on): %s", msg);
        } else {
            s->r->checkpoints++;
        }
        s->last_saved = done;
    }
    if (s->fn) s->fn(s->user, p);
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
    int rc = check_output_path(o, o->output, e);
    if (rc) return rc;
    const bool ckpt = o->save_every > 0 && o->checkpoint;
    if (ckpt && (rc = check_output_path(o, o->checkpoint, e))) return rc;
    if (ckpt && (!strcmp(o->checkpoint, o->output) || smelt_same_file(o->checkpoint, o->output)))
        return SMELT_ERR(e, SMELT_EUSAGE, o->checkpoint, NULL, "the checkpoint cannot be the output");

    smelt_imxc *c;
    if ((rc = smelt_imxc_new(o->process_output, &c, e))) return rc;
    ckpt_id id;
    uint64_t done = o->chunk_begin;
    if (ckpt && (rc = run_identity(o, &id, e))) goto done;
    if (ckpt && smelt_file_exists(o->checkpoint)) {
        if ((rc = ckpt_read(c, &id, o->checkpoint, &done, e))) goto done;
        r->resumed_chunks = done - o->chunk_begin;
    }
    saver sv = {o, c, &id, r, done, fn, user};
    smelt_ppl_opts po;
    smelt_ppl_opts_default(&po);
    po.model = o->model;
    po.text = o->text;
    po.n_ctx = o->n_ctx;
    po.n_chunks = o->n_chunks;
    po.chunk_begin = done;
    po.chunk_end = o->chunk_end;
    po.n_batch = o->n_batch;
    po.n_threads = o->n_threads;
    po.isa = o->isa;
    po.hook = smelt_imxc_hook;
    po.hook_user = c;
    po.all_logits = true; /* llama-imatrix requests every position's logits */
    po.purpose = "an importance matrix";
    if ((rc = ckpt ? smelt_ppl_run(&po, &r->ppl, on_chunk_save, &sv, e) : smelt_ppl_run(&po, &r->ppl, fn, user, e)))
        goto done;
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
    /* a slice keeps its exact sums, so that slices combine to the single run bit for bit */
    r->imx->write_exact = o->chunk_begin || o->chunk_end;
    rc = smelt_imx_write(r->imx, o->output, o->format, e);
    if (!rc && ckpt) unlink(o->checkpoint);
done:
    smelt_imxc_free(c);
    if (rc) smelt_imatrix_result_free(r);
    return rc;
}
