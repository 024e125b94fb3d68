/* vmodel.c — see vmodel.h. Includes formats/ (gguf, safetensors, dtype, file) and
 * quant/qtypes.h for row decoding. */
#include "checkpoint.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/base/file.h"
#include "formats/dtype.h"
#include "quant/qtypes.h"

struct smelt_checkpoint {
    smelt_checkpoint_kind kind;
    char *path;
    char desc[64];
    smelt_gguf *g;
    smelt_stset *st;
    uint64_t n;
    smelt_checkpoint_tensor *t;
    uint64_t file_bytes;
};

static bool is_gguf_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char m[4];
    bool yes = fread(m, 1, 4, f) == 4 && memcmp(m, "GGUF", 4) == 0;
    fclose(f);
    return yes;
}

static uint64_t file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    uint64_t n = 0;
    if (fseek(f, 0, SEEK_END) == 0) {
        long k = ftell(f);
        if (k > 0) n = (uint64_t)k;
    }
    fclose(f);
    return n;
}

static int open_gguf(smelt_checkpoint *m, smelt_err *e)
{
    int rc = smelt_gguf_open(m->path, 0, &m->g, e);
    if (rc) return rc;
    m->kind = SMELT_CHECKPOINT_GGUF;
    m->n = smelt_gguf_n_tensors(m->g);
    m->t = calloc(m->n ? m->n : 1, sizeof *m->t);
    if (!m->t) return SMELT_NOMEM(e, "the tensor table");
    for (uint64_t i = 0; i < m->n; i++) {
        const smelt_gguf_tensor *gt = smelt_gguf_tensor_at(m->g, i);
        smelt_checkpoint_tensor *t = &m->t[i];
        t->name = gt->name;
        t->type = gt->type;
        t->dtype = -1;
        t->type_name = smelt_type_name(gt->type);
        t->n_dims = gt->n_dims;
        for (int d = 0; d < SMELT_CHECKPOINT_MAX_DIMS; d++) t->shape[d] = d < SMELT_GGUF_MAX_DIMS ? gt->ne[d] : 1;
        t->nelements = gt->nelements;
        t->nbytes = gt->nbytes;
        t->row_len = gt->ne[0];
        t->n_rows = gt->nelements ? smelt_gguf_tensor_rows(gt) : 0;
        t->row_bytes = smelt_gguf_tensor_row_bytes(gt);
        t->data = gt->data;
        const smelt_gguf *f = smelt_gguf_shard(m->g, gt->shard);
        t->file = smelt_gguf_path(f);
        t->file_offset = smelt_gguf_data_offset(f) + gt->offset;
    }
    uint16_t ns = smelt_gguf_n_shards(m->g);
    if (ns > 1) snprintf(m->desc, sizeof m->desc, "GGUF v%" PRIu32 " (%u shards)", smelt_gguf_version(m->g), ns);
    else snprintf(m->desc, sizeof m->desc, "GGUF v%" PRIu32, smelt_gguf_version(m->g));
    m->file_bytes = smelt_gguf_total_size(m->g);
    return 0;
}

/* A directory without model.safetensors: a PEFT adapter, or a lone .safetensors file. */
static int dir_fallback(const char *dir, char *out, size_t n, smelt_err *e)
{
    if (smelt_path_join(out, n, dir, "adapter_model.safetensors") && smelt_file_exists(out)) return 0;
    DIR *d = opendir(dir);
    if (!d) return SMELT_ERR(e, SMELT_EIO, dir, NULL, "cannot list the directory");
    struct dirent *de;
    int found = 0, has_bin = 0;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l > 12 && !strcmp(de->d_name + l - 12, ".safetensors")) {
            if (!found) smelt_path_join(out, n, dir, de->d_name);
            found++;
        }
        if (l > 4 && !strcmp(de->d_name + l - 4, ".bin")) has_bin = 1;
    }
    closedir(d);
    if (found == 1) return 0;
    if (found > 1)
        return SMELT_ERR(e, SMELT_EFORMAT, dir, NULL,
                         "%d .safetensors files but no model.safetensors.index.json to tie them together", found);
    if (has_bin)
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, dir, NULL,
                         "only PyTorch .bin weights here; smelt-verify reads GGUF and safetensors");
    return SMELT_ERR(e, SMELT_EIO, dir, NULL, "no GGUF or safetensors weights in this directory");
}

static int open_st(smelt_checkpoint *m, smelt_err *e)
{
    const char *p = m->path;
    char alt[4096];
    if (smelt_is_dir(p)) {
        char probe[4096];
        bool std_layout = (smelt_path_join(probe, sizeof probe, p, "model.safetensors.index.json") &&
                           smelt_file_exists(probe)) ||
                          (smelt_path_join(probe, sizeof probe, p, "model.safetensors") && smelt_file_exists(probe));
        if (!std_layout) {
            int rc = dir_fallback(p, alt, sizeof alt, e);
            if (rc) return rc;
            p = alt;
        }
    }
    int rc = smelt_stset_open(p, &m->st, e);
    if (rc) return rc;
    m->kind = SMELT_CHECKPOINT_SAFETENSORS;
    m->n = smelt_stset_n_tensors(m->st);
    m->t = calloc(m->n ? m->n : 1, sizeof *m->t);
    if (!m->t) return SMELT_NOMEM(e, "the tensor table");
    for (uint64_t i = 0; i < m->n; i++) {
        const smelt_st_tensor *st = smelt_stset_tensor_at(m->st, i);
        smelt_checkpoint_tensor *t = &m->t[i];
        t->name = st->name;
        t->type = -1;
        t->dtype = (int)st->dtype;
        t->type_name = smelt_dtype_name(st->dtype);
        t->n_dims = st->n_dims;
        for (uint32_t d = 0; d < st->n_dims && d < SMELT_CHECKPOINT_MAX_DIMS; d++) t->shape[d] = st->shape[d];
        t->nelements = st->nelements;
        t->nbytes = st->end - st->begin;
        t->row_len = st->n_dims ? st->shape[st->n_dims - 1] : 1;
        t->n_rows = t->row_len ? st->nelements / t->row_len : 0;
        t->row_bytes = t->row_len * smelt_dtype_size(st->dtype);
        t->data = st->data;
        t->file = st->file;
        t->file_offset = st->file_offset;
    }
    size_t nf = smelt_stset_n_files(m->st);
    for (size_t i = 0; i < nf; i++) m->file_bytes += file_size(smelt_st_path(smelt_stset_file(m->st, i)));
    if (nf == 1) snprintf(m->desc, sizeof m->desc, "safetensors");
    else snprintf(m->desc, sizeof m->desc, "safetensors (%zu shards)", nf);
    return 0;
}

int smelt_checkpoint_open(const char *path, smelt_checkpoint **out, smelt_err *e)
{
    *out = NULL;
    smelt_checkpoint *m = calloc(1, sizeof *m);
    if (!m || !(m->path = strdup(path))) {
        free(m);
        return SMELT_NOMEM(e, "the model");
    }
    int rc;
    if (!smelt_is_dir(path) && (rc = smelt_check_regular_file(path, e))) {}
    else if (!smelt_is_dir(path) && is_gguf_file(path)) rc = open_gguf(m, e);
    else rc = open_st(m, e);
    if (rc) {
        smelt_checkpoint_close(m);
        return rc;
    }
    *out = m;
    return 0;
}

void smelt_checkpoint_close(smelt_checkpoint *m)
{
    if (!m) return;
    smelt_gguf_close(m->g);
    smelt_stset_close(m->st);
    free(m->t);
    free(m->path);
    free(m);
}

smelt_checkpoint_kind smelt_checkpoint_kind_of(const smelt_checkpoint *m) { return m->kind; }
const char *smelt_checkpoint_path(const smelt_checkpoint *m) { return m->path; }
const char *smelt_checkpoint_describe(const smelt_checkpoint *m) { return m->desc; }
const smelt_gguf *smelt_checkpoint_gguf(const smelt_checkpoint *m) { return m->g; }
const smelt_stset *smelt_checkpoint_stset(const smelt_checkpoint *m) { return m->st; }
uint64_t smelt_checkpoint_file_bytes(const smelt_checkpoint *m) { return m->file_bytes; }
uint64_t smelt_checkpoint_n_tensors(const smelt_checkpoint *m) { return m->n; }
const smelt_checkpoint_tensor *smelt_checkpoint_tensor_at(const smelt_checkpoint *m, uint64_t i) { return i < m->n ? &m->t[i] : NULL; }

int64_t smelt_checkpoint_find(const smelt_checkpoint *m, const char *name)
{
    if (m->g) {
        const smelt_gguf_tensor *t = smelt_gguf_find_tensor(m->g, name);
        if (!t) return -1;
        for (uint64_t i = 0; i < m->n; i++)
            if (m->t[i].name == t->name) return (int64_t)i;
        return -1;
    }
    return smelt_stset_find_index(m->st, name);
}

void smelt_checkpoint_release(const smelt_checkpoint *m, uint64_t i)
{
    if (i >= m->n) return;
    if (m->g) smelt_gguf_release_tensor(m->g, smelt_gguf_tensor_at(m->g, i));
    else smelt_st_release_tensor(smelt_stset_file(m->st, smelt_stset_file_of(m->st, i)), smelt_stset_tensor_at(m->st, i));
}

bool smelt_checkpoint_can_decode(const smelt_checkpoint_tensor *t)
{
    if (t->type >= 0) return smelt_q_can_dequantize(t->type);
    return smelt_dtype_is_float((smelt_dtype)t->dtype);
}

uint64_t smelt_checkpoint_block(const smelt_checkpoint_tensor *t)
{
    if (t->type < 0) return 1;
    const smelt_type_info *ti = smelt_type_get(t->type);
    return ti && ti->blck ? ti->blck : 1;
}

int smelt_checkpoint_decode(const smelt_checkpoint_tensor *t, uint64_t first, uint64_t n, float *dst, smelt_err *e)
{
    if (!smelt_checkpoint_can_decode(t))
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, t->file, t->name, "smelt cannot decode %s values", t->type_name);
    uint64_t blk = smelt_checkpoint_block(t);
    if (first > t->nelements || n > t->nelements - first || first % blk || n % blk)
        return SMELT_ERR(e, SMELT_EINTERNAL, t->file, t->name,
                         "elements %" PRIu64 "+%" PRIu64 " are not a block range of %" PRIu64, first, n, t->nelements);
    uint64_t bpb = t->type >= 0 ? smelt_type_get(t->type)->bytes : smelt_dtype_size((smelt_dtype)t->dtype);
    const uint8_t *src = t->data + first / blk * bpb;
    int rc = t->type >= 0 ? smelt_q_dequantize_row(t->type, src, dst, (size_t)n)
                          : smelt_dtype_to_f32((smelt_dtype)t->dtype, src, dst, (size_t)n);
    if (rc) return SMELT_ERR(e, SMELT_EUNSUPPORTED, t->file, t->name, "smelt cannot decode %s values", t->type_name);
    return 0;
}

void smelt_checkpoint_shape_str(const smelt_checkpoint_tensor *t, char *buf, size_t n)
{
    size_t k = 0;
    if (n) buf[0] = 0;
    k += (size_t)snprintf(buf, n, "[");
    uint32_t nd = t->n_dims;
    if (t->type >= 0 && nd == 0) nd = 1;
    for (uint32_t d = 0; d < nd && d < SMELT_CHECKPOINT_MAX_DIMS; d++)
        if (k < n) k += (size_t)snprintf(buf + k, n - k, "%s%" PRIu64, d ? ", " : "", t->shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

int smelt_checkpoint_check_model(const smelt_checkpoint *m, smelt_mc_hparams *hp, smelt_err *e)
{
    memset(hp, 0, sizeof *hp);
    if (!m->g) {
        snprintf(hp->skipped, sizeof hp->skipped, "a safetensors checkpoint: the check reads GGUF models");
        return SMELT_MC_SKIPPED;
    }
    return smelt_mc_check_gguf(m->g, SMELT_MC_OTHER_ARCH_OK | SMELT_MC_NON_MODEL_OK, hp, e);
}
