/* torchsave.c — see torchsave.h. Our own writer of the torch.save layout for tests. */
#include "torchsave.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <dirent.h>
#include <jansson.h>

#include "formats/pickle.h"
#include "formats/safetensors.h"

/* ==== pickle ==== */

static void op(tb_buf *b, uint8_t o) { tb_u8(b, o); }

static void unicode(tb_buf *b, const char *s)
{
    op(b, 'X');
    tb_u32(b, (uint32_t)strlen(s));
    tb_put(b, s, strlen(s));
}

static void integer(tb_buf *b, uint64_t v)
{
    if (v < 256) {
        op(b, 'K');
        tb_u8(b, (uint8_t)v);
    } else if (v < 65536) {
        op(b, 'M');
        tb_u16(b, (uint16_t)v);
    } else if (v < 0x80000000u) {
        op(b, 'J');
        tb_u32(b, (uint32_t)v);
    } else {
        op(b, 0x8a);
        tb_u8(b, 8);
        tb_u64(b, v);
    }
}

static void global(tb_buf *b, const char *mod, const char *name)
{
    op(b, 'c');
    tb_put(b, mod, strlen(mod));
    op(b, '\n');
    tb_put(b, name, strlen(name));
    op(b, '\n');
}

static uint32_t memo;
static void put(tb_buf *b)
{
    op(b, 'q');
    tb_u8(b, (uint8_t)(memo++ & 0xff));
}

void ts_pickle(tb_buf *b, const ts_tensor *t, size_t n)
{
    memo = 0;
    op(b, 0x80);
    op(b, 2);
    global(b, "collections", "OrderedDict");
    put(b); /* 0 */
    op(b, ')');
    op(b, 'R');
    put(b); /* 1 */
    op(b, '(');
    for (size_t i = 0; i < n; i++) {
        unicode(b, t[i].name);
        global(b, "torch._utils", "_rebuild_tensor_v2");
        op(b, '(');
        op(b, '(');
        unicode(b, "storage");
        const char *sn = smelt_pk_storage_name(t[i].dt);
        global(b, "torch", sn ? sn : "UnknownStorage");
        char key[32];
        snprintf(key, sizeof key, "%zu", i);
        unicode(b, key);
        unicode(b, "cpu");
        uint64_t nel = 1;
        for (uint32_t d = 0; d < t[i].n_dims; d++) nel *= t[i].shape[d];
        integer(b, nel);
        op(b, 't');
        op(b, 'Q');
        integer(b, 0);
        op(b, '(');
        for (uint32_t d = 0; d < t[i].n_dims; d++) integer(b, t[i].shape[d]);
        op(b, 't');
        op(b, '(');
        uint64_t st = 1, strides[8];
        for (int d = (int)t[i].n_dims - 1; d >= 0; d--) {
            strides[d] = st;
            st *= t[i].shape[d];
        }
        for (uint32_t d = 0; d < t[i].n_dims; d++) integer(b, strides[d]);
        op(b, 't');
        op(b, 0x89);
        op(b, 'h');
        tb_u8(b, 0); /* BINGET OrderedDict */
        op(b, ')');
        op(b, 'R');
        op(b, 't');
        op(b, 'R');
    }
    op(b, 'u');
    op(b, '.');
}

/* ==== zip ==== */

static void u16(tb_buf *b, uint16_t v) { tb_u16(b, v); }
static void u32(tb_buf *b, uint32_t v) { tb_u32(b, v); }

void ts_zip(tb_buf *b, const ts_entry *e, size_t n, int zip64)
{
    uint64_t *offs = calloc(n + 1, sizeof *offs);
    uint32_t *crcs = calloc(n + 1, sizeof *crcs);
    uint64_t *csz = calloc(n + 1, sizeof *csz);
    uint8_t **comp = calloc(n + 1, sizeof *comp);
    for (size_t i = 0; i < n; i++) {
        crcs[i] = (uint32_t)crc32(crc32(0, Z_NULL, 0), e[i].data, (uInt)e[i].len);
        if (e[i].deflate) {
            z_stream s;
            memset(&s, 0, sizeof s);
            deflateInit2(&s, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
            uLong cap = deflateBound(&s, (uLong)e[i].len) + 16;
            comp[i] = malloc(cap);
            s.next_in = (Bytef *)e[i].data;
            s.avail_in = (uInt)e[i].len;
            s.next_out = comp[i];
            s.avail_out = (uInt)cap;
            deflate(&s, Z_FINISH);
            csz[i] = s.total_out;
            deflateEnd(&s);
        } else {
            csz[i] = e[i].len;
        }
        offs[i] = b->len;
        size_t nl = strlen(e[i].name);
        /* extra: zip64 (optional) then "FB" padding so the data starts on 64 bytes */
        size_t x64 = zip64 ? 20 : 0;
        size_t at = b->len + 30 + nl + x64 + 4;
        size_t pad = (64 - at % 64) % 64;
        u32(b, 0x04034b50);
        u16(b, zip64 ? 45 : 20);
        u16(b, 0);
        u16(b, e[i].deflate ? 8 : 0);
        u16(b, 0);
        u16(b, 0x21);
        u32(b, crcs[i]);
        u32(b, zip64 ? 0xffffffffu : (uint32_t)csz[i]);
        u32(b, zip64 ? 0xffffffffu : (uint32_t)e[i].len);
        u16(b, (uint16_t)nl);
        u16(b, (uint16_t)(x64 + 4 + pad));
        tb_put(b, e[i].name, nl);
        if (zip64) {
            u16(b, 1);
            u16(b, 16);
            tb_u64(b, e[i].len);
            tb_u64(b, csz[i]);
        }
        u16(b, 0x4246);
        u16(b, (uint16_t)pad);
        tb_zeros(b, pad);
        tb_put(b, e[i].deflate ? comp[i] : e[i].data, (size_t)csz[i]);
    }
    uint64_t cd = b->len;
    for (size_t i = 0; i < n; i++) {
        size_t nl = strlen(e[i].name);
        u32(b, 0x02014b50);
        u16(b, zip64 ? 45 : 20);
        u16(b, zip64 ? 45 : 20);
        u16(b, 0);
        u16(b, e[i].deflate ? 8 : 0);
        u16(b, 0);
        u16(b, 0x21);
        u32(b, crcs[i]);
        u32(b, zip64 ? 0xffffffffu : (uint32_t)csz[i]);
        u32(b, zip64 ? 0xffffffffu : (uint32_t)e[i].len);
        u16(b, (uint16_t)nl);
        u16(b, zip64 ? 28 : 0);
        u16(b, 0);
        u16(b, 0);
        u16(b, 0);
        u32(b, 0);
        u32(b, zip64 ? 0xffffffffu : (uint32_t)offs[i]);
        tb_put(b, e[i].name, nl);
        if (zip64) {
            u16(b, 1);
            u16(b, 24);
            tb_u64(b, e[i].len);
            tb_u64(b, csz[i]);
            tb_u64(b, offs[i]);
        }
    }
    uint64_t cd_size = b->len - cd;
    if (zip64) {
        uint64_t z64 = b->len;
        u32(b, 0x06064b50);
        tb_u64(b, 44);
        u16(b, 45);
        u16(b, 45);
        u32(b, 0);
        u32(b, 0);
        tb_u64(b, n);
        tb_u64(b, n);
        tb_u64(b, cd_size);
        tb_u64(b, cd);
        u32(b, 0x07064b50);
        u32(b, 0);
        tb_u64(b, z64);
        u32(b, 1);
    }
    u32(b, 0x06054b50);
    u16(b, 0);
    u16(b, 0);
    u16(b, zip64 ? 0xffff : (uint16_t)n);
    u16(b, zip64 ? 0xffff : (uint16_t)n);
    u32(b, zip64 ? 0xffffffffu : (uint32_t)cd_size);
    u32(b, zip64 ? 0xffffffffu : (uint32_t)cd);
    u16(b, 0);
    for (size_t i = 0; i < n; i++) free(comp[i]);
    free(comp);
    free(offs);
    free(crcs);
    free(csz);
}

void ts_save_mem(tb_buf *out, const char *prefix, const ts_tensor *t, size_t n)
{
    tb_buf pk = {0};
    ts_pickle(&pk, t, n);
    ts_entry *e = calloc(n + 4, sizeof *e);
    char **names = calloc(n + 4, sizeof *names);
    size_t k = 0;
    names[k] = malloc(strlen(prefix) + 16);
    sprintf(names[k], "%s/data.pkl", prefix);
    e[k] = (ts_entry){names[k], pk.p, pk.len, 0};
    k++;
    names[k] = malloc(strlen(prefix) + 16);
    sprintf(names[k], "%s/byteorder", prefix);
    e[k] = (ts_entry){names[k], "little", 6, 0};
    k++;
    for (size_t i = 0; i < n; i++) {
        uint64_t nel = 1;
        for (uint32_t d = 0; d < t[i].n_dims; d++) nel *= t[i].shape[d];
        names[k] = malloc(strlen(prefix) + 32);
        sprintf(names[k], "%s/data/%zu", prefix, i);
        e[k] = (ts_entry){names[k], t[i].data, (size_t)(nel * smelt_dtype_size(t[i].dt)), 0};
        k++;
    }
    names[k] = malloc(strlen(prefix) + 16);
    sprintf(names[k], "%s/version", prefix);
    e[k] = (ts_entry){names[k], "3\n", 2, 0};
    k++;
    ts_zip(out, e, k, 0);
    for (size_t i = 0; i < k; i++) free(names[i]);
    free(names);
    free(e);
    tb_free(&pk);
}

int ts_save(const char *path, const char *prefix, const ts_tensor *t, size_t n)
{
    tb_buf b = {0};
    ts_save_mem(&b, prefix, t, n);
    FILE *f = fopen(path, "wb");
    int rc = -1;
    if (f) {
        rc = fwrite(b.p, 1, b.len, f) == b.len ? 0 : -1;
        if (fclose(f)) rc = -1;
    }
    tb_free(&b);
    return rc;
}

static long scan(const tb_buf *z, uint32_t sig, size_t name_at, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i + name_at + nl <= z->len; i++) {
        uint32_t s;
        memcpy(&s, z->p + i, 4);
        if (s != sig) continue;
        uint16_t l;
        memcpy(&l, z->p + i + (sig == 0x04034b50 ? 26 : 28), 2);
        if (l == nl && !memcmp(z->p + i + name_at, name, nl)) return (long)i;
    }
    return -1;
}

long ts_local_offset(const tb_buf *zip, const char *name) { return scan(zip, 0x04034b50, 30, name); }
long ts_central_offset(const tb_buf *zip, const char *name) { return scan(zip, 0x02014b50, 46, name); }

/* ==== PyTorch copies of safetensors directories ==== */

int ts_copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = a ? fopen(to, "wb") : NULL;
    int rc = a && b ? 0 : -1;
    char buf[65536];
    size_t k;
    while (!rc && (k = fread(buf, 1, sizeof buf, a)) > 0)
        if (fwrite(buf, 1, k, b) != k) rc = -1;
    if (a) fclose(a);
    if (b && fclose(b)) rc = -1;
    return rc;
}

int ts_bin_dir(const char *st_dir, const char *out_dir, int sharded)
{
    smelt_stset *s;
    smelt_err e;
    if (smelt_stset_open(st_dir, &s, &e)) return -1;
    size_t nf = sharded ? smelt_stset_n_files(s) : 1;
    uint64_t n = smelt_stset_n_tensors(s);
    ts_tensor *t = calloc((size_t)n + 1, sizeof *t);
    json_t *wm = json_object();
    int rc = 0;
    for (size_t f = 0; f < nf && !rc; f++) {
        size_t k = 0;
        for (uint64_t i = 0; i < n; i++) {
            if (sharded && smelt_stset_file_of(s, i) != f) continue;
            const smelt_st_tensor *x = smelt_stset_tensor_at(s, i);
            t[k].name = x->name;
            t[k].dt = x->dtype;
            t[k].n_dims = x->n_dims;
            for (uint32_t d = 0; d < x->n_dims; d++) t[k].shape[d] = x->shape[d];
            t[k].data = x->data;
            k++;
        }
        char name[64], path[4096];
        if (sharded) snprintf(name, sizeof name, "pytorch_model-%05zu-of-%05zu.bin", f + 1, nf);
        else snprintf(name, sizeof name, "pytorch_model.bin");
        snprintf(path, sizeof path, "%s/%s", out_dir, name);
        for (size_t j = 0; j < k; j++) json_object_set_new(wm, t[j].name, json_string(name));
        /* torch names the top-level folder after the file ("pytorch_model-00001-of-00002") */
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(name) - 4), name);
        rc = ts_save(path, prefix, t, k);
    }
    if (!rc && sharded) {
        json_t *root = json_pack("{s:{s:I},s:O}", "metadata", "total_size", (json_int_t)0, "weight_map", wm);
        char path[4096];
        snprintf(path, sizeof path, "%s/pytorch_model.bin.index.json", out_dir);
        rc = json_dump_file(root, path, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(root);
    }
    json_decref(wm);
    free(t);
    smelt_stset_close(s);
    DIR *d = rc ? NULL : opendir(st_dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || (l > 12 && !strcmp(de->d_name + l - 12, ".safetensors")) ||
            !strcmp(de->d_name, "model.safetensors.index.json"))
            continue;
        char a[4096], b[4096];
        snprintf(a, sizeof a, "%s/%s", st_dir, de->d_name);
        snprintf(b, sizeof b, "%s/%s", out_dir, de->d_name);
        if (ts_copy_file(a, b)) rc = -1;
    }
    if (d) closedir(d);
    return rc;
}
