/* gguf_write.c — streaming GGUF writer. Each KV is kept as its encoded record so that
 * set/replace/copy are simple and output is byte-exact; tensor data is streamed. */
#include "gguf.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/ckd.h"
#include "base/file.h"
#include "base/guard.h"
#include "base/strbuf.h"

typedef struct {
    char *key;
    uint8_t *rec; /* full record: key string, type, value */
    size_t len;
} wkv;

typedef struct {
    char *name;
    uint32_t n_dims;
    uint64_t ne[SMELT_GGUF_MAX_DIMS];
    int type;
    uint64_t nbytes, offset;
} wtensor;

struct smelt_gguf_writer {
    uint32_t version;
    bool no_pad_empty;
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    /* split output (llama-gguf-split's layout); 0 = no limit */
    bool split;
    uint64_t split_bytes, split_tensors;
    const smelt_guard *guard;
    /* streaming state */
    smelt_outfile *out;  /* the file being written */
    uint64_t alignment;
    size_t cur;        /* tensor being written */
    uint64_t cur_done; /* bytes of it written */
    int failed;
    size_t n_files, cur_file; /* files of the output; the one being written */
    size_t only;              /* 1 + the one file to write (0: all of them) */
    size_t end;               /* tensors before this one are written (n_t, or the file's end) */
    size_t *first;            /* first tensor of file i (n_files + 1 entries) */
    smelt_outfile **outs;
    char **paths;
};

smelt_gguf_writer *smelt_gguf_writer_new(void)
{
    smelt_gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->version = 3;
    return w;
}

void smelt_gguf_writer_free(smelt_gguf_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_files; i++) {
        if (w->outs) smelt_outfile_abort(w->outs[i]);
        if (w->paths) free(w->paths[i]);
    }
    free(w->outs);
    free(w->paths);
    free(w->first);
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].rec);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

static size_t plan_files(const smelt_gguf_writer *w, size_t *first);

void smelt_gguf_writer_set_version(smelt_gguf_writer *w, uint32_t version) { w->version = version; }
void smelt_gguf_writer_set_pad_empty(smelt_gguf_writer *w, bool pad) { w->no_pad_empty = !pad; }

void smelt_gguf_writer_set_split(smelt_gguf_writer *w, uint64_t max_bytes, uint64_t max_tensors)
{
    w->split = true;
    w->split_bytes = max_bytes;
    w->split_tensors = max_tensors;
}

void smelt_gguf_writer_set_guard(smelt_gguf_writer *w, const smelt_guard *g) { w->guard = g; }

void smelt_gguf_writer_set_only_file(smelt_gguf_writer *w, size_t f) { w->only = f + 1; }

size_t smelt_gguf_writer_file_of(const smelt_gguf_writer *w, uint64_t i)
{
    size_t nf = plan_files(w, NULL);
    size_t *first = malloc((nf + 1) * sizeof *first);
    if (!first) return SIZE_MAX;
    plan_files(w, first);
    size_t f = nf - 1;
    while (f > 0 && first[f] > i) f--;
    free(first);
    return f;
}

/* ==== KV records ==== */

static void put_u32(smelt_strbuf *b, uint32_t v) { smelt_strbuf_add(b, &v, 4); }
static void put_u64(smelt_strbuf *b, uint64_t v) { smelt_strbuf_add(b, &v, 8); }
static void put_str(smelt_strbuf *b, const char *s, size_t n)
{
    put_u64(b, n);
    smelt_strbuf_add(b, s, n);
}

static int check_open(smelt_gguf_writer *w, smelt_err *e)
{
    if (w->out) return SMELT_ERR(e, SMELT_EINTERNAL, NULL, NULL, "GGUF header already written");
    return 0;
}

static long find_kv(const smelt_gguf_writer *w, const char *key)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) return (long)i;
    return -1;
}

/* Install a record for key (takes ownership of b->text). */
static int install(smelt_gguf_writer *w, const char *key, smelt_strbuf *b, smelt_err *e)
{
    if (b->oom) {
        smelt_strbuf_free(b);
        return SMELT_NOMEM(e, "gguf kv");
    }
    long i = find_kv(w, key);
    if (i >= 0) {
        free(w->kv[i].rec);
        w->kv[i].rec = (uint8_t *)b->text;
        w->kv[i].len = b->len;
        return 0;
    }
    if (w->n_kv == w->cap_kv) {
        size_t nc = w->cap_kv ? w->cap_kv * 2 : 32;
        wkv *nk = realloc(w->kv, nc * sizeof *nk);
        if (!nk) {
            smelt_strbuf_free(b);
            return SMELT_NOMEM(e, "gguf kv table");
        }
        w->kv = nk;
        w->cap_kv = nc;
    }
    char *k = strdup(key);
    if (!k) {
        smelt_strbuf_free(b);
        return SMELT_NOMEM(e, "gguf key");
    }
    w->kv[w->n_kv++] = (wkv){k, (uint8_t *)b->text, b->len};
    return 0;
}

static int set_scalar(smelt_gguf_writer *w, const char *key, int type, const void *v, smelt_err *e)
{
    int rc = check_open(w, e);
    if (rc) return rc;
    smelt_strbuf b = {0};
    put_str(&b, key, strlen(key));
    put_u32(&b, (uint32_t)type);
    smelt_strbuf_add(&b, v, smelt_gguf_vtype_size(type));
    return install(w, key, &b, e);
}

#define SETTER(fn, ctype, vt)                                                                   \
    int smelt_gguf_writer_set_##fn(smelt_gguf_writer *w, const char *key, ctype v, smelt_err *e) \
    {                                                                                           \
        return set_scalar(w, key, vt, &v, e);                                                   \
    }
SETTER(u8, uint8_t, SMELT_GGUF_U8)
SETTER(i8, int8_t, SMELT_GGUF_I8)
SETTER(u16, uint16_t, SMELT_GGUF_U16)
SETTER(i16, int16_t, SMELT_GGUF_I16)
SETTER(u32, uint32_t, SMELT_GGUF_U32)
SETTER(i32, int32_t, SMELT_GGUF_I32)
SETTER(u64, uint64_t, SMELT_GGUF_U64)
SETTER(i64, int64_t, SMELT_GGUF_I64)
SETTER(f32, float, SMELT_GGUF_F32)
SETTER(f64, double, SMELT_GGUF_F64)
#undef SETTER

int smelt_gguf_writer_set_bool(smelt_gguf_writer *w, const char *key, bool v, smelt_err *e)
{
    uint8_t b = v ? 1 : 0;
    return set_scalar(w, key, SMELT_GGUF_BOOL, &b, e);
}

int smelt_gguf_writer_set_strn(smelt_gguf_writer *w, const char *key, const char *v, size_t n,
                               smelt_err *e)
{
    int rc = check_open(w, e);
    if (rc) return rc;
    smelt_strbuf b = {0};
    put_str(&b, key, strlen(key));
    put_u32(&b, SMELT_GGUF_STRING);
    put_str(&b, v, n);
    return install(w, key, &b, e);
}

int smelt_gguf_writer_set_str(smelt_gguf_writer *w, const char *key, const char *v, smelt_err *e)
{
    return smelt_gguf_writer_set_strn(w, key, v, strlen(v), e);
}

int smelt_gguf_writer_set_arr(smelt_gguf_writer *w, const char *key, int elem_type, const void *data,
                              uint64_t n, smelt_err *e)
{
    int rc = check_open(w, e);
    if (rc) return rc;
    size_t es = smelt_gguf_vtype_size(elem_type);
    if (!es)
        return SMELT_ERR(e, SMELT_EINTERNAL, NULL, key, "array element type %s is not fixed-size",
                         smelt_gguf_vtype_name(elem_type));
    smelt_strbuf b = {0};
    put_str(&b, key, strlen(key));
    put_u32(&b, SMELT_GGUF_ARRAY);
    put_u32(&b, (uint32_t)elem_type);
    put_u64(&b, n);
    smelt_strbuf_add(&b, data, (size_t)(n * es));
    return install(w, key, &b, e);
}

int smelt_gguf_writer_set_arr_str(smelt_gguf_writer *w, const char *key, const char *const *strs,
                                  const size_t *lens, uint64_t n, smelt_err *e)
{
    int rc = check_open(w, e);
    if (rc) return rc;
    smelt_strbuf b = {0};
    put_str(&b, key, strlen(key));
    put_u32(&b, SMELT_GGUF_ARRAY);
    put_u32(&b, SMELT_GGUF_STRING);
    put_u64(&b, n);
    for (uint64_t i = 0; i < n; i++) put_str(&b, strs[i], lens ? lens[i] : strlen(strs[i]));
    return install(w, key, &b, e);
}

int smelt_gguf_writer_copy_kv(smelt_gguf_writer *w, const smelt_gguf_kv *kv, smelt_err *e)
{
    int rc = check_open(w, e);
    if (rc) return rc;
    smelt_strbuf b = {0};
    put_str(&b, kv->key, strlen(kv->key));
    put_u32(&b, (uint32_t)kv->type);
    if (kv->type == SMELT_GGUF_ARRAY) {
        put_u32(&b, (uint32_t)kv->arr_type);
        put_u64(&b, kv->n);
    }
    smelt_strbuf_add(&b, kv->data, (size_t)kv->value_size);
    return install(w, kv->key, &b, e);
}

int smelt_gguf_writer_copy_all_kv(smelt_gguf_writer *w, const smelt_gguf *g, smelt_err *e)
{
    for (uint64_t i = 0; i < smelt_gguf_n_kv(g); i++) {
        int rc = smelt_gguf_writer_copy_kv(w, smelt_gguf_kv_at(g, i), e);
        if (rc) return rc;
    }
    return 0;
}

int smelt_gguf_writer_remove_kv(smelt_gguf_writer *w, const char *key)
{
    long i = find_kv(w, key);
    if (i < 0 || w->out) return 0;
    free(w->kv[i].key);
    free(w->kv[i].rec);
    memmove(&w->kv[i], &w->kv[i + 1], (w->n_kv - (size_t)i - 1) * sizeof *w->kv);
    w->n_kv--;
    return 1;
}

bool smelt_gguf_writer_has_kv(const smelt_gguf_writer *w, const char *key) { return find_kv(w, key) >= 0; }

/* ==== tensors and layout ==== */

static uint64_t writer_alignment(const smelt_gguf_writer *w)
{
    long i = find_kv(w, "general.alignment");
    if (i < 0) return SMELT_GGUF_DEFAULT_ALIGNMENT;
    const wkv *k = &w->kv[i];
    size_t klen = strlen(k->key);
    uint32_t type, v;
    memcpy(&type, k->rec + 8 + klen, 4);
    if (type != SMELT_GGUF_U32) return 0;
    memcpy(&v, k->rec + 8 + klen + 4, 4);
    if (v == 0 || (v & (v - 1))) return 0;
    return v;
}

int smelt_gguf_writer_add_tensor(smelt_gguf_writer *w, const char *name, uint32_t n_dims,
                                 const uint64_t *ne, int type, smelt_err *e)
{
    int rc = check_open(w, e);
    if (rc) return rc;
    if (strlen(name) >= SMELT_GGUF_MAX_NAME)
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, NULL, name,
                         "tensor name is %zu bytes; llama.cpp accepts at most %d", strlen(name),
                         SMELT_GGUF_MAX_NAME - 1);
    if (n_dims > SMELT_GGUF_MAX_DIMS)
        return SMELT_ERR(e, SMELT_EINTERNAL, NULL, name, "n_dims %u > %d", n_dims, SMELT_GGUF_MAX_DIMS);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return SMELT_ERR(e, SMELT_EINTERNAL, NULL, name, "tensor declared twice");
    wtensor t = {0};
    t.n_dims = n_dims;
    uint64_t nel = 1;
    for (int d = 0; d < SMELT_GGUF_MAX_DIMS; d++) {
        t.ne[d] = (uint32_t)d < n_dims ? ne[d] : 1;
        if (!smelt_mul_u64(nel, t.ne[d], &nel))
            return SMELT_ERR(e, SMELT_EINTERNAL, NULL, name, "element count overflows");
    }
    const smelt_type_info *ti = smelt_type_get(type);
    if (!ti || ti->removed)
        return SMELT_ERR(e, SMELT_EINTERNAL, NULL, name, "unknown ggml type %d", type);
    if (t.ne[0] % ti->blck)
        return SMELT_ERR(e, SMELT_EMISMATCH, NULL, name,
                         "row length %" PRIu64 " is not a multiple of the %s block size %u", t.ne[0],
                         ti->name, ti->blck);
    t.nbytes = nel / ti->blck * ti->bytes;
    t.type = type;
    if (w->n_t == w->cap_t) {
        size_t nc = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *nt = realloc(w->t, nc * sizeof *nt);
        if (!nt) return SMELT_NOMEM(e, "gguf tensor table");
        w->t = nt;
        w->cap_t = nc;
    }
    t.name = strdup(name);
    if (!t.name) return SMELT_NOMEM(e, "tensor name");
    w->t[w->n_t++] = t;
    return 0;
}

uint64_t smelt_gguf_writer_n_tensors(const smelt_gguf_writer *w) { return w->n_t; }

/* ==== files ==== */

static bool is_split_key(const char *k)
{
    return !strcmp(k, SMELT_GGUF_SPLIT_NO) || !strcmp(k, SMELT_GGUF_SPLIT_COUNT) || !strcmp(k, SMELT_GGUF_SPLIT_TENSORS);
}

/* Which tensors go to which file, as llama-gguf-split --split decides: a new file starts
 * before tensor i when i is a multiple of the tensor limit, or when the file's tensor data,
 * each tensor padded to 32 bytes, would exceed the size limit with it (a tensor larger than
 * the limit gets a file of its own; no file is left without tensors). Fills first[0..n]
 * when given; returns the number of files. */
static size_t plan_files(const smelt_gguf_writer *w, size_t *first)
{
    size_t nf = 1, start = 0;
    uint64_t used = 0;
    if (first) first[0] = 0;
    for (size_t i = 0; w->split && i < w->n_t; i++) {
        uint64_t n = smelt_pad_u64(w->t[i].nbytes, SMELT_GGUF_DEFAULT_ALIGNMENT);
        bool cut = (w->split_tensors && i > 0 && i % w->split_tensors == 0) ||
                   (w->split_bytes && i > start && used + n > w->split_bytes);
        if (cut) {
            if (first) first[nf] = i;
            nf++;
            start = i;
            used = 0;
        }
        used += n;
    }
    if (first) first[nf] = w->n_t;
    return nf;
}

/* The three split records, in the order llama-gguf-split leaves them (split.count is set
 * last, once the number of files is known, so it moves to the end). */
static void put_split_kvs(smelt_strbuf *b, size_t file, size_t n_files, uint64_t n_tensors)
{
    uint16_t no = (uint16_t)file, cnt = (uint16_t)n_files;
    int32_t tot = (int32_t)n_tensors;
    put_str(b, SMELT_GGUF_SPLIT_NO, strlen(SMELT_GGUF_SPLIT_NO));
    put_u32(b, SMELT_GGUF_U16);
    smelt_strbuf_add(b, &no, 2);
    put_str(b, SMELT_GGUF_SPLIT_TENSORS, strlen(SMELT_GGUF_SPLIT_TENSORS));
    put_u32(b, SMELT_GGUF_I32);
    smelt_strbuf_add(b, &tot, 4);
    put_str(b, SMELT_GGUF_SPLIT_COUNT, strlen(SMELT_GGUF_SPLIT_COUNT));
    put_u32(b, SMELT_GGUF_U16);
    smelt_strbuf_add(b, &cnt, 2);
}

/* KV records of file f: all of them unsplit; with a split, the first file's (but split.*)
 * then the split records in every file. Appends to b when given; returns the count. */
static uint64_t file_kvs(const smelt_gguf_writer *w, size_t f, size_t n_files, smelt_strbuf *b, uint64_t *bytes)
{
    uint64_t n = 0;
    *bytes = 0;
    for (size_t i = 0; i < w->n_kv && (f == 0 || !w->split); i++) {
        if (w->split && is_split_key(w->kv[i].key)) continue;
        if (b) smelt_strbuf_add(b, w->kv[i].rec, w->kv[i].len);
        *bytes += w->kv[i].len;
        n++;
    }
    if (w->split) {
        smelt_strbuf tmp = {0};
        put_split_kvs(&tmp, f, n_files, w->n_t);
        if (b) smelt_strbuf_add(b, tmp.text, tmp.len);
        *bytes += tmp.len;
        if (tmp.oom && b) b->oom = true;
        smelt_strbuf_free(&tmp);
        n += 3;
    }
    return n;
}

static uint64_t info_size(const wtensor *t) { return 8 + strlen(t->name) + 4 + 8 * t->n_dims + 4 + 8; }

/* Size of file f holding tensors [a, b). */
static uint64_t file_bytes(const smelt_gguf_writer *w, size_t f, size_t n_files, size_t a, size_t b, uint64_t align)
{
    uint64_t kvb, n = 4 + 4 + 8 + 8;
    file_kvs(w, f, n_files, NULL, &kvb);
    n += kvb;
    for (size_t i = a; i < b; i++) n += info_size(&w->t[i]);
    n = (b > a || !w->no_pad_empty) ? smelt_pad_u64(n, align) : n;
    for (size_t i = a; i < b; i++) n += smelt_pad_u64(w->t[i].nbytes, align);
    return n;
}

uint64_t smelt_gguf_writer_file_size(const smelt_gguf_writer *w)
{
    uint64_t align = writer_alignment(w);
    if (!align) align = SMELT_GGUF_DEFAULT_ALIGNMENT;
    size_t nf = plan_files(w, NULL);
    size_t *first = malloc((nf + 1) * sizeof *first);
    if (!first) return UINT64_MAX;
    plan_files(w, first);
    uint64_t n = 0;
    for (size_t f = 0; f < nf; f++)
        if (!w->only || w->only == f + 1) n += file_bytes(w, f, nf, first[f], first[f + 1], align);
    free(first);
    return n;
}

size_t smelt_gguf_writer_n_files(const smelt_gguf_writer *w) { return plan_files(w, NULL); }

void smelt_gguf_writer_file_path(const smelt_gguf_writer *w, const char *path, size_t i, char *buf, size_t n)
{
    if (!w->split) {
        snprintf(buf, n, "%s", path);
        return;
    }
    smelt_gguf_split_out_path(buf, n, path, (int)i, (int)plan_files(w, NULL));
}

void smelt_gguf_split_out_path(char *buf, size_t n, const char *out, int i, int count)
{
    char prefix[4096];
    snprintf(prefix, sizeof prefix, "%s", out);
    size_t lp = strlen(prefix);
    if (lp > 5 && !strcmp(prefix + lp - 5, ".gguf")) prefix[lp - 5] = 0;
    smelt_gguf_split_path(buf, n, prefix, i, count);
}

/* The header of file f holding tensors [a, z) of an n_files split, into b: magic, counts,
 * KV records, tensor infos with each tensor's offset from its file's data section; without
 * the padding after it. */
static void put_header(const smelt_gguf_writer *w, size_t f, size_t n_files, size_t a, size_t z, uint64_t align,
                       smelt_strbuf *b)
{
    uint64_t kvb;
    smelt_strbuf_add(b, "GGUF", 4);
    put_u32(b, w->version);
    put_u64(b, z - a);
    put_u64(b, 0); /* patched below */
    uint64_t nkv = file_kvs(w, f, n_files, b, &kvb);
    if (!b->oom) memcpy(b->text + 16, &nkv, 8);
    uint64_t off = 0;
    for (size_t i = a; i < z; i++) {
        const wtensor *t = &w->t[i];
        put_str(b, t->name, strlen(t->name));
        put_u32(b, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(b, t->ne[d]);
        put_u32(b, (uint32_t)t->type);
        put_u64(b, off);
        off += smelt_pad_u64(t->nbytes, align);
    }
}

int smelt_gguf_writer_header(const smelt_gguf_writer *w, uint8_t **buf, size_t *n, smelt_err *e)
{
    *buf = NULL;
    *n = 0;
    uint64_t align = writer_alignment(w);
    if (!align) return SMELT_ERR(e, SMELT_EUSAGE, NULL, "general.alignment", "must be a u32 power of two");
    smelt_strbuf b = {0};
    put_header(w, 0, 1, 0, w->n_t, align, &b);
    size_t len = b.len, padded = (w->n_t || !w->no_pad_empty) ? (size_t)smelt_pad_u64(len, align) : len;
    static const uint8_t zeros[256];
    while (!b.oom && b.len < padded) smelt_strbuf_add(&b, zeros, padded - b.len < sizeof zeros ? padded - b.len : sizeof zeros);
    if (b.oom) {
        smelt_strbuf_free(&b);
        return SMELT_NOMEM(e, "gguf header");
    }
    *buf = (uint8_t *)b.text;
    *n = b.len;
    return 0;
}

/* Open file f and write its header: each tensor's offset counts from its file's data. */
static int open_file(smelt_gguf_writer *w, size_t f, smelt_err *e)
{
    int rc = w->out && f > 0 ? smelt_outfile_finish(w->out, e) : 0;
    if (rc) return rc;
    if ((rc = smelt_outfile_open(&w->outs[f], w->paths[f], e))) return rc;
    w->out = w->outs[f];
    w->cur_file = f;
    size_t a = w->first[f], z = w->first[f + 1];
    smelt_strbuf b = {0};
    put_header(w, f, w->n_files, a, z, w->alignment, &b);
    if (b.oom) {
        smelt_strbuf_free(&b);
        return SMELT_NOMEM(e, "gguf header");
    }
    uint64_t off = 0; /* the offsets the header holds */
    for (size_t i = a; i < z; i++) {
        w->t[i].offset = off;
        off += smelt_pad_u64(w->t[i].nbytes, w->alignment);
    }
    rc = smelt_outfile_write(w->out, b.text, b.len, e);
    smelt_strbuf_free(&b);
    if (!rc && (z > a || !w->no_pad_empty)) rc = smelt_outfile_pad(w->out, w->alignment, e);
    return rc;
}

/* Skip tensors without data; open the files up to the one holding the next tensor (all of
 * them once every tensor is written). */
static int advance(smelt_gguf_writer *w, smelt_err *e)
{
    while (w->cur < w->end && w->t[w->cur].nbytes == 0) w->cur++;
    size_t want = w->only ? w->only - 1 : w->n_files - 1;
    if (w->cur < w->end)
        while (want > w->cur_file && w->first[want] > w->cur) want--;
    int rc = 0;
    while (!rc && w->cur_file < want) rc = open_file(w, w->cur_file + 1, e);
    return rc;
}

int smelt_gguf_writer_begin(smelt_gguf_writer *w, const char *path, smelt_err *e)
{
    int rc = check_open(w, e);
    if (rc) return rc;
    w->alignment = writer_alignment(w);
    if (!w->alignment)
        return SMELT_ERR(e, SMELT_EUSAGE, path, "general.alignment", "must be a u32 power of two");
    size_t nf = plan_files(w, NULL);
    if (nf > SMELT_GGUF_MAX_SHARDS || (w->split && w->n_t > INT32_MAX))
        return SMELT_ERR(e, SMELT_EUSAGE, path, NULL, "the split would need %zu files; GGUF splits hold at most %d", nf,
                         SMELT_GGUF_MAX_SHARDS);
    w->first = malloc((nf + 1) * sizeof *w->first);
    w->outs = calloc(nf, sizeof *w->outs);
    w->paths = calloc(nf, sizeof *w->paths);
    if (!w->first || !w->outs || !w->paths) return SMELT_NOMEM(e, "output files");
    plan_files(w, w->first);
    w->n_files = nf;
    if (w->only > nf)
        return SMELT_ERR(e, SMELT_EINTERNAL, path, NULL, "file %zu of a split into %zu files", w->only, nf);
    for (size_t f = 0; f < nf; f++) {
        char p[4200];
        smelt_gguf_writer_file_path(w, path, f, p, sizeof p);
        if (!(w->paths[f] = strdup(p))) return SMELT_NOMEM(e, "output path");
        if (w->guard && (!w->only || w->only == f + 1) && (rc = smelt_guard_check_file(w->guard, p, e))) return rc;
    }
    size_t f0 = w->only ? w->only - 1 : 0;
    w->cur = w->first[f0];
    w->end = w->only ? w->first[f0 + 1] : w->n_t;
    w->cur_done = 0;
    rc = open_file(w, f0, e);
    if (!rc) rc = advance(w, e);
    if (rc) w->failed = 1;
    return rc;
}

int smelt_gguf_writer_write(smelt_gguf_writer *w, const void *p, size_t n, smelt_err *e)
{
    if (!w->out || w->failed) return SMELT_ERR(e, SMELT_EINTERNAL, NULL, NULL, "GGUF writer is not writing");
    if (w->cur >= w->end) {
        if (!n) return 0;
        return SMELT_ERR(e, SMELT_EINTERNAL, smelt_outfile_path(w->out), NULL,
                         "%zu bytes of data written after the last tensor", n);
    }
    wtensor *t = &w->t[w->cur];
    if (n > t->nbytes - w->cur_done) {
        w->failed = 1;
        return SMELT_ERR(e, SMELT_EINTERNAL, smelt_outfile_path(w->out), t->name,
                         "write of %zu bytes exceeds the tensor's remaining %" PRIu64 " bytes", n,
                         t->nbytes - w->cur_done);
    }
    int rc = smelt_outfile_write(w->out, p, n, e);
    w->cur_done += n;
    if (!rc && w->cur_done == t->nbytes) {
        rc = smelt_outfile_pad(w->out, w->alignment, e);
        w->cur++;
        w->cur_done = 0;
        if (!rc) rc = advance(w, e);
    }
    if (rc) w->failed = 1;
    return rc;
}

uint64_t smelt_gguf_writer_current(const smelt_gguf_writer *w) { return w->cur; }

int smelt_gguf_writer_commit(smelt_gguf_writer *w, smelt_err *e)
{
    if (!w->out) return SMELT_ERR(e, SMELT_EINTERNAL, NULL, NULL, "GGUF writer was not started");
    if (w->failed) return SMELT_ERR(e, SMELT_EINTERNAL, NULL, NULL, "GGUF writer failed earlier");
    if (w->cur < w->end) {
        return SMELT_ERR(e, SMELT_EINTERNAL, smelt_outfile_path(w->out), w->t[w->cur].name,
                         "only %" PRIu64 " of %" PRIu64 " bytes of this tensor were written (tensor %zu of %zu)",
                         w->cur_done, w->t[w->cur].nbytes, w->cur + 1, w->n_t);
    }
    /* nothing appears at an output path before every file is complete; a failure removes
     * the files already renamed into place */
    int rc = 0;
    size_t done = 0;
    for (; done < w->n_files && !rc; done++) {
        if (!w->outs[done]) continue; /* not this writer's file (set_only_file) */
        rc = smelt_outfile_commit(w->outs[done], e);
        w->outs[done] = NULL;
    }
    if (rc)
        for (size_t f = 0; f + 1 < done; f++)
            if (!w->only || w->only == f + 1) unlink(w->paths[f]);
    w->out = NULL;
    return rc;
}
