/* integrity.c — see integrity.h. Includes formats/ (file, hash, pool) and verify/integrity/checkpoint.h. */
#include "integrity.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "formats/base/file.h"
#include "formats/base/hash.h"
#include "formats/base/pool.h"
#include "formats/base/strbuf.h"
#include "formats/manifest.h"

#define CHUNK_ELEMS (256u * 1024u) /* floats decoded per task */
#define HASH_PIECE (1u << 20)      /* bytes hashed per update (stays in cache for both states) */

void smelt_verify_opts_default(smelt_verify_opts *o)
{
    memset(o, 0, sizeof *o);
    o->values = true;
}

void smelt_hex64(uint64_t h, char buf[17]) { snprintf(buf, 17, "%016" PRIx64, h); }

/* ==== scan ==== */

typedef struct {
    uint64_t n_nan, n_inf;
    float max_abs;
    int rc;
    smelt_err err;
} part;

typedef struct {
    const smelt_checkpoint_tensor *t;
    XXH64_state_t *model;
    uint64_t hash;
    bool hash_failed;
    uint64_t chunk;      /* elements per value task (multiple of the block) */
    size_t n_chunks;
    bool values;
    part *parts;         /* n_chunks */
    float **buf;         /* per thread */
} job;

static void scan_task(void *ctx, size_t task, int thread)
{
    job *j = ctx;
    const smelt_checkpoint_tensor *t = j->t;
    if (task == 0) {
        XXH64_state_t *s = XXH64_createState();
        if (!s) {
            j->hash_failed = true;
            return;
        }
        XXH64_reset(s, 0);
        for (uint64_t off = 0; off < t->nbytes; off += HASH_PIECE) {
            size_t k = (size_t)(t->nbytes - off < HASH_PIECE ? t->nbytes - off : HASH_PIECE);
            XXH64_update(s, t->data + off, k);
            XXH64_update(j->model, t->data + off, k);
        }
        j->hash = XXH64_digest(s);
        XXH64_freeState(s);
        return;
    }
    part *p = &j->parts[task - 1];
    uint64_t first = (uint64_t)(task - 1) * j->chunk;
    uint64_t n = t->nelements - first < j->chunk ? t->nelements - first : j->chunk;
    float *x = j->buf[thread];
    p->rc = smelt_checkpoint_decode(t, first, n, x, &p->err);
    if (p->rc) return;
    uint64_t nan = 0, inf = 0;
    float mx = 0;
    for (uint64_t i = 0; i < n; i++) {
        float v = x[i];
        if (isnan(v)) nan++;
        else if (isinf(v)) inf++;
        else if (fabsf(v) > mx) mx = fabsf(v);
    }
    p->n_nan = nan;
    p->n_inf = inf;
    p->max_abs = mx;
}

static bool is_integer_tensor(const smelt_checkpoint_tensor *t)
{
    if (t->type >= 0)
        return t->type == SMELT_TYPE_I8 || t->type == SMELT_TYPE_I16 || t->type == SMELT_TYPE_I32 ||
               t->type == SMELT_TYPE_I64;
    return !smelt_dtype_is_float((smelt_dtype)t->dtype);
}

int smelt_verify_scan(const smelt_checkpoint *m, const smelt_verify_opts *o, smelt_verify_result *r, smelt_err *e)
{
    smelt_verify_opts def;
    if (!o) {
        smelt_verify_opts_default(&def);
        o = &def;
    }
    memset(r, 0, sizeof *r);
    uint64_t n = smelt_checkpoint_n_tensors(m);
    r->n_tensors = n;
    r->t = calloc(n ? n : 1, sizeof *r->t);
    XXH64_state_t *model = XXH64_createState();
    smelt_pool *pool = smelt_pool_new(o->n_threads);
    int nth = pool ? smelt_pool_threads(pool) : 1;
    float **buf = calloc((size_t)nth, sizeof *buf);
    int rc = 0;
    if (!r->t || !model || !pool || !buf) {
        rc = SMELT_NOMEM(e, "the scan");
        goto out;
    }
    for (int i = 0; i < nth; i++)
        if (!(buf[i] = malloc(sizeof(float) * CHUNK_ELEMS * 2))) {
            rc = SMELT_NOMEM(e, "the decode buffers");
            goto out;
        }
    XXH64_reset(model, 0);
    for (uint64_t i = 0; i < n; i++) {
        const smelt_checkpoint_tensor *t = smelt_checkpoint_tensor_at(m, i);
        smelt_tensor_check *c = &r->t[i];
        job j = {.t = t, .model = model, .buf = buf};
        if (!o->values) c->values = SMELT_VALUES_SKIPPED;
        else if (is_integer_tensor(t)) c->values = SMELT_VALUES_INTEGER;
        else if (!smelt_checkpoint_can_decode(t)) c->values = SMELT_VALUES_UNSUPPORTED;
        else c->values = SMELT_VALUES_CHECKED;
        if (c->values == SMELT_VALUES_CHECKED && t->nelements) {
            uint64_t blk = smelt_checkpoint_block(t);
            j.chunk = blk >= CHUNK_ELEMS ? blk : CHUNK_ELEMS / blk * blk;
            if (j.chunk > CHUNK_ELEMS * 2) {
                c->values = SMELT_VALUES_UNSUPPORTED; /* a block larger than the buffer */
            } else {
                j.n_chunks = (size_t)((t->nelements + j.chunk - 1) / j.chunk);
                j.parts = calloc(j.n_chunks, sizeof *j.parts);
                if (!j.parts) {
                    rc = SMELT_NOMEM(e, "the scan");
                    goto out;
                }
            }
        }
        smelt_pool_run(pool, 1 + j.n_chunks, scan_task, &j);
        if (j.hash_failed) rc = SMELT_NOMEM(e, "a hash state");
        c->xxh64 = j.hash;
        for (size_t k = 0; k < j.n_chunks; k++) {
            part *p = &j.parts[k];
            if (p->rc && !rc) {
                rc = p->rc;
                if (e) *e = p->err;
            }
            c->n_nan += p->n_nan;
            c->n_inf += p->n_inf;
            if (p->max_abs > c->max_abs) c->max_abs = p->max_abs;
        }
        free(j.parts);
        if (rc) goto out;
        r->data_bytes += t->nbytes;
        r->n_nan += c->n_nan;
        r->n_inf += c->n_inf;
        r->n_nonfinite_tensors += (c->n_nan || c->n_inf);
        r->n_unchecked += c->values == SMELT_VALUES_UNSUPPORTED;
        smelt_checkpoint_release(m, i);
        smelt_progress_step(o->progress, i + 1, n, r->data_bytes, t->name);
    }
    r->model_xxh64 = XXH64_digest(model);
out:
    if (buf)
        for (int i = 0; i < nth; i++) free(buf[i]);
    free(buf);
    smelt_pool_free(pool);
    XXH64_freeState(model);
    if (rc) smelt_verify_result_free(r);
    return rc;
}

void smelt_verify_result_free(smelt_verify_result *r)
{
    if (!r) return;
    free(r->t);
    memset(r, 0, sizeof *r);
}

/* ==== manifests ==== */

static const char *default_label(const smelt_checkpoint *m) { return smelt_checkpoint_path(m); }

int smelt_manifest_write(const smelt_checkpoint *m, const smelt_verify_result *r, const char *label, const char *path,
                         smelt_err *e)
{
    if (!label) label = default_label(m);
    for (const char *p = label; *p; p++)
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            return SMELT_ERR(e, SMELT_EUSAGE, path, NULL,
                             "the manifest label '%s' contains whitespace (manifest fields are space-separated)", label);
    smelt_strbuf text = {0};
    for (uint64_t i = 0; i < r->n_tensors; i++)
        smelt_manifest_line(&text, r->t[i].xxh64, label, smelt_checkpoint_tensor_at(m, i)->name);
    smelt_manifest_line(&text, r->model_xxh64, label, NULL);
    int rc = text.oom ? SMELT_NOMEM(e, "manifest") : smelt_outfile_write_all(path, text.text, text.len, e);
    smelt_strbuf_free(&text);
    return rc;
}

typedef struct {
    uint64_t hash;
    char *name; /* points into the manifest text */
    size_t len;
    int line;
} mf_entry;

static int parse_hex64(const char *p, size_t n, uint64_t *out)
{
    if (n != 16) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + (uint64_t)d;
    }
    *out = v;
    return 0;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* Split "type hash name [rest]" (whitespace-separated, as llama-gguf-hash reads it). */
static int fields(char *s, char *f[3], size_t fl[3])
{
    int k = 0;
    while (*s && k < 3) {
        while (*s && is_ws(*s)) s++;
        if (!*s) break;
        f[k] = s;
        while (*s && !is_ws(*s)) s++;
        fl[k] = (size_t)(s - f[k]);
        k++;
    }
    return k;
}

void smelt_manifest_check_free(smelt_manifest_check *c)
{
    if (!c) return;
    free(c->tensor);
    free(c->expect);
    for (size_t i = 0; i < c->n_extra; i++) free(c->extra[i]);
    free(c->extra);
    memset(c, 0, sizeof *c);
}

int smelt_manifest_check_run(const char *manifest, const smelt_checkpoint *m, const smelt_verify_result *r,
                             smelt_manifest_check *c, smelt_err *e)
{
    memset(c, 0, sizeof *c);
    char *text = NULL;
    size_t len = 0;
    int rc = smelt_read_file(manifest, 256u << 20, &text, &len, e);
    if (rc) return rc;
    mf_entry *ent = NULL;
    size_t n_ent = 0, cap = 0;
    int lineno = 0;
    for (char *s = text; s && *s;) {
        char *nl = strchr(s, '\n');
        if (nl) *nl = 0;
        lineno++;
        char *f[3] = {0};
        size_t fl[3] = {0};
        int k = fields(s, f, fl);
        if (k >= 1) {
            if (fl[0] == 5 && !memcmp(f[0], "xxh64", 5)) {
                uint64_t h;
                if (k < 3 || parse_hex64(f[1], fl[1], &h)) {
                    rc = SMELT_ERR(e, SMELT_EFORMAT, manifest, NULL,
                                   "line %d: expected 'xxh64 <16 hex digits> <name>', found '%.80s'", lineno, s);
                    goto out;
                }
                if (n_ent == cap) {
                    cap = cap ? cap * 2 : 64;
                    mf_entry *ne = realloc(ent, cap * sizeof *ent);
                    if (!ne) {
                        rc = SMELT_NOMEM(e, "the manifest");
                        goto out;
                    }
                    ent = ne;
                }
                f[2][fl[2]] = 0;
                ent[n_ent++] = (mf_entry){h, f[2], fl[2], lineno};
            } else if ((fl[0] == 4 && !memcmp(f[0], "sha1", 4)) || (fl[0] == 6 && !memcmp(f[0], "sha256", 6)) ||
                       (fl[0] == 4 && !memcmp(f[0], "uuid", 4))) {
                c->n_other_lines++;
            }
        }
        s = nl ? nl + 1 : NULL;
    }
    if (!n_ent) {
        rc = SMELT_ERR(e, SMELT_EFORMAT, manifest, NULL, "no xxh64 lines (found %" PRIu64 " sha1/sha256/uuid lines)",
                       c->n_other_lines);
        goto out;
    }
    /* the model line is the entry whose name prefixes the most others as "<name>:" */
    size_t model = 0, best = 0;
    for (size_t i = 0; i < n_ent; i++) {
        size_t cnt = 0;
        for (size_t j = 0; j < n_ent; j++)
            if (j != i && ent[j].len > ent[i].len && ent[j].name[ent[i].len] == ':' &&
                !memcmp(ent[j].name, ent[i].name, ent[i].len))
                cnt++;
        if (cnt > best) {
            best = cnt;
            model = i;
        }
    }
    bool has_model_line = best > 0 || n_ent == 1;
    size_t plen = has_model_line ? ent[model].len + 1 : 0;
    if (has_model_line) snprintf(c->label, sizeof c->label, "%s", ent[model].name);
    uint64_t n = r->n_tensors;
    c->tensor = malloc(sizeof *c->tensor * (n ? n : 1));
    c->expect = calloc(n ? n : 1, sizeof *c->expect);
    if (!c->tensor || !c->expect) {
        rc = SMELT_NOMEM(e, "the manifest check");
        goto out;
    }
    for (uint64_t i = 0; i < n; i++) c->tensor[i] = SMELT_MF_ABSENT;
    for (size_t i = 0; i < n_ent; i++) {
        if (has_model_line && i == model) continue;
        const char *name;
        if (has_model_line && ent[i].len > plen && ent[i].name[plen - 1] == ':' &&
            !memcmp(ent[i].name, ent[model].name, plen - 1))
            name = ent[i].name + plen;
        else {
            const char *colon = strrchr(ent[i].name, ':');
            name = colon ? colon + 1 : ent[i].name;
        }
        int64_t ti = smelt_checkpoint_find(m, name);
        if (ti < 0) {
            char **nx = realloc(c->extra, (c->n_extra + 1) * sizeof *nx);
            if (!nx || !(nx[c->n_extra] = strdup(name))) {
                if (nx) c->extra = nx;
                rc = SMELT_NOMEM(e, "the manifest check");
                goto out;
            }
            c->extra = nx;
            c->n_extra++;
            continue;
        }
        c->tensor[ti] = ent[i].hash == r->t[ti].xxh64 ? SMELT_MF_OK : SMELT_MF_MISMATCH;
        c->expect[ti] = ent[i].hash;
    }
    if (has_model_line) c->model_expect = ent[model].hash;
    c->model = !has_model_line ? SMELT_MF_ABSENT : ent[model].hash == r->model_xxh64 ? SMELT_MF_OK : SMELT_MF_MISMATCH;
    for (uint64_t i = 0; i < n; i++) {
        c->n_ok += c->tensor[i] == SMELT_MF_OK;
        c->n_mismatch += c->tensor[i] == SMELT_MF_MISMATCH;
        c->n_absent += c->tensor[i] == SMELT_MF_ABSENT;
    }
    c->ok = c->n_mismatch == 0 && c->n_extra == 0 && c->model != SMELT_MF_MISMATCH &&
            (c->model == SMELT_MF_OK || c->n_ok == n);
out:
    free(ent);
    free(text);
    if (rc) smelt_manifest_check_free(c);
    return rc;
}
