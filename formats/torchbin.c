/* torchbin.c — PyTorch .bin checkpoints as tensor sources: each file is a torch.save zip
 * (torchzip.c) whose data.pkl is read by the allow-listed unpickler (pickle.c); tensor
 * bytes are views into the mapped storage records. Includes base/, tsrc.h, jansson. */
#include "torchbin.h"

#include <dirent.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "base/ckd.h"
#include "base/file.h"
#include "base/names.h"
#include "pickle.h"
#include "shard_index.h"
#include "torchzip.h"

#define MAX_PICKLE (1024ull << 20) /* data.pkl of the largest checkpoints is a few MB */

typedef struct {
    char *path;
    smelt_tz *z;
    smelt_pk_dict *sd;
    int64_t *entry; /* per tensor: zip entry holding its storage */
} tb_file;

typedef struct {
    tb_file *files;
    size_t nf;
    smelt_tinfo *info;
    size_t *file_of, *local;
    uint64_t n;
    smelt_names idx;
} tb_src;

static void file_free(tb_file *f)
{
    smelt_pk_free(f->sd);
    smelt_tz_close(f->z);
    free(f->entry);
    free(f->path);
}

static int open_file(tb_file *f, const char *path, smelt_err *e)
{
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return SMELT_NOMEM(e, "path");
    int rc = smelt_tz_open(path, &f->z, e);
    if (rc) return rc;
    if (smelt_tz_n_entries(f->z) == 0) return SMELT_CORRUPT(e, path, SMELT_NO_OFFSET, NULL, "empty zip archive: not a torch.save file");
    /* every record sits under one top-level folder ("archive/", "pytorch_model/", …) */
    const char *first = smelt_tz_entry_at(f->z, 0)->name;
    const char *slash = strchr(first, '/');
    if (!slash || slash == first)
        return SMELT_CORRUPT(e, path, SMELT_NO_OFFSET, first, "not a torch.save archive: records are not inside a top-level folder");
    size_t pl = (size_t)(slash - first);
    char name[512];
    if (pl > 256) return SMELT_CORRUPT(e, path, SMELT_NO_OFFSET, first, "top-level folder name is too long");
    snprintf(name, sizeof name, "%.*s/byteorder", (int)pl, first);
    int64_t bo = smelt_tz_find(f->z, name);
    if (bo >= 0) {
        uint8_t *b;
        size_t bl;
        if ((rc = smelt_tz_read_alloc(f->z, (uint64_t)bo, 64, &b, &bl, e))) return rc;
        int little = bl == 6 && !memcmp(b, "little", 6);
        free(b);
        if (!little)
            return SMELT_ERR(e, SMELT_EUNSUPPORTED, path, name, "only little-endian checkpoints are supported");
    }
    snprintf(name, sizeof name, "%.*s/data.pkl", (int)pl, first);
    int64_t pk = smelt_tz_find(f->z, name);
    if (pk < 0) return SMELT_CORRUPT(e, path, SMELT_NO_OFFSET, name, "record is missing: not a torch.save archive");
    uint8_t *pkl;
    size_t pkn;
    if ((rc = smelt_tz_read_alloc(f->z, (uint64_t)pk, MAX_PICKLE, &pkl, &pkn, e))) return rc;
    rc = smelt_pk_load_state_dict(pkl, pkn, path, name, &f->sd, e);
    free(pkl);
    if (rc) return rc;
    size_t n = smelt_pk_count(f->sd);
    f->entry = calloc(n + 1, sizeof *f->entry);
    if (!f->entry) return SMELT_NOMEM(e, "tensor table");
    for (size_t i = 0; i < n; i++) {
        const smelt_pk_tensor *t = smelt_pk_at(f->sd, i);
        char rec[512];
        snprintf(rec, sizeof rec, "%.*s/data/%s", (int)pl, first, t->storage);
        int64_t ei = smelt_tz_find(f->z, rec);
        if (ei < 0)
            return SMELT_CORRUPT(e, path, SMELT_NO_OFFSET, t->name, "its storage record '%s' is missing from the archive", rec);
        const smelt_tz_entry *en = smelt_tz_entry_at(f->z, (uint64_t)ei);
        uint64_t want;
        if (!smelt_mul_u64(t->storage_numel, smelt_dtype_size(t->dtype), &want) || en->size != want)
            return SMELT_CORRUPT(e, path, en->header_offset, rec, "storage record holds %llu bytes but the pickle declares %llu %s elements (%llu bytes)",
                                 (unsigned long long)en->size, (unsigned long long)t->storage_numel, smelt_dtype_name(t->dtype),
                                 (unsigned long long)(t->storage_numel * smelt_dtype_size(t->dtype)));
        f->entry[i] = ei;
    }
    return 0;
}

/* ==== source ==== */

static uint64_t tb_count(void *self) { return ((tb_src *)self)->n; }

static const smelt_tinfo *tb_info(void *self, uint64_t i)
{
    tb_src *s = self;
    return i < s->n ? &s->info[i] : NULL;
}

static int64_t tb_find(void *self, const char *name) { return smelt_names_find(&((tb_src *)self)->idx, name); }

static int tb_read(void *self, uint64_t i, const void **data, smelt_scratch *sc, smelt_err *e)
{
    tb_src *s = self;
    if (i >= s->n) return SMELT_ERR(e, SMELT_EINTERNAL, NULL, NULL, "tensor index out of range");
    tb_file *f = &s->files[s->file_of[i]];
    const smelt_pk_tensor *t = smelt_pk_at(f->sd, s->local[i]);
    const void *base;
    int rc = smelt_tz_read(f->z, (uint64_t)f->entry[s->local[i]], &base, sc, e);
    if (rc) {
        if (!e->object[0]) snprintf(e->object, sizeof e->object, "%s", t->name);
        return rc;
    }
    *data = (const uint8_t *)base + t->offset * smelt_dtype_size(t->dtype);
    return 0;
}

static void tb_release(void *self, uint64_t i)
{
    tb_src *s = self;
    if (i >= s->n) return;
    tb_file *f = &s->files[s->file_of[i]];
    smelt_tz_release(f->z, (uint64_t)f->entry[s->local[i]]);
}

static void tb_close(void *self)
{
    tb_src *s = self;
    if (!s) return;
    for (size_t i = 0; i < s->nf; i++) file_free(&s->files[i]);
    free(s->files);
    free(s->info);
    free(s->file_of);
    free(s->local);
    smelt_names_free(&s->idx);
    free(s);
}

static const smelt_tsrc_vt tb_vt = {tb_count, tb_info, tb_find, tb_read, tb_release, tb_close};

/* Open the given files (in this order) as one namespace. */
static int open_files(const char *const *paths, size_t np, smelt_tsrc *out, smelt_err *e)
{
    memset(out, 0, sizeof *out);
    tb_src *s = calloc(1, sizeof *s);
    if (!s) return SMELT_NOMEM(e, "tensor source");
    s->files = calloc(np + 1, sizeof *s->files);
    int rc = s->files ? 0 : SMELT_NOMEM(e, "tensor source");
    for (size_t i = 0; i < np && !rc; i++) {
        rc = open_file(&s->files[i], paths[i], e);
        s->nf = i + 1;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < s->nf && !rc; i++) total += smelt_pk_count(s->files[i].sd);
    if (!rc) {
        s->info = calloc((size_t)total + 1, sizeof *s->info);
        s->file_of = calloc((size_t)total + 1, sizeof *s->file_of);
        s->local = calloc((size_t)total + 1, sizeof *s->local);
        if (!s->info || !s->file_of || !s->local || smelt_names_init(&s->idx, (size_t)total))
            rc = SMELT_NOMEM(e, "tensor source");
    }
    for (size_t f = 0; f < s->nf && !rc; f++) {
        tb_file *tf = &s->files[f];
        for (size_t j = 0; j < smelt_pk_count(tf->sd) && !rc; j++) {
            const smelt_pk_tensor *t = smelt_pk_at(tf->sd, j);
            smelt_tinfo *ti = &s->info[s->n];
            ti->name = t->name;
            ti->dtype = t->dtype;
            ti->n_dims = t->n_dims;
            for (uint32_t d = 0; d < t->n_dims; d++) ti->shape[d] = t->shape[d];
            ti->nelements = t->nelements;
            ti->nbytes = t->nelements * smelt_dtype_size(t->dtype);
            ti->file = tf->path;
            long prev = smelt_names_add(&s->idx, t->name, (size_t)s->n);
            if (prev == SMELT_NAMES_NOMEM) rc = SMELT_NOMEM(e, "tensor index");
            else if (prev != SMELT_NAMES_ADDED)
                rc = SMELT_ERR(e, SMELT_EFORMAT, tf->path, t->name, "tensor also present in %s", s->info[prev].file);
            s->file_of[s->n] = f;
            s->local[s->n] = j;
            s->n++;
        }
    }
    if (rc) {
        tb_close(s);
        return rc;
    }
    out->vt = &tb_vt;
    out->self = s;
    return 0;
}

int smelt_torchbin_open_file(const char *path, smelt_tsrc *out, smelt_err *e)
{
    const char *p[1] = {path};
    return open_files(p, 1, out, e);
}

static const char *tsrc_file_of(void *user, const char *name)
{
    int64_t i = smelt_tsrc_find(user, name);
    return i < 0 ? NULL : smelt_tsrc_info(user, (uint64_t)i)->file;
}

static int open_index(const char *index_path, smelt_tsrc *out, smelt_err *e)
{
    smelt_shard_index ix;
    int rc = smelt_shard_index_read(index_path, &ix, e);
    if (rc) return rc;
    rc = open_files((const char *const *)ix.paths, ix.n_paths, out, e);
    if (!rc && (rc = smelt_shard_index_check(&ix, index_path, tsrc_file_of, out, e))) smelt_tsrc_close(out);
    smelt_shard_index_free(&ix);
    return rc;
}

int smelt_torchbin_open_dir(const char *dir, smelt_tsrc *out, smelt_err *e)
{
    memset(out, 0, sizeof *out);
    char p[4096];
    if (smelt_path_join(p, sizeof p, dir, "pytorch_model.bin.index.json") && smelt_nondir_exists(p))
        return open_index(p, out, e);
    if (smelt_path_join(p, sizeof p, dir, "pytorch_model.bin") && smelt_nondir_exists(p))
        return smelt_torchbin_open_file(p, out, e);
    return SMELT_ERR(e, SMELT_EIO, dir, NULL,
                     "no weights: expected model.safetensors, model.safetensors.index.json, pytorch_model.bin or "
                     "pytorch_model.bin.index.json");
}
