/* gguf_read.c — hardened GGUF reader over a mapped file or a caller buffer.
 * Includes base/, ggml_types.h, gguf.h. Every size from the file goes through base/ckd.h. */
#include "gguf.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/ckd.h"
#include "base/file.h"
#include "base/names.h"
#include "base/strbuf.h"

struct smelt_gguf {
    smelt_map map;       /* owned when opened from a path */
    const uint8_t *base;
    uint64_t size;
    char *path;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_off, header_end;
    uint64_t n_kv, n_tensors;
    smelt_gguf_kv *kv;
    smelt_gguf_tensor *t;
    smelt_names kv_index, t_index;
    uint64_t n_own;        /* tensors of this file (the first n_own of t; names owned) */
    uint16_t n_shards;     /* 0 or 1: one file */
    smelt_gguf **shards;   /* split model: shards[0] = this handle, the others owned */
};

/* ==== cursor ==== */

typedef struct {
    const uint8_t *p;
    uint64_t size, pos;
    const char *file;
    smelt_err *e;
} cur;

static int need(cur *c, uint64_t n, const char *obj, const char *what)
{
    if (n > c->size - c->pos)
        return SMELT_CORRUPT(c->e, c->file, c->pos, obj,
                             "%s needs %" PRIu64 " bytes but only %" PRIu64 " remain in the file",
                             what, n, c->size - c->pos);
    return 0;
}

static int rd(cur *c, void *dst, uint64_t n, const char *obj, const char *what)
{
    int rc = need(c, n, obj, what);
    if (rc) return rc;
    memcpy(dst, c->p + c->pos, (size_t)n);
    c->pos += n;
    return 0;
}

static int rd_u32(cur *c, uint32_t *v, const char *obj, const char *what) { return rd(c, v, 4, obj, what); }
static int rd_u64(cur *c, uint64_t *v, const char *obj, const char *what) { return rd(c, v, 8, obj, what); }

/* A string: u64 length then bytes. Returns a view. */
static int rd_str(cur *c, smelt_str *s, const char *obj, const char *what)
{
    uint64_t at = c->pos, n;
    int rc = rd_u64(c, &n, obj, what);
    if (rc) return rc;
    if (n > c->size - c->pos)
        return SMELT_CORRUPT(c->e, c->file, at, obj,
                             "%s length %" PRIu64 " runs past the end of the file (%" PRIu64
                             " bytes remain)",
                             what, n, c->size - c->pos);
    s->p = (const char *)c->p + c->pos;
    s->n = n;
    c->pos += n;
    return 0;
}

static char *dup_str(smelt_str s)
{
    char *r = malloc((size_t)s.n + 1);
    if (!r) return NULL;
    memcpy(r, s.p, (size_t)s.n);
    r[s.n] = 0;
    return r;
}

/* ==== value types ==== */

static const char *k_vnames[SMELT_GGUF_VTYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};
static const size_t k_vsizes[SMELT_GGUF_VTYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *smelt_gguf_vtype_name(int t)
{
    return (t >= 0 && t < SMELT_GGUF_VTYPE_COUNT) ? k_vnames[t] : "invalid";
}

size_t smelt_gguf_vtype_size(int t)
{
    return (t >= 0 && t < SMELT_GGUF_VTYPE_COUNT) ? k_vsizes[t] : 0;
}

/* ==== parsing ==== */

static int parse_kv(smelt_gguf *g, cur *c, uint64_t i)
{
    smelt_gguf_kv *kv = &g->kv[i];
    char obj[64];
    snprintf(obj, sizeof obj, "kv #%" PRIu64, i);
    kv->offset = c->pos;
    kv->arr_type = -1;
    smelt_str key;
    int rc = rd_str(c, &key, obj, "key");
    if (rc) return rc;
    kv->key = dup_str(key);
    if (!kv->key) return SMELT_NOMEM(c->e, "key");
    if (memchr(key.p, 0, (size_t)key.n))
        return SMELT_CORRUPT(c->e, c->file, kv->offset, kv->key, "key contains a NUL byte");
    uint64_t at = c->pos;
    int32_t type;
    if ((rc = rd(c, &type, 4, kv->key, "value type"))) return rc;
    if (type < 0 || type >= SMELT_GGUF_VTYPE_COUNT)
        return SMELT_CORRUPT(c->e, c->file, at, kv->key,
                             "invalid value type %d (valid: 0..%d)", type, SMELT_GGUF_VTYPE_COUNT - 1);
    kv->type = type;
    kv->n = 1;
    if (type == SMELT_GGUF_ARRAY) {
        at = c->pos;
        int32_t et;
        if ((rc = rd(c, &et, 4, kv->key, "array element type"))) return rc;
        if (et < 0 || et >= SMELT_GGUF_VTYPE_COUNT)
            return SMELT_CORRUPT(c->e, c->file, at, kv->key, "invalid array element type %d", et);
        if (et == SMELT_GGUF_ARRAY)
            return SMELT_ERR_AT(c->e, SMELT_EUNSUPPORTED, c->file, at, kv->key,
                                "nested arrays are not supported (llama.cpp rejects them too)");
        kv->arr_type = et;
        at = c->pos;
        if ((rc = rd_u64(c, &kv->n, kv->key, "array length"))) return rc;
        kv->data = c->p + c->pos;
        kv->value_offset = c->pos;
        if (et == SMELT_GGUF_STRING) {
            /* each string needs at least its 8-byte length */
            if (kv->n > (c->size - c->pos) / 8)
                return SMELT_CORRUPT(c->e, c->file, at, kv->key,
                                     "array of %" PRIu64 " strings cannot fit in the %" PRIu64
                                     " bytes left",
                                     kv->n, c->size - c->pos);
            uint64_t *offs = malloc(sizeof(uint64_t) * (size_t)(kv->n ? kv->n : 1));
            if (!offs) return SMELT_NOMEM(c->e, "string array index");
            kv->str_off = offs;
            for (uint64_t j = 0; j < kv->n; j++) {
                offs[j] = c->pos - kv->value_offset;
                smelt_str s;
                if ((rc = rd_str(c, &s, kv->key, "array string"))) return rc;
            }
        } else {
            uint64_t bytes;
            if (!smelt_mul_u64(kv->n, k_vsizes[et], &bytes) || bytes > c->size - c->pos)
                return SMELT_CORRUPT(c->e, c->file, at, kv->key,
                                     "array of %" PRIu64 " %s elements runs past the end of the file",
                                     kv->n, k_vnames[et]);
            if (et == SMELT_GGUF_BOOL)
                for (uint64_t j = 0; j < kv->n; j++)
                    if (c->p[c->pos + j] > 1)
                        return SMELT_CORRUPT(c->e, c->file, c->pos + j, kv->key,
                                             "bool array element %" PRIu64 " is %u, expected 0 or 1",
                                             j, c->p[c->pos + j]);
            c->pos += bytes;
        }
    } else {
        kv->data = c->p + c->pos;
        kv->value_offset = c->pos;
        if (type == SMELT_GGUF_STRING) {
            smelt_str s;
            if ((rc = rd_str(c, &s, kv->key, "string value"))) return rc;
        } else {
            if ((rc = need(c, k_vsizes[type], kv->key, "value"))) return rc;
            if (type == SMELT_GGUF_BOOL && c->p[c->pos] > 1)
                return SMELT_CORRUPT(c->e, c->file, c->pos, kv->key, "bool value is %u, expected 0 or 1",
                                     c->p[c->pos]);
            c->pos += k_vsizes[type];
        }
    }
    kv->value_size = c->pos - kv->value_offset;
    int dup = smelt_names_add(&g->kv_index, kv->key, (size_t)i);
    if (dup == SMELT_NAMES_NOMEM) return SMELT_NOMEM(c->e, "key index");
    if (dup != SMELT_NAMES_ADDED)
        return SMELT_CORRUPT(c->e, c->file, kv->offset, kv->key, "duplicate key (first defined as kv #%d)",
                             dup);
    return 0;
}

static int parse_tensor(smelt_gguf *g, cur *c, uint64_t i)
{
    smelt_gguf_tensor *t = &g->t[i];
    char obj[64];
    snprintf(obj, sizeof obj, "tensor #%" PRIu64, i);
    t->info_offset = c->pos;
    smelt_str name;
    int rc = rd_str(c, &name, obj, "tensor name");
    if (rc) return rc;
    t->name = dup_str(name);
    if (!t->name) return SMELT_NOMEM(c->e, "tensor name");
    uint64_t at = c->pos;
    if ((rc = rd_u32(c, &t->n_dims, t->name, "n_dims"))) return rc;
    if (t->n_dims > SMELT_GGUF_MAX_DIMS)
        return SMELT_CORRUPT(c->e, c->file, at, t->name, "n_dims is %u, at most %d allowed", t->n_dims,
                             SMELT_GGUF_MAX_DIMS);
    t->nelements = 1;
    for (int d = 0; d < SMELT_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        at = c->pos;
        int64_t ne;
        if ((rc = rd(c, &ne, 8, t->name, "dimension"))) return rc;
        if (ne < 0)
            return SMELT_CORRUPT(c->e, c->file, at, t->name, "dimension %u is negative (%" PRId64 ")", d, ne);
        if (ne == 0)
            return SMELT_CORRUPT(c->e, c->file, at, t->name, "dimension %u is 0: a tensor without elements", d);
        t->ne[d] = (uint64_t)ne;
        if (!smelt_mul_u64(t->nelements, t->ne[d], &t->nelements) || t->nelements > INT64_MAX)
            return SMELT_CORRUPT(c->e, c->file, at, t->name,
                                 "element count overflows at dimension %u (%" PRId64 ")", d, ne);
    }
    at = c->pos;
    int32_t type;
    if ((rc = rd(c, &type, 4, t->name, "type"))) return rc;
    const smelt_type_info *ti = smelt_type_get(type);
    if (!ti)
        return SMELT_CORRUPT(c->e, c->file, at, t->name, "unknown ggml type id %d", type);
    if (ti->removed)
        return SMELT_ERR_AT(c->e, SMELT_EUNSUPPORTED, c->file, at, t->name,
                            "type id %d (%s) was removed from GGUF; re-quantize from the original "
                            "model",
                            type, ti->name);
    t->type = type;
    if (t->ne[0] % ti->blck)
        return SMELT_CORRUPT(c->e, c->file, at, t->name,
                             "row length %" PRIu64 " is not a multiple of the %s block size %u",
                             t->ne[0], ti->name, ti->blck);
    if (!smelt_mul_u64(t->nelements / ti->blck, ti->bytes, &t->nbytes))
        return SMELT_CORRUPT(c->e, c->file, at, t->name, "byte size overflows");
    at = c->pos;
    if ((rc = rd_u64(c, &t->offset, t->name, "data offset"))) return rc;
    int dup = smelt_names_add(&g->t_index, t->name, (size_t)i);
    if (dup == SMELT_NAMES_NOMEM) return SMELT_NOMEM(c->e, "tensor index");
    if (dup != SMELT_NAMES_ADDED)
        return SMELT_CORRUPT(c->e, c->file, t->info_offset, t->name,
                             "duplicate tensor name (first defined as tensor #%d)", dup);
    return 0;
}

static int cmp_by_offset(const void *a, const void *b)
{
    const smelt_gguf_tensor *x = *(const smelt_gguf_tensor *const *)a;
    const smelt_gguf_tensor *y = *(const smelt_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int check_layout(smelt_gguf *g, cur *c, unsigned flags)
{
    smelt_err *e = c->e;
    uint64_t data_size = g->size >= g->data_off ? g->size - g->data_off : 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        smelt_gguf_tensor *t = &g->t[i];
        if (t->offset % g->alignment)
            return SMELT_CORRUPT(e, c->file, t->info_offset, t->name,
                                 "data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                                 t->offset, g->alignment);
        uint64_t end;
        if (!smelt_add_u64(t->offset, t->nbytes, &end))
            return SMELT_CORRUPT(e, c->file, t->info_offset, t->name, "data offset + size overflows");
        if (end > data_size) {
            /* a metadata-only file ends where the data section starts; a file that ends
             * inside it is truncated, whatever the caller accepts */
            if ((flags & SMELT_GGUF_META_ONLY) && g->size <= g->data_off) continue;
            return SMELT_CORRUPT(e, c->file, t->info_offset, t->name,
                                 "data [%" PRIu64 ", %" PRIu64 ") runs past the end of the file (the data section "
                                 "holds %" PRIu64 " bytes from file offset %" PRIu64 "): truncated or corrupt",
                                 t->offset, end, data_size, g->data_off);
        }
        t->data = g->base + g->data_off + t->offset;
    }
    if (g->n_tensors < 2) return 0;
    const smelt_gguf_tensor **by = malloc(sizeof *by * (size_t)g->n_tensors);
    if (!by) return SMELT_NOMEM(e, "tensor order");
    for (uint64_t i = 0; i < g->n_tensors; i++) by[i] = &g->t[i];
    qsort(by, (size_t)g->n_tensors, sizeof *by, cmp_by_offset);
    int rc = 0;
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        const smelt_gguf_tensor *a = by[i - 1], *b = by[i];
        if (a->nbytes && b->nbytes && a->offset + a->nbytes > b->offset) {
            rc = SMELT_CORRUPT(e, c->file, b->info_offset, b->name,
                               "data [%" PRIu64 ", %" PRIu64 ") overlaps tensor '%s' [%" PRIu64 ", %" PRIu64 ")",
                               b->offset, b->offset + b->nbytes, a->name, a->offset, a->offset + a->nbytes);
            break;
        }
    }
    free(by);
    return rc;
}

static int parse(smelt_gguf *g, unsigned flags, smelt_err *e)
{
    cur c = {g->base, g->size, 0, g->path, e};
    int rc;
    char magic[4];
    if ((rc = rd(&c, magic, 4, NULL, "magic"))) return rc;
    if (memcmp(magic, "GGUF", 4) != 0) {
        if (memcmp(magic, "FUGG", 4) == 0)
            return SMELT_ERR_AT(e, SMELT_EUNSUPPORTED, g->path, 0, NULL, "big-endian GGUF is not supported");
        return SMELT_CORRUPT(e, g->path, 0, NULL,
                             "bad magic %02x %02x %02x %02x, expected \"GGUF\" (47 47 55 46)",
                             (uint8_t)magic[0], (uint8_t)magic[1], (uint8_t)magic[2], (uint8_t)magic[3]);
    }
    if ((rc = rd_u32(&c, &g->version, NULL, "version"))) return rc;
    if (g->version == 1)
        return SMELT_ERR_AT(e, SMELT_EUNSUPPORTED, g->path, 4, NULL,
                            "GGUF version 1 is not supported (only 2 and 3); convert the model again");
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0 && g->version)
            return SMELT_ERR_AT(e, SMELT_EUNSUPPORTED, g->path, 4, NULL,
                                "version %u looks byte-swapped: big-endian GGUF is not supported",
                                g->version);
        return SMELT_ERR_AT(e, SMELT_EUNSUPPORTED, g->path, 4, NULL,
                            "unsupported GGUF version %u (supported: 2, 3)", g->version);
    }
    int64_t nt, nk;
    if ((rc = rd(&c, &nt, 8, NULL, "tensor count"))) return rc;
    if ((rc = rd(&c, &nk, 8, NULL, "kv count"))) return rc;
    uint64_t rem = c.size - c.pos;
    if (nt < 0 || (uint64_t)nt > rem / 24)
        return SMELT_CORRUPT(e, g->path, 8, NULL,
                             "tensor count %" PRId64 " cannot fit in the %" PRIu64 " bytes that follow",
                             nt, rem);
    if (nk < 0 || (uint64_t)nk > rem / 13)
        return SMELT_CORRUPT(e, g->path, 16, NULL,
                             "kv count %" PRId64 " cannot fit in the %" PRIu64 " bytes that follow", nk,
                             rem);
    g->n_tensors = (uint64_t)nt;
    g->n_kv = (uint64_t)nk;
    g->kv = calloc((size_t)g->n_kv + 1, sizeof *g->kv);
    g->t = calloc((size_t)g->n_tensors + 1, sizeof *g->t);
    if (!g->kv || !g->t) return SMELT_NOMEM(e, "gguf tables");
    if (smelt_names_init(&g->kv_index, (size_t)g->n_kv) || smelt_names_init(&g->t_index, (size_t)g->n_tensors))
        return SMELT_NOMEM(e, "gguf index");
    for (uint64_t i = 0; i < g->n_kv; i++)
        if ((rc = parse_kv(g, &c, i))) return rc;

    g->alignment = SMELT_GGUF_DEFAULT_ALIGNMENT;
    const smelt_gguf_kv *al = smelt_gguf_get_kv(g, "general.alignment");
    if (al) {
        if (al->type != SMELT_GGUF_U32)
            return SMELT_CORRUPT(e, g->path, al->offset, al->key, "must be u32, found %s",
                                 smelt_gguf_vtype_name(al->type));
        uint32_t a;
        memcpy(&a, al->data, 4);
        if (a == 0 || (a & (a - 1)))
            return SMELT_CORRUPT(e, g->path, al->value_offset, al->key, "alignment %u is not a power of 2",
                                 a);
        g->alignment = a;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if ((rc = parse_tensor(g, &c, i))) return rc;
    g->header_end = c.pos;
    /* the data section starts at the next aligned offset (files without tensors may end
     * before it) */
    if (!smelt_align_u64(c.pos, g->alignment, &g->data_off))
        return SMELT_CORRUPT(e, g->path, c.pos, NULL, "data offset overflows");
    if (g->n_tensors && g->data_off > g->size && !(flags & SMELT_GGUF_META_ONLY))
        return SMELT_CORRUPT(e, g->path, c.pos, NULL,
                             "file ends at %" PRIu64 " before the data section at %" PRIu64, g->size,
                             g->data_off);
    return check_layout(g, &c, flags);
}

static int open_common(smelt_gguf *g, unsigned flags, smelt_gguf **out, smelt_err *e)
{
    int rc = parse(g, flags, e);
    g->n_own = g->n_tensors;
    if (rc) {
        smelt_gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

/* ==== split models ==== */

void smelt_gguf_split_path(char *buf, size_t n, const char *prefix, int i, int count)
{
    snprintf(buf, n, "%s-%05d-of-%05d.gguf", prefix, i + 1, count);
}

/* An optional split key as an integer that fits u16; *found = whether it is there. */
static int split_key(const smelt_gguf *g, const char *key, uint32_t *out, bool *found, smelt_err *e)
{
    *found = smelt_gguf_find_kv(g, key) >= 0;
    if (!*found) return 0;
    int rc = smelt_gguf_get_u32(g, key, out, e);
    if (rc) return rc;
    if (*out > SMELT_GGUF_MAX_SHARDS)
        return SMELT_CORRUPT(e, g->path, smelt_gguf_get_kv(g, key)->value_offset, key,
                             "value %" PRIu32 " does not fit u16", *out);
    return 0;
}

/* Shard i of the split whose first file is g: open it and check that it belongs. */
static int open_shard(smelt_gguf *g, const char *prefix, uint16_t i, uint16_t count, unsigned flags,
                      smelt_gguf **out, smelt_err *e)
{
    char p[4200];
    smelt_gguf_split_path(p, sizeof p, prefix, i, count);
    if (access(p, F_OK) && errno == ENOENT)
        return SMELT_ERR(e, SMELT_EIO, p, NULL, "shard %u of %u is missing (%s says the model has %u files)", i + 1, count,
                         g->path, count);
    int rc = smelt_gguf_open(p, (flags & SMELT_GGUF_META_ONLY) | SMELT_GGUF_ONE_FILE, out, e);
    if (rc) return rc;
    smelt_gguf *s = *out;
    uint32_t no = 0, cnt = 0;
    bool has_no, has_cnt;
    if ((rc = split_key(s, SMELT_GGUF_SPLIT_NO, &no, &has_no, e)) ||
        (rc = split_key(s, SMELT_GGUF_SPLIT_COUNT, &cnt, &has_cnt, e)))
        return rc;
    if (!has_no || no != i)
        return SMELT_ERR(e, SMELT_EFORMAT, p, SMELT_GGUF_SPLIT_NO, "expected %u (shard %u of %u), found %s%" PRIu32, i,
                         i + 1, count, has_no ? "" : "no key ", no);
    if (!has_cnt || cnt != count)
        return SMELT_ERR(e, SMELT_EFORMAT, p, SMELT_GGUF_SPLIT_COUNT,
                         "expected %u as in %s, found %s%" PRIu32 ": a shard of another split", count, g->path,
                         has_cnt ? "" : "no key ", cnt);
    const smelt_gguf_kv *a = smelt_gguf_get_kv(g, SMELT_GGUF_SPLIT_TENSORS),
                        *b = smelt_gguf_get_kv(s, SMELT_GGUF_SPLIT_TENSORS);
    if (a && b && smelt_gguf_kv_int(a, 0) != smelt_gguf_kv_int(b, 0))
        return SMELT_ERR(e, SMELT_EFORMAT, p, SMELT_GGUF_SPLIT_TENSORS,
                         "expected %" PRId64 " as in %s, found %" PRId64 ": a shard of another split",
                         smelt_gguf_kv_int(a, 0), g->path, smelt_gguf_kv_int(b, 0));
    return 0;
}

/* g is a first shard: open the others and list their tensors after g's own. */
static int attach_shards(smelt_gguf *g, unsigned flags, smelt_err *e)
{
    uint32_t count = 1, no = 0;
    bool has_count, has_no;
    int rc;
    if ((rc = split_key(g, SMELT_GGUF_SPLIT_COUNT, &count, &has_count, e)) ||
        (rc = split_key(g, SMELT_GGUF_SPLIT_NO, &no, &has_no, e)))
        return rc;
    if (count <= 1) return 0;
    if (no != 0)
        return SMELT_ERR(e, SMELT_EUSAGE, g->path, SMELT_GGUF_SPLIT_NO,
                         "this file is shard %" PRIu32 " of %" PRIu32 "; give the first shard (split.no 0), which finds the others",
                         no + 1, count);
    char sfx[64], prefix[4096];
    snprintf(sfx, sizeof sfx, "-%05d-of-%05d.gguf", 1, (int)count);
    size_t lp = strlen(g->path), ls = strlen(sfx);
    if (lp <= ls || strcmp(g->path + lp - ls, sfx) || lp - ls >= sizeof prefix)
        return SMELT_ERR(e, SMELT_EUSAGE, g->path, NULL,
                         "the first of %" PRIu32 " shards must be named PREFIX%s (llama.cpp split naming)", count, sfx);
    memcpy(prefix, g->path, lp - ls);
    prefix[lp - ls] = 0;
    if (!(g->shards = calloc(count, sizeof *g->shards))) return SMELT_NOMEM(e, "shard list");
    g->shards[0] = g;
    g->n_shards = (uint16_t)count;
    uint64_t total = g->n_tensors;
    for (uint16_t i = 1; i < count; i++) {
        if ((rc = open_shard(g, prefix, i, (uint16_t)count, flags, &g->shards[i], e))) return rc;
        total += g->shards[i]->n_tensors;
    }
    smelt_gguf_tensor *all = realloc(g->t, sizeof *all * (size_t)(total + 1));
    if (!all) return SMELT_NOMEM(e, "tensor table");
    g->t = all;
    for (uint16_t i = 1; i < count; i++) {
        const smelt_gguf *s = g->shards[i];
        for (uint64_t j = 0; j < s->n_tensors; j++) {
            smelt_gguf_tensor *t = &g->t[g->n_tensors];
            *t = s->t[j];
            t->shard = i;
            long r = smelt_names_add(&g->t_index, t->name, (size_t)g->n_tensors);
            if (r == SMELT_NAMES_NOMEM) return SMELT_NOMEM(e, "tensor index");
            if (r != SMELT_NAMES_ADDED)
                return SMELT_CORRUPT(e, s->path, t->info_offset, t->name, "tensor also present in %s",
                                     g->shards[g->t[r].shard]->path);
            g->n_tensors++;
        }
    }
    const smelt_gguf_kv *want = smelt_gguf_get_kv(g, SMELT_GGUF_SPLIT_TENSORS);
    if (want && (smelt_gguf_kv_int(want, 0) < 0 || (uint64_t)smelt_gguf_kv_int(want, 0) != total))
        return SMELT_ERR(e, SMELT_EFORMAT, g->path, SMELT_GGUF_SPLIT_TENSORS,
                         "says %" PRId64 " tensors, the %" PRIu32 " shards hold %" PRIu64, smelt_gguf_kv_int(want, 0),
                         count, total);
    return 0;
}

int smelt_gguf_open(const char *path, unsigned flags, smelt_gguf **out, smelt_err *e)
{
    *out = NULL;
    smelt_gguf *g = calloc(1, sizeof *g);
    if (!g) return SMELT_NOMEM(e, "gguf handle");
    int rc = smelt_map_open(&g->map, path, e);
    if (rc) {
        free(g);
        return rc;
    }
    g->base = g->map.data;
    g->size = g->map.size;
    g->path = strdup(path);
    if (!g->path) {
        smelt_gguf_close(g);
        return SMELT_NOMEM(e, "path");
    }
    if ((rc = open_common(g, flags, out, e))) return rc;
    if (!(flags & SMELT_GGUF_ONE_FILE) && (rc = attach_shards(g, flags, e))) {
        smelt_gguf_close(g);
        *out = NULL;
    }
    return rc;
}

uint16_t smelt_gguf_n_shards(const smelt_gguf *g) { return g->n_shards ? g->n_shards : 1; }

const smelt_gguf *smelt_gguf_shard(const smelt_gguf *g, uint16_t i)
{
    if (!g->n_shards) return i == 0 ? g : NULL;
    return i < g->n_shards ? g->shards[i] : NULL;
}

int smelt_gguf_open_mem(const void *buf, size_t size, const char *name, unsigned flags,
                        smelt_gguf **out, smelt_err *e)
{
    *out = NULL;
    smelt_gguf *g = calloc(1, sizeof *g);
    if (!g) return SMELT_NOMEM(e, "gguf handle");
    g->base = buf;
    g->size = size;
    g->path = strdup(name ? name : "<memory>");
    if (!g->path) {
        free(g);
        return SMELT_NOMEM(e, "path");
    }
    return open_common(g, flags, out, e);
}

void smelt_gguf_close(smelt_gguf *g)
{
    if (!g) return;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++) {
            free((void *)g->kv[i].key);
            free((void *)g->kv[i].str_off);
        }
    if (g->t)
        for (uint64_t i = 0; i < g->n_own; i++) free((void *)g->t[i].name);
    for (uint16_t i = 1; i < g->n_shards; i++) smelt_gguf_close(g->shards[i]);
    free(g->shards);
    free(g->kv);
    free(g->t);
    smelt_names_free(&g->kv_index);
    smelt_names_free(&g->t_index);
    smelt_map_close(&g->map);
    free(g->path);
    free(g);
}

/* ==== accessors ==== */

const char *smelt_gguf_path(const smelt_gguf *g) { return g->path; }
uint32_t smelt_gguf_version(const smelt_gguf *g) { return g->version; }
uint64_t smelt_gguf_alignment(const smelt_gguf *g) { return g->alignment; }
uint64_t smelt_gguf_data_offset(const smelt_gguf *g) { return g->data_off; }
uint64_t smelt_gguf_header_end(const smelt_gguf *g) { return g->header_end; }
uint64_t smelt_gguf_file_size(const smelt_gguf *g) { return g->size; }

uint64_t smelt_gguf_total_size(const smelt_gguf *g)
{
    uint64_t n = g->size;
    for (uint16_t i = 1; i < g->n_shards; i++) n += g->shards[i]->size;
    return n;
}
const uint8_t *smelt_gguf_base(const smelt_gguf *g) { return g->base; }

void smelt_gguf_release_tensor(const smelt_gguf *g, const smelt_gguf_tensor *t)
{
    const smelt_gguf *f = smelt_gguf_shard(g, t->shard);
    if (f && f->map.data && t->data) smelt_map_release(&f->map, f->data_off + t->offset, t->nbytes);
}

uint64_t smelt_gguf_n_kv(const smelt_gguf *g) { return g->n_kv; }

const smelt_gguf_kv *smelt_gguf_kv_at(const smelt_gguf *g, uint64_t i)
{
    return i < g->n_kv ? &g->kv[i] : NULL;
}

int64_t smelt_gguf_find_kv(const smelt_gguf *g, const char *key)
{
    long i = smelt_names_find(&g->kv_index, key);
    return i;
}

const smelt_gguf_kv *smelt_gguf_get_kv(const smelt_gguf *g, const char *key)
{
    int64_t i = smelt_gguf_find_kv(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

uint64_t smelt_gguf_n_tensors(const smelt_gguf *g) { return g->n_tensors; }

const smelt_gguf_tensor *smelt_gguf_tensor_at(const smelt_gguf *g, uint64_t i)
{
    return i < g->n_tensors ? &g->t[i] : NULL;
}

const smelt_gguf_tensor *smelt_gguf_find_tensor(const smelt_gguf *g, const char *name)
{
    long i = smelt_names_find(&g->t_index, name);
    return i < 0 ? NULL : &g->t[i];
}

uint64_t smelt_gguf_tensor_rows(const smelt_gguf_tensor *t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

uint64_t smelt_gguf_tensor_row_bytes(const smelt_gguf_tensor *t)
{
    const smelt_type_info *ti = smelt_type_get(t->type);
    return t->ne[0] / ti->blck * ti->bytes;
}

/* ==== values ==== */

static uint64_t elem_off(const smelt_gguf_kv *kv, uint64_t i)
{
    int et = kv->type == SMELT_GGUF_ARRAY ? kv->arr_type : kv->type;
    return i * k_vsizes[et];
}

smelt_str smelt_gguf_kv_str(const smelt_gguf_kv *kv)
{
    smelt_str s = {"", 0};
    if (kv->type != SMELT_GGUF_STRING) return s;
    memcpy(&s.n, kv->data, 8);
    s.p = (const char *)kv->data + 8;
    return s;
}

smelt_str smelt_gguf_arr_str(const smelt_gguf_kv *kv, uint64_t i)
{
    smelt_str s = {"", 0};
    if (kv->type != SMELT_GGUF_ARRAY || kv->arr_type != SMELT_GGUF_STRING || i >= kv->n) return s;
    const uint8_t *p = kv->data + kv->str_off[i];
    memcpy(&s.n, p, 8);
    s.p = (const char *)p + 8;
    return s;
}

int64_t smelt_gguf_int_at(int vtype, const void *at)
{
    const uint8_t *p = at;
    switch (vtype) {
    case SMELT_GGUF_U8: case SMELT_GGUF_BOOL: return *p;
    case SMELT_GGUF_I8: return (int8_t)*p;
    case SMELT_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case SMELT_GGUF_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case SMELT_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case SMELT_GGUF_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case SMELT_GGUF_U64: { uint64_t v; memcpy(&v, p, 8); return v > INT64_MAX ? INT64_MAX : (int64_t)v; }
    case SMELT_GGUF_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    default: return 0;
    }
}

int64_t smelt_gguf_kv_int(const smelt_gguf_kv *kv, uint64_t i)
{
    int et = kv->type == SMELT_GGUF_ARRAY ? kv->arr_type : kv->type;
    const uint8_t *p = kv->data + elem_off(kv, i);
    switch (et) {
    case SMELT_GGUF_F32: { float v; memcpy(&v, p, 4); return (int64_t)v; }
    case SMELT_GGUF_F64: { double v; memcpy(&v, p, 8); return (int64_t)v; }
    default: return smelt_gguf_int_at(et, p);
    }
}

uint64_t smelt_gguf_kv_uint(const smelt_gguf_kv *kv, uint64_t i)
{
    int et = kv->type == SMELT_GGUF_ARRAY ? kv->arr_type : kv->type;
    if (et == SMELT_GGUF_U64) {
        uint64_t v;
        memcpy(&v, kv->data + elem_off(kv, i), 8);
        return v;
    }
    return (uint64_t)smelt_gguf_kv_int(kv, i);
}

double smelt_gguf_kv_num(const smelt_gguf_kv *kv, uint64_t i)
{
    int et = kv->type == SMELT_GGUF_ARRAY ? kv->arr_type : kv->type;
    const uint8_t *p = kv->data + elem_off(kv, i);
    if (et == SMELT_GGUF_F32) { float v; memcpy(&v, p, 4); return v; }
    if (et == SMELT_GGUF_F64) { double v; memcpy(&v, p, 8); return v; }
    if (et == SMELT_GGUF_U64) return (double)smelt_gguf_kv_uint(kv, i);
    return (double)smelt_gguf_kv_int(kv, i);
}

static bool is_int_type(int t)
{
    return t == SMELT_GGUF_U8 || t == SMELT_GGUF_I8 || t == SMELT_GGUF_U16 || t == SMELT_GGUF_I16 ||
           t == SMELT_GGUF_U32 || t == SMELT_GGUF_I32 || t == SMELT_GGUF_U64 || t == SMELT_GGUF_I64;
}

static bool is_signed_type(int t)
{
    return t == SMELT_GGUF_I8 || t == SMELT_GGUF_I16 || t == SMELT_GGUF_I32 || t == SMELT_GGUF_I64;
}

static int lookup(const smelt_gguf *g, const char *key, const smelt_gguf_kv **kv, smelt_err *e)
{
    *kv = smelt_gguf_get_kv(g, key);
    if (!*kv) return SMELT_ERR(e, SMELT_EFORMAT, g->path, key, "required key is missing");
    return 0;
}

static int wrong_type(const smelt_gguf *g, const smelt_gguf_kv *kv, const char *want, smelt_err *e)
{
    return SMELT_CORRUPT(e, g->path, kv->offset, kv->key, "expected %s, found %s%s%s", want,
                         smelt_gguf_vtype_name(kv->type), kv->type == SMELT_GGUF_ARRAY ? " of " : "",
                         kv->type == SMELT_GGUF_ARRAY ? smelt_gguf_vtype_name(kv->arr_type) : "");
}

static int get_uint(const smelt_gguf *g, const char *key, uint64_t max, uint64_t *out, const char *want,
                    smelt_err *e)
{
    const smelt_gguf_kv *kv;
    int rc = lookup(g, key, &kv, e);
    if (rc) return rc;
    if (!is_int_type(kv->type)) return wrong_type(g, kv, want, e);
    if (is_signed_type(kv->type) && smelt_gguf_kv_int(kv, 0) < 0)
        return SMELT_CORRUPT(e, g->path, kv->value_offset, key, "expected a non-negative value, found %" PRId64,
                             smelt_gguf_kv_int(kv, 0));
    uint64_t v = smelt_gguf_kv_uint(kv, 0);
    if (v > max)
        return SMELT_CORRUPT(e, g->path, kv->value_offset, key, "value %" PRIu64 " does not fit %s", v, want);
    *out = v;
    return 0;
}

int smelt_gguf_get_u32(const smelt_gguf *g, const char *key, uint32_t *out, smelt_err *e)
{
    uint64_t v;
    int rc = get_uint(g, key, UINT32_MAX, &v, "u32", e);
    if (!rc) *out = (uint32_t)v;
    return rc;
}

int smelt_gguf_get_u64(const smelt_gguf *g, const char *key, uint64_t *out, smelt_err *e)
{
    return get_uint(g, key, UINT64_MAX, out, "u64", e);
}

int smelt_gguf_get_i64(const smelt_gguf *g, const char *key, int64_t *out, smelt_err *e)
{
    const smelt_gguf_kv *kv;
    int rc = lookup(g, key, &kv, e);
    if (rc) return rc;
    if (!is_int_type(kv->type)) return wrong_type(g, kv, "an integer", e);
    if (kv->type == SMELT_GGUF_U64 && smelt_gguf_kv_uint(kv, 0) > INT64_MAX)
        return SMELT_CORRUPT(e, g->path, kv->value_offset, key, "value does not fit i64");
    *out = smelt_gguf_kv_int(kv, 0);
    return 0;
}

int smelt_gguf_get_f32(const smelt_gguf *g, const char *key, float *out, smelt_err *e)
{
    const smelt_gguf_kv *kv;
    int rc = lookup(g, key, &kv, e);
    if (rc) return rc;
    if (kv->type != SMELT_GGUF_F32 && kv->type != SMELT_GGUF_F64) return wrong_type(g, kv, "f32", e);
    *out = (float)smelt_gguf_kv_num(kv, 0);
    return 0;
}

int smelt_gguf_get_bool(const smelt_gguf *g, const char *key, bool *out, smelt_err *e)
{
    const smelt_gguf_kv *kv;
    int rc = lookup(g, key, &kv, e);
    if (rc) return rc;
    if (kv->type != SMELT_GGUF_BOOL) return wrong_type(g, kv, "bool", e);
    *out = kv->data[0] != 0;
    return 0;
}

int smelt_gguf_get_str(const smelt_gguf *g, const char *key, smelt_str *out, smelt_err *e)
{
    const smelt_gguf_kv *kv;
    int rc = lookup(g, key, &kv, e);
    if (rc) return rc;
    if (kv->type != SMELT_GGUF_STRING) return wrong_type(g, kv, "string", e);
    *out = smelt_gguf_kv_str(kv);
    return 0;
}

int smelt_gguf_get_arr(const smelt_gguf *g, const char *key, int elem_type, const smelt_gguf_kv **out,
                       smelt_err *e)
{
    const smelt_gguf_kv *kv;
    int rc = lookup(g, key, &kv, e);
    if (rc) return rc;
    if (kv->type != SMELT_GGUF_ARRAY || (elem_type >= 0 && kv->arr_type != elem_type)) {
        char want[48];
        snprintf(want, sizeof want, "array of %s", elem_type >= 0 ? smelt_gguf_vtype_name(elem_type) : "any");
        return wrong_type(g, kv, want, e);
    }
    *out = kv;
    return 0;
}

/* ==== formatting ==== */

static void add_quoted(smelt_strbuf *s, smelt_str v, size_t max)
{
    smelt_strbuf_puts(s, "\"");
    uint64_t n = v.n > max ? max : v.n;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v.p[i];
        if (ch == '"' || ch == '\\') smelt_strbuf_printf(s, "\\%c", ch);
        else if (ch == '\n') smelt_strbuf_puts(s, "\\n");
        else if (ch == '\t') smelt_strbuf_puts(s, "\\t");
        else if (ch == '\r') smelt_strbuf_puts(s, "\\r");
        else if (ch < 0x20 || ch == 0x7f) smelt_strbuf_printf(s, "\\x%02x", ch);
        else smelt_strbuf_add(s, (const char *)&ch, 1);
    }
    smelt_strbuf_puts(s, "\"");
    if (v.n > max) smelt_strbuf_printf(s, "… (%" PRIu64 " bytes)", v.n);
}

static void add_element(smelt_strbuf *s, const smelt_gguf_kv *kv, int et, uint64_t i)
{
    if (et == SMELT_GGUF_F32 || et == SMELT_GGUF_F64) smelt_strbuf_printf(s, "%.9g", smelt_gguf_kv_num(kv, i));
    else if (et == SMELT_GGUF_BOOL) smelt_strbuf_printf(s, "%s", smelt_gguf_kv_int(kv, i) ? "true" : "false");
    else if (et == SMELT_GGUF_U64) smelt_strbuf_printf(s, "%" PRIu64, smelt_gguf_kv_uint(kv, i));
    else smelt_strbuf_printf(s, "%" PRId64, smelt_gguf_kv_int(kv, i));
}

size_t smelt_gguf_kv_format(const smelt_gguf_kv *kv, char *buf, size_t n, uint64_t max_elems)
{
    smelt_strbuf s;
    smelt_strbuf_init_fixed(&s, buf, n);
    if (kv->type == SMELT_GGUF_STRING) {
        add_quoted(&s, smelt_gguf_kv_str(kv), max_elems ? 400 : SIZE_MAX);
    } else if (kv->type == SMELT_GGUF_ARRAY) {
        uint64_t shown = (max_elems && kv->n > max_elems) ? max_elems : kv->n;
        smelt_strbuf_puts(&s, "[");
        for (uint64_t i = 0; i < shown; i++) {
            if (i) smelt_strbuf_puts(&s, ", ");
            if (kv->arr_type == SMELT_GGUF_STRING) add_quoted(&s, smelt_gguf_arr_str(kv, i), max_elems ? 80 : SIZE_MAX);
            else add_element(&s, kv, kv->arr_type, i);
        }
        if (shown < kv->n) smelt_strbuf_printf(&s, ", … (%" PRIu64 " total)", kv->n);
        smelt_strbuf_puts(&s, "]");
    } else {
        add_element(&s, kv, kv->type, 0);
    }
    return s.len;
}
