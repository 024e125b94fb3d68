/* safetensors.c — reader, sharded sets and writer for safetensors checkpoints.
 * Includes base/, dtype.h, jansson (header parsing only). */
#include "safetensors.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/ckd.h"
#include "base/file.h"
#include "base/names.h"
#include "base/strbuf.h"
#include "shard_index.h"

struct smelt_st {
    smelt_map map;
    const uint8_t *base;
    uint64_t size;
    char *path;
    uint64_t hlen;
    smelt_st_tensor *t;
    uint64_t n;
    smelt_names index;
    char **meta; /* key, value pairs */
    size_t n_meta;
};

/* Offset of the tensor's name in the JSON header, for error messages. */
static uint64_t name_pos(const smelt_st *st, const char *name)
{
    size_t nl = strlen(name);
    const char *h = (const char *)st->base + 8;
    for (uint64_t i = 0; i + nl + 2 <= st->hlen; i++)
        if (h[i] == '"' && !memcmp(h + i + 1, name, nl) && h[i + 1 + nl] == '"') return 8 + i;
    return 8;
}

static int cmp_begin(const void *a, const void *b)
{
    const smelt_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int parse_entry(smelt_st *st, const char *name, json_t *v, smelt_st_tensor *t, smelt_err *e)
{
    const char *f = st->path;
    t->name = strdup(name);
    if (!t->name) return SMELT_NOMEM(e, "tensor name");
    t->file = st->path;
    if (!json_is_object(v))
        return SMELT_CORRUPT(e, f, name_pos(st, name), name, "header entry is not an object");
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt))
        return SMELT_CORRUPT(e, f, name_pos(st, name), name, "missing or non-string \"dtype\"");
    int d = smelt_dtype_from_name(json_string_value(dt));
    if (d < 0 || !smelt_dtype_supported((smelt_dtype)d))
        return SMELT_ERR_AT(e, SMELT_EUNSUPPORTED, f, name_pos(st, name), name,
                            "unsupported dtype \"%s\" (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL "
                            "F8_E4M3 F8_E5M2)",
                            json_string_value(dt));
    t->dtype = (smelt_dtype)d;
    if (!json_is_array(shape))
        return SMELT_CORRUPT(e, f, name_pos(st, name), name, "missing or non-array \"shape\"");
    size_t nd = json_array_size(shape);
    if (nd > SMELT_ST_MAX_DIMS)
        return SMELT_ERR_AT(e, SMELT_EUNSUPPORTED, f, name_pos(st, name), name,
                            "%zu dimensions; at most %d are supported", nd, SMELT_ST_MAX_DIMS);
    t->n_dims = (uint32_t)nd;
    t->nelements = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *x = json_array_get(shape, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return SMELT_CORRUPT(e, f, name_pos(st, name), name, "shape[%zu] is not a non-negative integer", i);
        t->shape[i] = (uint64_t)json_integer_value(x);
        if (t->shape[i] == 0)
            return SMELT_CORRUPT(e, f, name_pos(st, name), name, "shape[%zu] is 0: a tensor without elements", i);
        if (!smelt_mul_u64(t->nelements, t->shape[i], &t->nelements))
            return SMELT_CORRUPT(e, f, name_pos(st, name), name, "element count overflows");
    }
    if (!json_is_array(offs) || json_array_size(offs) != 2 || !json_is_integer(json_array_get(offs, 0)) ||
        !json_is_integer(json_array_get(offs, 1)))
        return SMELT_CORRUPT(e, f, name_pos(st, name), name, "\"data_offsets\" must be [begin, end]");
    json_int_t b = json_integer_value(json_array_get(offs, 0)), en = json_integer_value(json_array_get(offs, 1));
    if (b < 0 || en < b)
        return SMELT_CORRUPT(e, f, name_pos(st, name), name, "data_offsets [%lld, %lld] are not ordered",
                             (long long)b, (long long)en);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)en;
    uint64_t want;
    if (!smelt_mul_u64(t->nelements, smelt_dtype_size(t->dtype), &want))
        return SMELT_CORRUPT(e, f, name_pos(st, name), name, "byte size overflows");
    if (t->end - t->begin != want)
        return SMELT_CORRUPT(e, f, name_pos(st, name), name,
                             "data_offsets span %" PRIu64 " bytes but shape × %s needs %" PRIu64,
                             t->end - t->begin, smelt_dtype_name(t->dtype), want);
    uint64_t data_size = st->size - 8 - st->hlen;
    if (t->end > data_size)
        return SMELT_CORRUPT(e, f, name_pos(st, name), name,
                             "data_offsets end %" PRIu64 " exceeds the data section (%" PRIu64 " bytes, file size %" PRIu64 ")",
                             t->end, data_size, st->size);
    t->file_offset = 8 + st->hlen + t->begin;
    t->data = st->base + t->file_offset;
    return 0;
}

static int parse_meta(smelt_st *st, json_t *m, smelt_err *e)
{
    if (!json_is_object(m))
        return SMELT_CORRUPT(e, st->path, name_pos(st, "__metadata__"), "__metadata__", "is not an object");
    size_t n = json_object_size(m);
    st->meta = calloc(n * 2 + 1, sizeof *st->meta);
    if (!st->meta) return SMELT_NOMEM(e, "metadata");
    const char *k;
    json_t *v;
    json_object_foreach(m, k, v)
    {
        if (!json_is_string(v))
            return SMELT_CORRUPT(e, st->path, name_pos(st, k), k, "__metadata__ values must be strings");
        st->meta[2 * st->n_meta] = strdup(k);
        st->meta[2 * st->n_meta + 1] = strdup(json_string_value(v));
        if (!st->meta[2 * st->n_meta] || !st->meta[2 * st->n_meta + 1]) return SMELT_NOMEM(e, "metadata");
        st->n_meta++;
    }
    return 0;
}

static int parse(smelt_st *st, smelt_err *e)
{
    const char *f = st->path;
    if (st->size < 8)
        return SMELT_CORRUPT(e, f, 0, NULL, "file is %" PRIu64 " bytes, too short for the 8-byte header length",
                             st->size);
    memcpy(&st->hlen, st->base, 8);
    if (st->hlen > SMELT_ST_MAX_HEADER)
        return SMELT_CORRUPT(e, f, 0, NULL, "header length %" PRIu64 " exceeds the 100 MB limit", st->hlen);
    if (st->hlen > st->size - 8)
        return SMELT_CORRUPT(e, f, 0, NULL, "header length %" PRIu64 " runs past the end of the file (%" PRIu64 " bytes)",
                             st->hlen, st->size);
    if (st->hlen < 2 || st->base[8] != '{')
        return SMELT_CORRUPT(e, f, 8, NULL, "header does not start with '{'");
    json_error_t je;
    json_t *root = json_loadb((const char *)st->base + 8, (size_t)st->hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return SMELT_CORRUPT(e, f, 8 + (uint64_t)(je.position > 0 ? je.position : 0), NULL,
                             "header JSON: %s", je.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = SMELT_CORRUPT(e, f, 8, NULL, "header JSON is not an object");
        goto out;
    }
    size_t n = json_object_size(root);
    st->t = calloc(n + 1, sizeof *st->t);
    if (!st->t) {
        rc = SMELT_NOMEM(e, "tensor table");
        goto out;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        if (!strcmp(k, "__metadata__")) {
            if ((rc = parse_meta(st, v, e))) goto out;
            continue;
        }
        if ((rc = parse_entry(st, k, v, &st->t[st->n], e))) {
            free((void *)st->t[st->n].name);
            goto out;
        }
        st->n++;
    }
    qsort(st->t, (size_t)st->n, sizeof *st->t, cmp_begin);
    for (uint64_t i = 1; i < st->n; i++)
        if (st->t[i].begin < st->t[i - 1].end && st->t[i].end > st->t[i].begin) {
            rc = SMELT_CORRUPT(e, f, name_pos(st, st->t[i].name), st->t[i].name,
                               "data_offsets [%" PRIu64 ", %" PRIu64 ") overlap '%s' [%" PRIu64 ", %" PRIu64 ")",
                               st->t[i].begin, st->t[i].end, st->t[i - 1].name, st->t[i - 1].begin,
                               st->t[i - 1].end);
            goto out;
        }
    if (smelt_names_init(&st->index, (size_t)st->n)) {
        rc = SMELT_NOMEM(e, "tensor index");
        goto out;
    }
    for (uint64_t i = 0; i < st->n; i++)
        if (smelt_names_add(&st->index, st->t[i].name, (size_t)i) == SMELT_NAMES_NOMEM) {
            rc = SMELT_NOMEM(e, "tensor index");
            goto out;
        }
out:
    json_decref(root);
    return rc;
}

static int finish_open(smelt_st *st, smelt_st **out, smelt_err *e)
{
    int rc = parse(st, e);
    if (rc) {
        smelt_st_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

int smelt_st_open(const char *path, smelt_st **out, smelt_err *e)
{
    *out = NULL;
    smelt_st *st = calloc(1, sizeof *st);
    if (!st) return SMELT_NOMEM(e, "safetensors handle");
    int rc = smelt_map_open(&st->map, path, e);
    if (rc) {
        free(st);
        return rc;
    }
    st->base = st->map.data;
    st->size = st->map.size;
    st->path = strdup(path);
    if (!st->path) {
        smelt_st_close(st);
        return SMELT_NOMEM(e, "path");
    }
    return finish_open(st, out, e);
}

int smelt_st_open_mem(const void *buf, size_t size, const char *name, smelt_st **out, smelt_err *e)
{
    *out = NULL;
    smelt_st *st = calloc(1, sizeof *st);
    if (!st) return SMELT_NOMEM(e, "safetensors handle");
    st->base = buf;
    st->size = size;
    st->path = strdup(name ? name : "<memory>");
    if (!st->path) {
        free(st);
        return SMELT_NOMEM(e, "path");
    }
    return finish_open(st, out, e);
}

void smelt_st_close(smelt_st *st)
{
    if (!st) return;
    if (st->t)
        for (uint64_t i = 0; i < st->n; i++) free((void *)st->t[i].name);
    free(st->t);
    if (st->meta)
        for (size_t i = 0; i < 2 * st->n_meta; i++) free(st->meta[i]);
    free(st->meta);
    smelt_names_free(&st->index);
    smelt_map_close(&st->map);
    free(st->path);
    free(st);
}

const char *smelt_st_path(const smelt_st *st) { return st->path; }
uint64_t smelt_st_header_len(const smelt_st *st) { return st->hlen; }
uint64_t smelt_st_data_offset(const smelt_st *st) { return 8 + st->hlen; }
uint64_t smelt_st_n_tensors(const smelt_st *st) { return st->n; }
const smelt_st_tensor *smelt_st_tensor_at(const smelt_st *st, uint64_t i) { return i < st->n ? &st->t[i] : NULL; }

const smelt_st_tensor *smelt_st_find(const smelt_st *st, const char *name)
{
    long i = smelt_names_find(&st->index, name);
    return i < 0 ? NULL : &st->t[i];
}

const char *const *smelt_st_metadata(const smelt_st *st, size_t *n)
{
    *n = st->n_meta;
    return (const char *const *)st->meta;
}

const char *smelt_st_metadata_get(const smelt_st *st, const char *key)
{
    for (size_t i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta[2 * i], key)) return st->meta[2 * i + 1];
    return NULL;
}

void smelt_st_release_tensor(const smelt_st *st, const smelt_st_tensor *t)
{
    if (st->map.data) smelt_map_release(&st->map, t->file_offset, t->end - t->begin);
}

/* ==== sharded sets ==== */

struct smelt_stset {
    smelt_st **files;
    size_t n_files;
    char *index_path;
    const smelt_st_tensor **all;
    size_t *file_of;
    uint64_t n;
    smelt_names index;
};

void smelt_stset_close(smelt_stset *s)
{
    if (!s) return;
    for (size_t i = 0; i < s->n_files; i++) smelt_st_close(s->files[i]);
    free(s->files);
    free(s->index_path);
    free(s->all);
    free(s->file_of);
    smelt_names_free(&s->index);
    free(s);
}

static int add_file(smelt_stset *s, const char *path, smelt_err *e)
{
    smelt_st **nf = realloc(s->files, (s->n_files + 1) * sizeof *nf);
    if (!nf) return SMELT_NOMEM(e, "shard list");
    s->files = nf;
    int rc = smelt_st_open(path, &s->files[s->n_files], e);
    if (rc) return rc;
    s->n_files++;
    return 0;
}

static int build_namespace(smelt_stset *s, smelt_err *e)
{
    uint64_t total = 0;
    for (size_t i = 0; i < s->n_files; i++) total += smelt_st_n_tensors(s->files[i]);
    s->all = calloc((size_t)total + 1, sizeof *s->all);
    s->file_of = calloc((size_t)total + 1, sizeof *s->file_of);
    if (!s->all || !s->file_of || smelt_names_init(&s->index, (size_t)total)) return SMELT_NOMEM(e, "tensor index");
    for (size_t f = 0; f < s->n_files; f++)
        for (uint64_t i = 0; i < smelt_st_n_tensors(s->files[f]); i++) {
            const smelt_st_tensor *t = smelt_st_tensor_at(s->files[f], i);
            long prev = smelt_names_add(&s->index, t->name, (size_t)s->n);
            if (prev == SMELT_NAMES_NOMEM) return SMELT_NOMEM(e, "tensor index");
            if (prev != SMELT_NAMES_ADDED)
                return SMELT_ERR(e, SMELT_EFORMAT, t->file, t->name, "tensor also present in %s",
                                 s->all[prev]->file);
            s->all[s->n] = t;
            s->file_of[s->n] = f;
            s->n++;
        }
    return 0;
}

static const char *stset_file_of(void *user, const char *name)
{
    const smelt_st_tensor *t = smelt_stset_find(user, name);
    return t ? t->file : NULL;
}

static int open_index(smelt_stset *s, const char *index_path, smelt_err *e)
{
    s->index_path = strdup(index_path);
    if (!s->index_path) return SMELT_NOMEM(e, "path");
    smelt_shard_index ix;
    int rc = smelt_shard_index_read(index_path, &ix, e);
    if (rc) return rc;
    for (size_t i = 0; i < ix.n_paths && !rc; i++) rc = add_file(s, ix.paths[i], e);
    if (!rc) rc = build_namespace(s, e);
    if (!rc) rc = smelt_shard_index_check(&ix, index_path, stset_file_of, s, e);
    smelt_shard_index_free(&ix);
    return rc;
}

int smelt_stset_open(const char *path, smelt_stset **out, smelt_err *e)
{
    *out = NULL;
    smelt_stset *s = calloc(1, sizeof *s);
    if (!s) return SMELT_NOMEM(e, "checkpoint");
    int rc;
    char p[4096];
    size_t pl = strlen(path);
    if (smelt_is_dir(path)) {
        if (smelt_path_join(p, sizeof p, path, "model.safetensors.index.json") && smelt_nondir_exists(p))
            rc = open_index(s, p, e);
        else if (smelt_path_join(p, sizeof p, path, "model.safetensors") && smelt_nondir_exists(p)) {
            rc = add_file(s, p, e);
            if (!rc) rc = build_namespace(s, e);
        } else
            rc = SMELT_ERR(e, SMELT_EIO, path, NULL,
                           "no model.safetensors or model.safetensors.index.json in this directory");
    } else if (pl > 5 && !strcmp(path + pl - 5, ".json")) {
        rc = open_index(s, path, e);
    } else {
        rc = add_file(s, path, e);
        if (!rc) rc = build_namespace(s, e);
    }
    if (rc) {
        smelt_stset_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

uint64_t smelt_stset_n_tensors(const smelt_stset *s) { return s->n; }
const smelt_st_tensor *smelt_stset_tensor_at(const smelt_stset *s, uint64_t i) { return i < s->n ? s->all[i] : NULL; }

const smelt_st_tensor *smelt_stset_find(const smelt_stset *s, const char *name)
{
    long i = smelt_names_find(&s->index, name);
    return i < 0 ? NULL : s->all[i];
}

int64_t smelt_stset_find_index(const smelt_stset *s, const char *name) { return smelt_names_find(&s->index, name); }

size_t smelt_stset_n_files(const smelt_stset *s) { return s->n_files; }
const smelt_st *smelt_stset_file(const smelt_stset *s, size_t i) { return i < s->n_files ? s->files[i] : NULL; }
size_t smelt_stset_file_of(const smelt_stset *s, uint64_t i) { return s->file_of[i]; }
const char *smelt_stset_index_path(const smelt_stset *s) { return s->index_path; }

/* ==== writer ==== */

typedef struct wt_ {
    char *name;
    smelt_dtype dt;
    uint32_t n_dims;
    uint64_t shape[SMELT_ST_MAX_DIMS];
    uint64_t nbytes;
} wt;

static int cmp_wt(const void *a, const void *b)
{
    const struct wt_ *x = a, *y = b;
    if (x->dt != y->dt) return x->dt > y->dt ? -1 : 1;
    return strcmp(x->name, y->name);
}

struct smelt_st_writer {
    char **meta;
    size_t n_meta;
    wt *t;
    size_t n, cap;
    smelt_outfile *out;
    size_t cur;
    uint64_t cur_done;
    int failed;
};

smelt_st_writer *smelt_st_writer_new(void)
{
    smelt_st_writer *w = calloc(1, sizeof *w);
    if (w && smelt_st_writer_set_metadata(w, "format", "pt", NULL)) {
        smelt_st_writer_free(w);
        return NULL;
    }
    return w;
}

void smelt_st_writer_free(smelt_st_writer *w)
{
    if (!w) return;
    smelt_outfile_abort(w->out);
    for (size_t i = 0; i < 2 * w->n_meta; i++) free(w->meta[i]);
    free(w->meta);
    for (size_t i = 0; i < w->n; i++) free(w->t[i].name);
    free(w->t);
    free(w);
}

int smelt_st_writer_set_metadata(smelt_st_writer *w, const char *key, const char *val, smelt_err *e)
{
    for (size_t i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta[2 * i], key)) {
            char *nv = strdup(val);
            if (!nv) return SMELT_NOMEM(e, "metadata");
            free(w->meta[2 * i + 1]);
            w->meta[2 * i + 1] = nv;
            return 0;
        }
    char **nm = realloc(w->meta, (w->n_meta + 1) * 2 * sizeof *nm);
    if (!nm) return SMELT_NOMEM(e, "metadata");
    w->meta = nm;
    w->meta[2 * w->n_meta] = strdup(key);
    w->meta[2 * w->n_meta + 1] = strdup(val);
    w->n_meta++;
    if (!w->meta[2 * w->n_meta - 2] || !w->meta[2 * w->n_meta - 1]) return SMELT_NOMEM(e, "metadata");
    return 0;
}

int smelt_st_writer_add(smelt_st_writer *w, const char *name, smelt_dtype dt, uint32_t n_dims,
                        const uint64_t *shape, smelt_err *e)
{
    if (w->out) return SMELT_ERR(e, SMELT_EINTERNAL, NULL, name, "safetensors header already written");
    if (n_dims > SMELT_ST_MAX_DIMS) return SMELT_ERR(e, SMELT_EINTERNAL, NULL, name, "too many dimensions");
    if (w->n == w->cap) {
        size_t nc = w->cap ? 2 * w->cap : 64;
        wt *nt = realloc(w->t, nc * sizeof *nt);
        if (!nt) return SMELT_NOMEM(e, "tensor table");
        w->t = nt;
        w->cap = nc;
    }
    wt t = {0};
    t.dt = dt;
    t.n_dims = n_dims;
    uint64_t nel = 1;
    for (uint32_t i = 0; i < n_dims; i++) {
        t.shape[i] = shape[i];
        nel *= shape[i];
    }
    t.nbytes = nel * smelt_dtype_size(dt);
    t.name = strdup(name);
    if (!t.name) return SMELT_NOMEM(e, "tensor name");
    /* keep the table in the safetensors library's order: dtype descending, then name */
    size_t at = w->n;
    while (at > 0 && cmp_wt(&w->t[at - 1], &t) > 0) at--;
    if (at > 0 && !strcmp(w->t[at - 1].name, t.name)) {
        free(t.name);
        return SMELT_ERR(e, SMELT_EINTERNAL, NULL, name, "tensor declared twice");
    }
    memmove(&w->t[at + 1], &w->t[at], (w->n - at) * sizeof *w->t);
    w->t[at] = t;
    w->n++;
    return 0;
}

/* JSON string with the escapes serde_json emits */
static void add_json_string(smelt_strbuf *b, const char *s)
{
    smelt_strbuf_puts(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"') smelt_strbuf_puts(b, "\\\"");
        else if (c == '\\') smelt_strbuf_puts(b, "\\\\");
        else if (c == '\n') smelt_strbuf_puts(b, "\\n");
        else if (c == '\r') smelt_strbuf_puts(b, "\\r");
        else if (c == '\t') smelt_strbuf_puts(b, "\\t");
        else if (c == '\b') smelt_strbuf_puts(b, "\\b");
        else if (c == '\f') smelt_strbuf_puts(b, "\\f");
        else if (c < 0x20) smelt_strbuf_printf(b, "\\u%04x", c);
        else smelt_strbuf_add(b, (const char *)&c, 1);
    }
    smelt_strbuf_puts(b, "\"");
}

static int build_header(const smelt_st_writer *w, smelt_strbuf *b)
{
    smelt_strbuf_puts(b, "{");
    if (w->n_meta) {
        smelt_strbuf_puts(b, "\"__metadata__\":{");
        for (size_t i = 0; i < w->n_meta; i++) {
            if (i) smelt_strbuf_puts(b, ",");
            add_json_string(b, w->meta[2 * i]);
            smelt_strbuf_puts(b, ":");
            add_json_string(b, w->meta[2 * i + 1]);
        }
        smelt_strbuf_puts(b, "}");
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (i || w->n_meta) smelt_strbuf_puts(b, ",");
        add_json_string(b, w->t[i].name);
        smelt_strbuf_puts(b, ":{\"dtype\":\"");
        smelt_strbuf_puts(b, smelt_dtype_name(w->t[i].dt));
        smelt_strbuf_puts(b, "\",\"shape\":[");
        for (uint32_t d = 0; d < w->t[i].n_dims; d++) {
            if (d) smelt_strbuf_puts(b, ",");
            smelt_strbuf_printf(b, "%" PRIu64, w->t[i].shape[d]);
        }
        smelt_strbuf_puts(b, "],\"data_offsets\":[");
        smelt_strbuf_printf(b, "%" PRIu64, off);
        smelt_strbuf_puts(b, ",");
        off += w->t[i].nbytes;
        smelt_strbuf_printf(b, "%" PRIu64, off);
        smelt_strbuf_puts(b, "]}");
    }
    smelt_strbuf_puts(b, "}");
    while (b->len % 8 && !b->oom) smelt_strbuf_puts(b, " ");
    return b->oom;
}

uint64_t smelt_st_writer_file_size(const smelt_st_writer *w)
{
    smelt_strbuf b = {0};
    build_header(w, &b);
    uint64_t n = 8 + b.len;
    smelt_strbuf_free(&b);
    for (size_t i = 0; i < w->n; i++) n += w->t[i].nbytes;
    return n;
}

static void skip_empty(smelt_st_writer *w)
{
    while (w->cur < w->n && w->t[w->cur].nbytes == 0) w->cur++;
}

int smelt_st_writer_begin(smelt_st_writer *w, const char *path, smelt_err *e)
{
    if (w->out) return SMELT_ERR(e, SMELT_EINTERNAL, path, NULL, "already started");
    smelt_strbuf b = {0};
    if (build_header(w, &b)) {
        smelt_strbuf_free(&b);
        return SMELT_NOMEM(e, "safetensors header");
    }
    int rc = smelt_outfile_open(&w->out, path, e);
    uint64_t hl = b.len;
    if (!rc) rc = smelt_outfile_write(w->out, &hl, 8, e);
    if (!rc) rc = smelt_outfile_write(w->out, b.text, b.len, e);
    smelt_strbuf_free(&b);
    if (rc) w->failed = 1;
    w->cur = 0;
    w->cur_done = 0;
    skip_empty(w);
    return rc;
}

const char *smelt_st_writer_next(const smelt_st_writer *w) { return w->cur < w->n ? w->t[w->cur].name : NULL; }

int smelt_st_writer_write(smelt_st_writer *w, const void *p, size_t n, smelt_err *e)
{
    if (!w->out || w->failed) return SMELT_ERR(e, SMELT_EINTERNAL, NULL, NULL, "safetensors writer is not writing");
    if (w->cur >= w->n || n > w->t[w->cur].nbytes - w->cur_done) {
        w->failed = 1;
        return SMELT_ERR(e, SMELT_EINTERNAL, smelt_outfile_path(w->out), w->cur < w->n ? w->t[w->cur].name : NULL,
                         "write of %zu bytes exceeds the tensor", n);
    }
    int rc = smelt_outfile_write(w->out, p, n, e);
    w->cur_done += n;
    if (w->cur_done == w->t[w->cur].nbytes) {
        w->cur++;
        w->cur_done = 0;
        skip_empty(w);
    }
    if (rc) w->failed = 1;
    return rc;
}

int smelt_st_writer_commit(smelt_st_writer *w, smelt_err *e)
{
    if (!w->out || w->failed) return SMELT_ERR(e, SMELT_EINTERNAL, NULL, NULL, "safetensors writer failed or not started");
    if (w->cur < w->n)
        return SMELT_ERR(e, SMELT_EINTERNAL, smelt_outfile_path(w->out), w->t[w->cur].name,
                         "tensor data incomplete (%" PRIu64 " of %" PRIu64 " bytes)", w->cur_done, w->t[w->cur].nbytes);
    smelt_outfile *o = w->out;
    w->out = NULL;
    return smelt_outfile_commit(o, e);
}

/* ==== sharding and index ==== */

size_t smelt_st_plan_shards(const uint64_t *sizes, size_t n, uint64_t max_bytes, size_t *shard_of)
{
    size_t shard = 0;
    uint64_t cur = 0;
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        if (any && cur + sizes[i] > max_bytes) {
            shard++;
            cur = 0;
            any = 0;
        }
        shard_of[i] = shard;
        cur += sizes[i];
        any = 1;
    }
    return n ? shard + 1 : 0;
}

void smelt_st_shard_name(char *buf, size_t n, const char *prefix, size_t i, size_t count)
{
    snprintf(buf, n, "%s-%05zu-of-%05zu.safetensors", prefix, i + 1, count);
}

typedef struct {
    const char *name, *file;
} pair;

static int cmp_pair(const void *a, const void *b) { return strcmp(((const pair *)a)->name, ((const pair *)b)->name); }

int smelt_st_write_index(const char *path, uint64_t total_size, const char *const *names,
                         const char *const *files, size_t n, smelt_err *e)
{
    pair *ps = malloc((n + 1) * sizeof *ps);
    if (!ps) return SMELT_NOMEM(e, "index");
    for (size_t i = 0; i < n; i++) ps[i] = (pair){names[i], files[i]};
    qsort(ps, n, sizeof *ps, cmp_pair);
    smelt_strbuf b = {0};
    smelt_strbuf_puts(&b, "{\n  \"metadata\": {\n    \"total_size\": ");
    smelt_strbuf_printf(&b, "%" PRIu64, total_size);
    smelt_strbuf_puts(&b, "\n  },\n  \"weight_map\": {");
    for (size_t i = 0; i < n; i++) {
        smelt_strbuf_puts(&b, i ? ",\n    " : "\n    ");
        add_json_string(&b, ps[i].name);
        smelt_strbuf_puts(&b, ": ");
        add_json_string(&b, ps[i].file);
    }
    smelt_strbuf_puts(&b, n ? "\n  }\n}\n" : "}\n}\n");
    free(ps);
    if (b.oom) {
        smelt_strbuf_free(&b);
        return SMELT_NOMEM(e, "index");
    }
    smelt_outfile *o;
    int rc = smelt_outfile_open(&o, path, e);
    if (!rc) {
        rc = smelt_outfile_write(o, b.text, b.len, e);
        if (rc) smelt_outfile_abort(o);
        else rc = smelt_outfile_commit(o, e);
    }
    smelt_strbuf_free(&b);
    return rc;
}
