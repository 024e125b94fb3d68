/* report.c — smelt-report's measurements (through verify/eval/ppl.h), their cache, and the
 * Markdown, JSON and SVG renderings. Includes formats/, quant/policy.h, verify/. */
#include "report.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/base/file.h"
#include "formats/base/guard.h"
#include "formats/base/hash.h"
#include "formats/gguf.h"
#include "quant/policy.h"
#include "verify/eval/svg.h"

#define REPORT_SCHEMA "smelt-report/1"
#define CACHE_TAG "smelt-report-cache-1"

void smelt_report_opts_default(smelt_report_opts *o)
{
    memset(o, 0, sizeof *o);
    o->n_chunks = -1;
    o->isa = -1;
}

static void row_free(smelt_report_row *w)
{
    free(w->path);
    free(w->file);
    free(w->sweep_ppl);
    free(w->sweep_kld);
}

void smelt_report_free(smelt_report *r)
{
    if (!r) return;
    row_free(&r->base);
    for (size_t i = 0; i < r->n; i++) row_free(&r->rows[i]);
    free(r->rows);
    free(r->model);
    free(r->text);
    free(r->sweep_ctx);
    free(r);
}

/* A copy with invalid UTF-8 and control characters replaced by '?' (file metadata goes
 * into JSON, Markdown and XML). NULL on ENOMEM. */
static char *clean_strn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, k = 0;
    while (i < n) {
        unsigned c = p[i];
        int len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        bool ok = len > 0 && i + (size_t)len <= n;
        for (int j = 1; ok && j < len; j++) ok = (p[i + j] & 0xc0) == 0x80;
        if (!ok || (len == 1 && (c < 0x20 || c == 0x7f))) {
            d[k++] = '?';
            i++;
            continue;
        }
        memcpy(d + k, p + i, (size_t)len);
        k += (size_t)len;
        i += (size_t)len;
    }
    d[k] = 0;
    return d;
}

static char *clean_str(const char *s) { return clean_strn(s, strlen(s)); }

/* ==== file facts ==== */

/* Type, sizes and bits per weight of a GGUF; with name != NULL also general.name. */
static int load_facts(const char *path, smelt_report_row *w, char **name, smelt_err *e)
{
    smelt_gguf *g;
    int rc = smelt_gguf_open(path, 0, &g, e);
    if (rc) return rc;
    w->path = clean_str(path);
    const char *slash = strrchr(path, '/');
    w->file = clean_str(slash ? slash + 1 : path);
    if (!w->path || !w->file) {
        smelt_gguf_close(g);
        return SMELT_NOMEM(e, "a report row");
    }
    w->file_bytes = smelt_gguf_total_size(g);
    uint64_t n_t = smelt_gguf_n_tensors(g);
    int *types = malloc((n_t ? n_t : 1) * sizeof *types);
    if (!types) {
        smelt_gguf_close(g);
        return SMELT_NOMEM(e, "tensor types");
    }
    for (uint64_t i = 0; i < n_t; i++) {
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
        w->tensor_bytes += t->nbytes;
        w->n_params += t->nelements;
        types[i] = t->type;
    }
    w->bpw = w->n_params ? (double)w->tensor_bytes * 8.0 / (double)w->n_params : 0;
    uint32_t ft;
    const smelt_gguf_kv *kv = smelt_gguf_get_kv(g, "general.file_type");
    int ftype;
    if (kv && !smelt_gguf_get_u32(g, "general.file_type", &ft, NULL)) {
        w->file_type = (int)ft;
        ftype = (int)ft;
    } else {
        w->file_type = -1;
        ftype = smelt_ftype_guess(types, (size_t)n_t) & ~SMELT_FTYPE_GUESSED;
    }
    free(types);
    const smelt_ftype_info *fi = smelt_ftype_by_id(ftype);
    if (fi) snprintf(w->type, sizeof w->type, "%s", fi->name);
    else snprintf(w->type, sizeof w->type, "ftype %d", ftype);
    if (name) {
        smelt_str s;
        if (!smelt_gguf_get_str(g, "general.name", &s, NULL) && s.n) *name = clean_strn(s.p, (size_t)s.n);
        else *name = clean_str(w->file);
        if (!*name) rc = SMELT_NOMEM(e, "the model name");
    }
    smelt_gguf_close(g);
    return rc;
}

/* True if the GGUF says it is something other than a model (general.type). */
static bool not_a_model(const char *path)
{
    smelt_gguf *g;
    if (smelt_gguf_open(path, SMELT_GGUF_META_ONLY, &g, NULL)) return false;
    smelt_str s;
    bool other = !smelt_gguf_get_str(g, "general.type", &s, NULL) && !(s.n == 5 && !memcmp(s.p, "model", 5));
    smelt_gguf_close(g);
    return other;
}

/* ==== the list of quants ==== */

typedef struct {
    char **v;
    size_t n, cap;
} strlist;

static int list_add(strlist *l, const char *s, smelt_err *e)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 16;
        char **nv = realloc(l->v, nc * sizeof *nv);
        if (!nv) return SMELT_NOMEM(e, "the file list");
        l->v = nv;
        l->cap = nc;
    }
    if (!(l->v[l->n] = strdup(s))) return SMELT_NOMEM(e, "the file list");
    l->n++;
    return 0;
}

static void list_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int expand_dir(const smelt_report_opts *o, const char *dir, strlist *out, smelt_err *e)
{
    DIR *d = opendir(dir);
    if (!d) return SMELT_ERR(e, SMELT_EIO, dir, NULL, "cannot list the directory: %s", strerror(errno));
    strlist found = {0};
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".gguf") || de->d_name[0] == '.') continue;
        char p[4096];
        if (!smelt_path_join(p, sizeof p, dir, de->d_name)) continue;
        rc = list_add(&found, p, e);
    }
    closedir(d);
    if (found.n) qsort(found.v, found.n, sizeof *found.v, cmp_str);
    for (size_t i = 0; !rc && i < found.n; i++) {
        if (smelt_same_file(found.v[i], o->base)) continue;
        if (not_a_model(found.v[i])) {
            smelt_note(&o->notes, "%s: not a model (general.type), skipped", found.v[i]);
            continue;
        }
        rc = list_add(out, found.v[i], e);
    }
    list_free(&found);
    return rc;
}

/* ==== cache ==== */

typedef struct {
    const char *dir;
    char tmpdir[4096]; /* when no cache directory was given: removed at the end */
    uint64_t base_key;
} cache;

static uint64_t file_key(const char *path, uint64_t salt)
{
    struct stat st;
    char buf[256];
    if (stat(path, &st)) return 0;
    int n = snprintf(buf, sizeof buf, "%s|%" PRIx64 "|%llu|%llu|%lld|%lld.%09ld", CACHE_TAG, salt,
                     (unsigned long long)st.st_dev, (unsigned long long)st.st_ino, (long long)st.st_size,
                     (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    return smelt_xxh64(buf, (size_t)n);
}

static void cache_path(const cache *c, char *buf, size_t n, const char *kind, uint64_t key, const char *ext)
{
    snprintf(buf, n, "%s/%s-%016" PRIx64 "%s", c->dir, kind, key, ext);
}

static int cache_open(const smelt_report_opts *o, cache *c, smelt_err *e)
{
    memset(c, 0, sizeof *c);
    if (o->cache_dir) {
        if (mkdir(o->cache_dir, 0777) && errno != EEXIST)
            return SMELT_ERR(e, SMELT_EIO, o->cache_dir, NULL, "cannot create the cache directory: %s", strerror(errno));
        if (!smelt_is_dir(o->cache_dir))
            return SMELT_ERR(e, SMELT_EUSAGE, o->cache_dir, NULL, "the cache path exists and is not a directory");
        c->dir = o->cache_dir;
        return 0;
    }
    const char *t = getenv("TMPDIR");
    snprintf(c->tmpdir, sizeof c->tmpdir, "%s/smelt-report-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(c->tmpdir))
        return SMELT_ERR(e, SMELT_EIO, c->tmpdir, NULL, "cannot create a temporary directory: %s", strerror(errno));
    c->dir = c->tmpdir;
    return 0;
}

static void cache_close(cache *c)
{
    if (!c->tmpdir[0]) return;
    DIR *d = opendir(c->tmpdir);
    if (d) {
        struct dirent *de;
        char p[4200];
        while ((de = readdir(d)))
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
                smelt_path_join(p, sizeof p, c->tmpdir, de->d_name))
                unlink(p);
        closedir(d);
    }
    rmdir(c->tmpdir);
}

/* The numbers of a row, as stored in the cache (full precision). */
#define ROW_FIELDS(X)                                                                                      \
    X(ppl) X(ppl_err) X(ppl_ratio) X(ppl_ratio_err) X(kld) X(kld_err) X(kld_median) X(kld_p99) X(kld_p999) \
    X(kld_max) X(same_top) X(same_top_err) X(dp_rms)

static int cache_store(const char *path, const smelt_report_row *w, size_t n_chunks, size_t n_scored, uint32_t n_ctx,
                       smelt_err *e)
{
    json_t *j = json_object();
#define PUT(f) json_object_set_new(j, #f, json_real(w->f));
    ROW_FIELDS(PUT)
#undef PUT
    json_object_set_new(j, "n_chunks", json_integer((json_int_t)n_chunks));
    json_object_set_new(j, "n_scored", json_integer((json_int_t)n_scored));
    json_object_set_new(j, "n_ctx", json_integer(n_ctx));
    char *s = json_dumps(j, JSON_REAL_PRECISION(17) | JSON_COMPACT);
    json_decref(j);
    if (!s) return SMELT_NOMEM(e, "a cache entry");
    smelt_outfile *f = NULL;
    int rc = smelt_outfile_open(&f, path, e);
    if (!rc) rc = smelt_outfile_write(f, s, strlen(s), e);
    free(s);
    if (rc) {
        smelt_outfile_abort(f);
        return rc;
    }
    return smelt_outfile_commit(f, e);
}

/* 0 when the entry exists and is complete; the row's numbers are filled in. */
static int cache_load(const char *path, smelt_report_row *w, size_t *n_chunks, size_t *n_scored, uint32_t *n_ctx)
{
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) return -1;
    int bad = 0;
    smelt_report_row t = *w;
#define GET(f)                                                        \
    {                                                                 \
        json_t *v = json_object_get(j, #f);                           \
        if (json_is_number(v)) t.f = json_number_value(v); else bad = 1; \
    }
    ROW_FIELDS(GET)
#undef GET
    json_t *c = json_object_get(j, "n_chunks"), *s = json_object_get(j, "n_scored"), *x = json_object_get(j, "n_ctx");
    if (!json_is_integer(c) || !json_is_integer(s) || !json_is_integer(x)) bad = 1;
    if (!bad) {
        *w = t;
        *n_chunks = (size_t)json_integer_value(c);
        *n_scored = (size_t)json_integer_value(s);
        *n_ctx = (uint32_t)json_integer_value(x);
    }
    json_decref(j);
    return bad ? -1 : 0;
}

/* ==== measuring ==== */

typedef struct {
    const smelt_report_opts *o;
    size_t i, n;
} chunk_ctx;

static void on_chunk(void *user, const smelt_ppl_result *r)
{
    chunk_ctx *c = user;
    if (c->o->on_chunk) c->o->on_chunk(c->o->user, c->i, c->n, r);
}

static void ppl_opts(const smelt_report_opts *o, smelt_ppl_opts *p)
{
    smelt_ppl_opts_default(p);
    p->n_batch = o->n_batch;
    p->n_threads = o->n_threads;
    p->isa = o->isa;
}

static int measure_base(const smelt_report_opts *o, cache *c, smelt_report *r, size_t n_models, smelt_err *e)
{
    char kld[4300], js[4300];
    cache_path(c, kld, sizeof kld, "base", c->base_key, ".kld");
    cache_path(c, js, sizeof js, "base", c->base_key, ".json");
    if (smelt_file_exists(kld) && !cache_load(js, &r->base, &r->n_chunks, &r->n_scored, &r->n_ctx)) {
        r->base.cached = true;
        smelt_note(&o->notes, "%s: base, cached", r->base.file);
        return 0;
    }
    smelt_ppl_opts p;
    ppl_opts(o, &p);
    p.model = o->base;
    p.text = o->text;
    p.n_ctx = o->n_ctx;
    p.n_chunks = o->n_chunks;
    p.kld_base = kld;
    smelt_ppl_result pr;
    chunk_ctx cc = {o, 0, n_models};
    int rc = smelt_ppl_run(&p, &pr, on_chunk, &cc, e);
    if (rc) return rc;
    r->base.ppl = pr.ppl;
    r->base.ppl_err = pr.ppl_err;
    r->n_ctx = pr.n_ctx;
    r->n_chunks = pr.n_chunks;
    r->n_scored = pr.n_scored;
    smelt_ppl_result_free(&pr);
    smelt_note(&o->notes, "%s: base, PPL %.4f", r->base.file, r->base.ppl);
    return cache_store(js, &r->base, r->n_chunks, r->n_scored, r->n_ctx, e);
}

static int measure_quant(const smelt_report_opts *o, cache *c, const smelt_report *r, const char *path,
                         smelt_report_row *w, size_t i, size_t n_models, smelt_err *e)
{
    char kld[4300], js[4300];
    cache_path(c, kld, sizeof kld, "base", c->base_key, ".kld");
    cache_path(c, js, sizeof js, "quant", file_key(path, c->base_key), ".json");
    size_t nc, ns;
    uint32_t nx;
    if (!cache_load(js, w, &nc, &ns, &nx) && nc == r->n_chunks && ns == r->n_scored && nx == r->n_ctx) {
        w->cached = true;
        smelt_note(&o->notes, "%s: %s, cached", w->file, w->type);
        return 0;
    }
    smelt_ppl_opts p;
    ppl_opts(o, &p);
    p.model = path;
    p.kld_in = kld;
    smelt_ppl_result pr;
    chunk_ctx cc = {o, i, n_models};
    int rc = smelt_ppl_run(&p, &pr, on_chunk, &cc, e);
    if (rc) return rc;
    const smelt_kld_stats *k = &pr.kld;
    w->ppl = k->ppl;
    w->ppl_err = k->ppl_err;
    w->ppl_ratio = k->ratio;
    w->ppl_ratio_err = k->ratio_err;
    w->kld = k->kld;
    w->kld_err = k->kld_err;
    w->kld_median = k->kld_median;
    w->kld_p99 = k->kld_p99;
    w->kld_p999 = k->kld_p999;
    w->kld_max = k->kld_max;
    w->same_top = k->same_top;
    w->same_top_err = k->same_top_err;
    w->dp_rms = k->dp_rms;
    smelt_ppl_result_free(&pr);
    smelt_note(&o->notes, "%s: %s, PPL %.4f, KLD %.6f", w->file, w->type, w->ppl, w->kld);
    return cache_store(js, w, r->n_chunks, r->n_scored, r->n_ctx, e);
}

static int cmp_rows(const void *a, const void *b)
{
    const smelt_report_row *x = a, *y = b;
    if (x->bpw != y->bpw) return x->bpw > y->bpw ? -1 : 1;
    int c = strcmp(x->file, y->file);
    return c ? c : strcmp(x->path, y->path);
}

static int sweep_arrays(smelt_report_row *w, size_t n)
{
    w->sweep_ppl = calloc(n, sizeof(double));
    w->sweep_kld = calloc(n, sizeof(double));
    return w->sweep_ppl && w->sweep_kld ? 0 : -1;
}

/* The whole measurement again at each context length of the sweep (the cache keys by n_ctx,
 * so each is measured once); rows are matched by path. */
static int sweep(const smelt_report_opts *o, smelt_report *r, smelt_err *e)
{
    const size_t ns = o->n_ctx_sweep;
    if (!(r->sweep_ctx = malloc(ns * sizeof *r->sweep_ctx)) || sweep_arrays(&r->base, ns))
        return SMELT_NOMEM(e, "the context sweep");
    for (size_t i = 0; i < r->n; i++)
        if (sweep_arrays(&r->rows[i], ns)) return SMELT_NOMEM(e, "the context sweep");
    r->n_sweep = ns;
    for (size_t k = 0; k < ns; k++) {
        smelt_report_opts so = *o;
        so.n_ctx = o->ctx_sweep[k];
        so.ctx_sweep = NULL;
        so.n_ctx_sweep = 0;
        smelt_report *q;
        int rc = smelt_report_run(&so, &q, e);
        if (rc) return rc;
        r->sweep_ctx[k] = q->n_ctx;
        r->base.sweep_ppl[k] = q->base.ppl;
        for (size_t i = 0; i < r->n; i++)
            for (size_t j = 0; j < q->n; j++)
                if (!strcmp(r->rows[i].path, q->rows[j].path)) {
                    r->rows[i].sweep_ppl[k] = q->rows[j].ppl;
                    r->rows[i].sweep_kld[k] = q->rows[j].kld;
                }
        smelt_report_free(q);
    }
    return 0;
}

int smelt_report_run(const smelt_report_opts *o, smelt_report **out, smelt_err *e)
{
    *out = NULL;
    if (!o->base) return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "no base model given");
    if (!o->text) return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "no evaluation text given");
    strlist files = {0};
    cache c;
    memset(&c, 0, sizeof c);
    smelt_report *r = calloc(1, sizeof *r);
    int rc = r ? 0 : SMELT_NOMEM(e, "the report");
    for (size_t i = 0; !rc && i < o->n_quants; i++)
        rc = smelt_is_dir(o->quants[i]) ? expand_dir(o, o->quants[i], &files, e) : list_add(&files, o->quants[i], e);
    if (!rc && !files.n) rc = SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "no quantized model to report on");
    for (size_t i = 0; !rc && i < files.n; i++)
        for (size_t j = 0; !rc && j < i; j++)
            if (!strcmp(files.v[i], files.v[j]) || smelt_same_file(files.v[i], files.v[j]))
                rc = SMELT_ERR(e, SMELT_EUSAGE, files.v[i], NULL, "listed twice (also as %s)", files.v[j]);
    if (rc) goto fail;

    /* facts first: a file that is not a GGUF stops the run before any measurement */
    if ((rc = load_facts(o->base, &r->base, &r->model, e))) goto fail;
    if (!(r->text = clean_str(o->text))) {
        rc = SMELT_NOMEM(e, "the text name");
        goto fail;
    }
    if (!(r->rows = calloc(files.n, sizeof *r->rows))) {
        rc = SMELT_NOMEM(e, "the report rows");
        goto fail;
    }
    for (size_t i = 0; !rc && i < files.n; i++, r->n++) rc = load_facts(files.v[i], &r->rows[i], NULL, e);
    if (rc) goto fail;

    /* the cache key of the base: its identity, the text's bytes, n_ctx and the chunks */
    char *text;
    size_t tl;
    if ((rc = smelt_ppl_read_text(o->text, &text, &tl, e))) goto fail;
    char salt[128];
    int sn = snprintf(salt, sizeof salt, "%016" PRIx64 "|%u|%lld", smelt_xxh64(text, tl), o->n_ctx ? o->n_ctx : 512,
                      (long long)o->n_chunks);
    free(text);
    if ((rc = cache_open(o, &c, e))) goto fail;
    c.base_key = file_key(o->base, smelt_xxh64(salt, (size_t)sn));
    if ((rc = measure_base(o, &c, r, files.n + 1, e))) goto fail;
    for (size_t i = 0; !rc && i < r->n; i++) {
        rc = measure_quant(o, &c, r, files.v[i], &r->rows[i], i + 1, files.n + 1, e);
    }
    if (rc) goto fail;
    qsort(r->rows, r->n, sizeof *r->rows, cmp_rows);
    cache_close(&c);
    list_free(&files);
    if (o->n_ctx_sweep && (rc = sweep(o, r, e))) {
        smelt_report_free(r);
        return rc;
    }
    *out = r;
    return 0;
fail:
    cache_close(&c);
    list_free(&files);
    smelt_report_free(r);
    return rc;
}

/* ==== renderings ==== */

static void fmt_size(char *buf, size_t n, uint64_t bytes)
{
    if (bytes >= 1000000000ull) snprintf(buf, n, "%.2f GB", (double)bytes / 1e9);
    else snprintf(buf, n, "%.2f MB", (double)bytes / 1e6);
}

/* Markdown cell text: '|' and backticks would break the table */
static void md_text(FILE *f, const char *s)
{
    for (; *s; s++) fputc(*s == '|' || *s == '`' ? '_' : *s, f);
}

int smelt_report_markdown(const smelt_report *r, char **out, size_t *len, smelt_err *e)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return SMELT_NOMEM(e, "the Markdown report");
    const smelt_report_row *b = &r->base;
    char sz[32];
    fprintf(f, "## Quantization quality: ");
    md_text(f, r->model);
    fprintf(f, "\n\nBase `");
    md_text(f, b->file);
    fprintf(f, "` (%s, %.2f bpw): perplexity %.4f ± %.4f on `", b->type, b->bpw, b->ppl, b->ppl_err);
    md_text(f, r->text);
    fprintf(f, "`, %zu chunks of %u tokens (%zu tokens scored). KLD: mean KL-divergence of each quant's "
               "next-token distribution from the base's; same top: how often both rank the same token first.\n\n",
            r->n_chunks, r->n_ctx, r->n_scored);
    fprintf(f, "| Type | File | Size | BPW | PPL | ΔPPL | Mean KLD | 99%% KLD | Same top |\n");
    fprintf(f, "|:-----|:-----|-----:|----:|----:|-----:|---------:|--------:|---------:|\n");
    fmt_size(sz, sizeof sz, b->file_bytes);
    fprintf(f, "| %s (base) | `", b->type);
    md_text(f, b->file);
    fprintf(f, "` | %s | %.2f | %.4f ± %.4f | — | — | — | — |\n", sz, b->bpw, b->ppl, b->ppl_err);
    for (size_t i = 0; i < r->n; i++) {
        const smelt_report_row *w = &r->rows[i];
        fmt_size(sz, sizeof sz, w->file_bytes);
        fprintf(f, "| %s | `", w->type);
        md_text(f, w->file);
        fprintf(f, "` | %s | %.2f | %.4f ± %.4f | %+.2f ± %.2f %% | %.6f ± %.6f | %.6f | %.2f ± %.2f %% |\n", sz, w->bpw,
                w->ppl, w->ppl_err, 100.0 * (w->ppl_ratio - 1.0), 100.0 * w->ppl_ratio_err, w->kld, w->kld_err,
                w->kld_p99, 100.0 * w->same_top, 100.0 * w->same_top_err);
    }
    fprintf(f, "\nMeasured with smelt-report: perplexity by llama-perplexity's method, KL-divergence as "
               "`llama-perplexity --kl-divergence` computes it; ΔPPL = PPL(Q)/PPL(base) − 1 on the same tokens.\n");
    for (int table = 0; r->n_sweep && table < 2; table++) {
        fprintf(f, table ? "\n### Mean KL-divergence by context length\n\n| Type | File |"
                         : "\n### Perplexity by context length\n\nEach column is the whole measurement with chunks of that "
                           "many tokens (the second half of each chunk scored).\n\n| Type | File |");
        for (size_t k = 0; k < r->n_sweep; k++) fprintf(f, " %u |", r->sweep_ctx[k]);
        fprintf(f, "\n|:-----|:-----|");
        for (size_t k = 0; k < r->n_sweep; k++) fprintf(f, "----:|");
        fprintf(f, "\n");
        for (size_t i = table; i <= r->n; i++) {
            const smelt_report_row *w = i ? &r->rows[i - 1] : b;
            fprintf(f, "| %s%s | `", w->type, i ? "" : " (base)");
            md_text(f, w->file);
            fprintf(f, "` |");
            for (size_t k = 0; k < r->n_sweep; k++)
                fprintf(f, table ? " %.6f |" : " %.4f |", table ? w->sweep_kld[k] : w->sweep_ppl[k]);
            fprintf(f, "\n");
        }
    }
    if (fclose(f) || !buf) {
        free(buf);
        return SMELT_NOMEM(e, "the Markdown report");
    }
    *out = buf;
    *len = n;
    return 0;
}

static json_t *row_json(const smelt_report_row *w, bool base)
{
    json_t *j = json_object();
    json_object_set_new(j, "path", json_string(w->path));
    json_object_set_new(j, "file", json_string(w->file));
    json_object_set_new(j, "type", json_string(w->type));
    json_object_set_new(j, "file_type", w->file_type >= 0 ? json_integer(w->file_type) : json_null());
    json_object_set_new(j, "file_bytes", json_integer((json_int_t)w->file_bytes));
    json_object_set_new(j, "tensor_bytes", json_integer((json_int_t)w->tensor_bytes));
    json_object_set_new(j, "n_params", json_integer((json_int_t)w->n_params));
    json_object_set_new(j, "bpw", json_real(w->bpw));
    json_object_set_new(j, "ppl", json_real(w->ppl));
    json_object_set_new(j, "ppl_err", json_real(w->ppl_err));
    if (base) return j;
    json_object_set_new(j, "ppl_ratio", json_real(w->ppl_ratio));
    json_object_set_new(j, "ppl_ratio_err", json_real(w->ppl_ratio_err));
    json_object_set_new(j, "delta_ppl_pct", json_real(100.0 * (w->ppl_ratio - 1.0)));
    json_object_set_new(j, "delta_ppl_pct_err", json_real(100.0 * w->ppl_ratio_err));
    json_t *k = json_object();
    json_object_set_new(k, "mean", json_real(w->kld));
    json_object_set_new(k, "mean_err", json_real(w->kld_err));
    json_object_set_new(k, "median", json_real(w->kld_median));
    json_object_set_new(k, "p99", json_real(w->kld_p99));
    json_object_set_new(k, "p99_9", json_real(w->kld_p999));
    json_object_set_new(k, "max", json_real(w->kld_max));
    json_object_set_new(j, "kld", k);
    json_object_set_new(j, "same_top", json_real(w->same_top));
    json_object_set_new(j, "same_top_err", json_real(w->same_top_err));
    json_object_set_new(j, "delta_p_rms", json_real(w->dp_rms));
    return j;
}

int smelt_report_json(const smelt_report *r, char **out, size_t *len, smelt_err *e)
{
    json_t *j = json_object();
    json_object_set_new(j, "schema", json_string(REPORT_SCHEMA));
    json_object_set_new(j, "model", json_string(r->model));
    json_t *ev = json_object();
    json_object_set_new(ev, "text", json_string(r->text));
    json_object_set_new(ev, "n_ctx", json_integer(r->n_ctx));
    json_object_set_new(ev, "n_chunks", json_integer((json_int_t)r->n_chunks));
    json_object_set_new(ev, "n_scored", json_integer((json_int_t)r->n_scored));
    json_object_set_new(j, "eval", ev);
    json_object_set_new(j, "base", row_json(&r->base, true));
    json_t *q = json_array();
    for (size_t i = 0; i < r->n; i++) json_array_append_new(q, row_json(&r->rows[i], false));
    json_object_set_new(j, "quants", q);
    if (r->n_sweep) {
        json_t *sw = json_object(), *ctx = json_array(), *models = json_array();
        for (size_t k = 0; k < r->n_sweep; k++) json_array_append_new(ctx, json_integer(r->sweep_ctx[k]));
        for (size_t i = 0; i <= r->n; i++) {
            const smelt_report_row *w = i ? &r->rows[i - 1] : &r->base;
            json_t *m = json_object(), *ppl = json_array(), *kld = json_array();
            json_object_set_new(m, "file", json_string(w->file));
            json_object_set_new(m, "type", json_string(w->type));
            json_object_set_new(m, "base", json_boolean(i == 0));
            for (size_t k = 0; k < r->n_sweep; k++) {
                json_array_append_new(ppl, json_real(w->sweep_ppl[k]));
                json_array_append_new(kld, json_real(w->sweep_kld[k]));
            }
            json_object_set_new(m, "ppl", ppl);
            if (i) json_object_set_new(m, "kld", kld);
            else json_decref(kld);
            json_array_append_new(models, m);
        }
        json_object_set_new(sw, "n_ctx", ctx);
        json_object_set_new(sw, "models", models);
        json_object_set_new(j, "ctx_sweep", sw);
    }
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(10));
    json_decref(j);
    if (!s) return SMELT_NOMEM(e, "the JSON report");
    size_t n = strlen(s);
    char *t = realloc(s, n + 2);
    if (!t) {
        free(s);
        return SMELT_NOMEM(e, "the JSON report");
    }
    t[n] = '\n';
    t[n + 1] = 0;
    *out = t;
    *len = n + 1;
    return 0;
}

int smelt_report_svg(const smelt_report *r, char **out, size_t *len, smelt_err *e)
{
    smelt_svg_point *pts = calloc(r->n ? r->n : 1, sizeof *pts);
    if (!pts) return SMELT_NOMEM(e, "the plot");
    for (size_t i = 0; i < r->n; i++) {
        const smelt_report_row *w = &r->rows[i];
        /* the type names a point, or the file when two rows share a type */
        bool dup = false;
        for (size_t j = 0; j < r->n; j++) dup |= j != i && !strcmp(r->rows[j].type, w->type);
        pts[i] = (smelt_svg_point){w->bpw, w->kld, dup ? w->file : w->type, false};
    }
    char title[512], sub[1024];
    const char *tslash = strrchr(r->text, '/');
    snprintf(title, sizeof title, "%s: KL-divergence vs size (base %s, PPL %.4f)", r->model, r->base.type, r->base.ppl);
    snprintf(sub, sizeof sub, "mean KLD from %s (PPL %.4f \xc2\xb1 %.4f) on %s, %zu chunks of %u tokens", r->base.file,
             r->base.ppl, r->base.ppl_err, tslash ? tslash + 1 : r->text, r->n_chunks, r->n_ctx);
    smelt_svg_plot p = {title, sub, "bits per weight", "mean KL-divergence (log scale)", pts, r->n, true};
    int rc = smelt_svg_render(&p, out, len, e);
    free(pts);
    return rc;
}

int smelt_report_ctx_svg(const smelt_report *r, char **out, size_t *len, smelt_err *e)
{
    size_t np = (r->n + 1) * r->n_sweep;
    smelt_svg_point *pts = calloc(np ? np : 1, sizeof *pts);
    if (!pts) return SMELT_NOMEM(e, "the plot");
    size_t m = 0;
    for (size_t i = 0; i <= r->n; i++) {
        const smelt_report_row *w = i ? &r->rows[i - 1] : &r->base;
        for (size_t k = 0; k < r->n_sweep; k++) /* the line is named at its last point */
            pts[m++] = (smelt_svg_point){r->sweep_ctx[k], w->sweep_ppl[k], k + 1 == r->n_sweep ? w->type : NULL, i == 0,
                                         (int)(i % 8)};
    }
    char title[512], sub[1024];
    const char *tslash = strrchr(r->text, '/');
    snprintf(title, sizeof title, "%s: perplexity by context length", r->model);
    snprintf(sub, sizeof sub, "%s, base %s (square marks); the second half of each chunk scored",
             tslash ? tslash + 1 : r->text, r->base.file);
    smelt_svg_plot p = {title, sub, "context length (tokens)", "perplexity (log scale)", pts, m, true, true};
    int rc = smelt_svg_render(&p, out, len, e);
    free(pts);
    return rc;
}

static const char *const k_output_ext[4] = {".md", ".json", ".svg", "-ctx.svg"};

int smelt_report_check_outputs(const smelt_report_opts *o, const char *prefix, smelt_err *e)
{
    smelt_guard *g = smelt_guard_new();
    if (!g) return SMELT_NOMEM(e, "the list of inputs");
    int rc = smelt_guard_add(g, o->base, "the base model", NULL, e);
    if (!rc) rc = smelt_guard_add(g, o->text, "the evaluation text", NULL, e);
    for (size_t i = 0; !rc && i < o->n_quants; i++)
        rc = smelt_guard_add(g, o->quants[i], smelt_is_dir(o->quants[i]) ? "a directory of quants" : "a quant",
                             smelt_guard_reads_gguf, e);
    for (int k = 0; !rc && k < (o->n_ctx_sweep ? 4 : 3); k++) {
        char path[4200];
        snprintf(path, sizeof path, "%s%s", prefix, k_output_ext[k]);
        rc = smelt_guard_check_file(g, path, e);
    }
    if (!rc && o->cache_dir) rc = smelt_guard_check_dir(g, o->cache_dir, e);
    smelt_guard_free(g);
    return rc;
}

int smelt_report_write(const smelt_report *r, const char *prefix, smelt_err *e)
{
    const char *const *ext = k_output_ext;
    for (int k = 0; k < (r->n_sweep ? 4 : 3); k++) {
        char *s;
        size_t n;
        int rc = k == 0 ? smelt_report_markdown(r, &s, &n, e) : k == 1 ? smelt_report_json(r, &s, &n, e)
                                                             : k == 2 ? smelt_report_svg(r, &s, &n, e)
                                                                      : smelt_report_ctx_svg(r, &s, &n, e);
        if (rc) return rc;
        char path[4200];
        snprintf(path, sizeof path, "%s%s", prefix, ext[k]);
        smelt_outfile *f = NULL;
        rc = smelt_outfile_open(&f, path, e);
        if (!rc) rc = smelt_outfile_write(f, s, n, e);
        free(s);
        if (rc) {
            smelt_outfile_abort(f);
            return rc;
        }
        if ((rc = smelt_outfile_commit(f, e))) return rc;
    }
    return 0;
}
