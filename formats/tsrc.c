/* tsrc.c — scratch buffers, f32 reads, and the safetensors-backed tensor source. */
#include "tsrc.h"

#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

void *smelt_scratch_get(smelt_scratch *s, size_t n)
{
    if (n <= s->cap && s->p) return s->p;
    void *p = realloc(s->p, n ? n : 1);
    if (!p) return NULL;
    s->p = p;
    s->cap = n;
    return p;
}

void smelt_scratch_free(smelt_scratch *s)
{
    free(s->p);
    s->p = NULL;
    s->cap = 0;
}

int smelt_tsrc_read_f32(const smelt_tsrc *s, uint64_t i, float *dst, smelt_scratch *scratch, smelt_err *e)
{
    const smelt_tinfo *t = smelt_tsrc_info(s, i);
    const void *data;
    int rc = smelt_tsrc_read(s, i, &data, scratch, e);
    if (rc) return rc;
    if (smelt_dtype_to_f32(t->dtype, data, dst, (size_t)t->nelements))
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, t->file, t->name, "dtype %s cannot be converted to f32",
                         smelt_dtype_name(t->dtype));
    return 0;
}

int smelt_tsrc_load_f32(const smelt_tsrc *s, uint64_t i, float **out, smelt_err *e)
{
    const smelt_tinfo *t = smelt_tsrc_info(s, i);
    *out = malloc(t->nelements ? (size_t)t->nelements * sizeof(float) : 1);
    if (!*out) return SMELT_NOMEM(e, "tensor as f32");
    smelt_scratch scratch = {0};
    int rc = smelt_tsrc_read_f32(s, i, *out, &scratch, e);
    smelt_scratch_free(&scratch);
    smelt_tsrc_release(s, i);
    return rc;
}

void smelt_tsrc_close(smelt_tsrc *s)
{
    if (s && s->vt && s->vt->close) s->vt->close(s->self);
    if (s) memset(s, 0, sizeof *s);
}

/* ==== safetensors-backed source: a set of shards, or one file ==== */

typedef struct {
    const smelt_stset *set; /* one of the two */
    const smelt_st *file;
    smelt_tinfo *info;
    uint64_t n;
} st_src;

static const smelt_st_tensor *st_tensor(const st_src *s, uint64_t i)
{
    return s->set ? smelt_stset_tensor_at(s->set, i) : smelt_st_tensor_at(s->file, i);
}

static uint64_t st_count(void *self) { return ((st_src *)self)->n; }

static const smelt_tinfo *st_info(void *self, uint64_t i)
{
    st_src *s = self;
    return i < s->n ? &s->info[i] : NULL;
}

static int64_t st_find(void *self, const char *name)
{
    st_src *s = self;
    if (s->set) return smelt_stset_find_index(s->set, name);
    const smelt_st_tensor *t = smelt_st_find(s->file, name);
    for (uint64_t i = 0; t && i < s->n; i++)
        if (smelt_st_tensor_at(s->file, i) == t) return (int64_t)i;
    return -1;
}

static int st_read(void *self, uint64_t i, const void **data, smelt_scratch *sc, smelt_err *e)
{
    (void)sc;
    st_src *s = self;
    if (i >= s->n) return SMELT_ERR(e, SMELT_EINTERNAL, NULL, NULL, "tensor index out of range");
    *data = st_tensor(s, i)->data;
    return 0;
}

static void st_release(void *self, uint64_t i)
{
    st_src *s = self;
    if (i >= s->n) return;
    const smelt_st *f = s->set ? smelt_stset_file(s->set, smelt_stset_file_of(s->set, i)) : s->file;
    smelt_st_release_tensor(f, st_tensor(s, i));
}

static void st_close(void *self)
{
    st_src *s = self;
    free(s->info);
    free(s);
}

static const smelt_tsrc_vt st_vt = {st_count, st_info, st_find, st_read, st_release, st_close};

static int st_open(smelt_tsrc *out, const smelt_stset *set, const smelt_st *file, smelt_err *e)
{
    memset(out, 0, sizeof *out);
    st_src *s = calloc(1, sizeof *s);
    if (!s) return SMELT_NOMEM(e, "tensor source");
    s->set = set;
    s->file = file;
    s->n = set ? smelt_stset_n_tensors(set) : smelt_st_n_tensors(file);
    s->info = calloc((size_t)s->n + 1, sizeof *s->info);
    if (!s->info) {
        free(s);
        return SMELT_NOMEM(e, "tensor source");
    }
    for (uint64_t i = 0; i < s->n; i++) {
        const smelt_st_tensor *t = st_tensor(s, i);
        smelt_tinfo *ti = &s->info[i];
        ti->name = t->name;
        ti->dtype = t->dtype;
        ti->n_dims = t->n_dims;
        memcpy(ti->shape, t->shape, sizeof ti->shape);
        ti->nelements = t->nelements;
        ti->nbytes = t->end - t->begin;
        ti->file = t->file;
    }
    out->vt = &st_vt;
    out->self = s;
    return 0;
}

int smelt_tsrc_open_stset(smelt_tsrc *out, const smelt_stset *set, smelt_err *e) { return st_open(out, set, NULL, e); }

int smelt_tsrc_open_st(smelt_tsrc *out, const smelt_st *file, smelt_err *e) { return st_open(out, NULL, file, e); }
