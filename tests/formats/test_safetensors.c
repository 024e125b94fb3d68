/* test_safetensors.c — safetensors reader, sharded sets, HF-compatible writer, and a
 * corpus of malformed headers with their exact messages. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/base/half.h"
#include "formats/safetensors.h"
#include "tests/common/testutil.h"

/* Build "len + header + data" in memory; data is n_data bytes of a pattern. */
static uint8_t *make_st(const char *header, size_t n_data, size_t *len)
{
    size_t hl = strlen(header);
    *len = 8 + hl + n_data;
    uint8_t *b = malloc(*len);
    uint64_t h = hl;
    memcpy(b, &h, 8);
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < n_data; i++) b[8 + hl + i] = (uint8_t)i;
    return b;
}

static void expect_err(const char *header, size_t n_data, int code, const char *msg)
{
    size_t len;
    uint8_t *b = make_st(header, n_data, &len);
    smelt_st *st = NULL;
    smelt_err e;
    smelt_err_clear(&e);
    int rc = smelt_st_open_mem(b, len, "m.safetensors", &st, &e);
    char line[1200];
    smelt_err_format(&e, line, sizeof line);
    cr_expect_eq(rc, code, "rc %d for %s (%s)", rc, header, line);
    cr_expect_null(st);
    cr_expect_str_eq(line, msg);
    free(b);
}

Test(safetensors, reads_a_small_file)
{
    size_t len;
    uint8_t *b = make_st("{\"__metadata__\":{\"format\":\"pt\"},\"b\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[8,24]},"
                         "\"a\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]}}",
                         24, &len);
    smelt_st *st;
    smelt_err e;
    cr_assert_eq(smelt_st_open_mem(b, len, "m", &st, &e), 0, "%s", e.msg);
    cr_expect_eq(smelt_st_n_tensors(st), 2);
    const smelt_st_tensor *t0 = smelt_st_tensor_at(st, 0), *tb = smelt_st_find(st, "b");
    cr_expect_str_eq(t0->name, "a"); /* data order */
    cr_expect_eq(t0->dtype, SMELT_DT_BF16);
    cr_assert(tb);
    cr_expect_eq(tb->n_dims, 2);
    cr_expect_eq(tb->nelements, 4);
    cr_expect_eq(tb->data, b + 8 + smelt_st_header_len(st) + 8);
    cr_expect_str_eq(smelt_st_metadata_get(st, "format"), "pt");
    smelt_st_close(st);
    free(b);
}

Test(safetensors, empty_file_is_valid)
{
    size_t len;
    uint8_t *b = make_st("{}      ", 0, &len);
    smelt_st *st;
    smelt_err e;
    cr_assert_eq(smelt_st_open_mem(b, len, "m", &st, &e), 0, "%s", e.msg);
    cr_expect_eq(smelt_st_n_tensors(st), 0);
    smelt_st_close(st);
    free(b);
}

Test(safetensors, malformed_corpus)
{
    size_t len;
    /* too short for the length */
    {
        uint8_t b[4] = {1, 2, 3, 4};
        smelt_st *st;
        smelt_err e;
        char line[512];
        cr_expect_eq(smelt_st_open_mem(b, 4, "m.safetensors", &st, &e), SMELT_EFORMAT);
        smelt_err_format(&e, line, sizeof line);
        cr_expect_str_eq(line, "m.safetensors: @ byte 0 (0x0): file is 4 bytes, too short for the 8-byte header length");
    }
    /* header length beyond the file and beyond 100 MB */
    {
        uint8_t b[16] = {0};
        uint64_t h = 1000;
        memcpy(b, &h, 8);
        smelt_st *st;
        smelt_err e;
        char line[512];
        cr_expect_eq(smelt_st_open_mem(b, 16, "m.safetensors", &st, &e), SMELT_EFORMAT);
        smelt_err_format(&e, line, sizeof line);
        cr_expect_str_eq(line, "m.safetensors: @ byte 0 (0x0): header length 1000 runs past the end of the file (16 bytes)");
        h = 200000000;
        memcpy(b, &h, 8);
        cr_expect_eq(smelt_st_open_mem(b, 16, "m.safetensors", &st, &e), SMELT_EFORMAT);
        smelt_err_format(&e, line, sizeof line);
        cr_expect_str_eq(line, "m.safetensors: @ byte 0 (0x0): header length 200000000 exceeds the 100 MB limit");
    }
    (void)len;
    expect_err("[1,2]   ", 0, SMELT_EFORMAT, "m.safetensors: @ byte 8 (0x8): header does not start with '{'");
    expect_err("{\"a\":}  ", 0, SMELT_EFORMAT,
               "m.safetensors: @ byte 14 (0xe): header JSON: unexpected token near '}'");
    expect_err("{\"a\":1}", 0, SMELT_EFORMAT, "m.safetensors: 'a' @ byte 9 (0x9): header entry is not an object");
    expect_err("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, SMELT_EFORMAT,
               "m.safetensors: 'a' @ byte 9 (0x9): missing or non-string \"dtype\"");
    expect_err("{\"a\":{\"dtype\":\"U16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2, SMELT_EUNSUPPORTED,
               "m.safetensors: 'a' @ byte 9 (0x9): unsupported dtype \"U16\" (supported: F64 F32 F16 BF16 I64 I32 I16 I8 "
               "U8 BOOL F8_E4M3 F8_E5M2)");
    expect_err("{\"a\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1, SMELT_EUNSUPPORTED,
               "m.safetensors: 'a' @ byte 9 (0x9): unsupported dtype \"F4\" (supported: F64 F32 F16 BF16 I64 I32 I16 I8 "
               "U8 BOOL F8_E4M3 F8_E5M2)");
    expect_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, SMELT_EFORMAT,
               "m.safetensors: 'a' @ byte 9 (0x9): shape[0] is not a non-negative integer");
    /* a dimension of 0: no elements, even with a consistent (empty) byte range */
    expect_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,0],\"data_offsets\":[0,0]}}", 0, SMELT_EFORMAT,
               "m.safetensors: 'a' @ byte 9 (0x9): shape[1] is 0: a tensor without elements");
    expect_err("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"BF16\",\"shape\":[0],"
               "\"data_offsets\":[4,4]}}",
               4, SMELT_EFORMAT, "m.safetensors: 'a' @ byte 62 (0x3e): shape[0] is 0: a tensor without elements");
    expect_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, SMELT_EFORMAT,
               "m.safetensors: 'a' @ byte 9 (0x9): data_offsets [4, 0] are not ordered");
    expect_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, SMELT_EFORMAT,
               "m.safetensors: 'a' @ byte 9 (0x9): \"data_offsets\" must be [begin, end]");
    expect_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, SMELT_EFORMAT,
               "m.safetensors: 'a' @ byte 9 (0x9): data_offsets span 8 bytes but shape × F32 needs 12");
    expect_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, SMELT_EFORMAT,
               "m.safetensors: 'a' @ byte 9 (0x9): data_offsets end 8 exceeds the data section (4 bytes, file size 66)");
    expect_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],"
               "\"data_offsets\":[4,8]}}",
               8, SMELT_EFORMAT, "m.safetensors: 'b' @ byte 62 (0x3e): data_offsets [4, 8) overlap 'a' [0, 8)");
    expect_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
               "\"data_offsets\":[0,4]}}",
               4, SMELT_EFORMAT, "m.safetensors: @ byte 65 (0x41): header JSON: duplicate object key near '\"a\"'");
    expect_err("{\"__metadata__\":{\"format\":1}}", 0, SMELT_EFORMAT,
               "m.safetensors: 'format' @ byte 25 (0x19): __metadata__ values must be strings");
    expect_err("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4,
               SMELT_EFORMAT, "m.safetensors: 'a' @ byte 9 (0x9): element count overflows");
}

Test(safetensors, every_truncation_of_a_fixture_header_fails_cleanly)
{
    char p[1024];
    tu_path(p, sizeof p, "samples/tiny-mixtral/model-00002-of-00002.safetensors");
    size_t len;
    uint8_t *b = tu_read(p, &len);
    cr_assert(b);
    uint64_t hl;
    memcpy(&hl, b, 8);
    for (size_t n = 0; n < 8 + hl; n += 7) {
        smelt_st *st = NULL;
        smelt_err e;
        smelt_err_clear(&e);
        int rc = smelt_st_open_mem(b, n, "x", &st, &e);
        cr_expect_eq(rc, SMELT_EFORMAT, "truncated at %zu: rc %d", n, rc);
        cr_expect_null(st);
    }
    /* data truncated: the last tensor now ends past the file */
    smelt_st *st = NULL;
    smelt_err e;
    cr_expect_eq(smelt_st_open_mem(b, len - 1, "x", &st, &e), SMELT_EFORMAT);
    free(b);
}

/* ==== fixtures ==== */

Test(safetensors, sharded_fixture_matches_bytes_on_disk)
{
    char dir[1024];
    tu_path(dir, sizeof dir, "samples/tiny-mixtral");
    smelt_stset *s;
    smelt_err e;
    cr_assert_eq(smelt_stset_open(dir, &s, &e), 0, "%s", e.msg);
    cr_expect_eq(smelt_stset_n_files(s), 2);
    cr_expect_eq(smelt_stset_n_tensors(s), 4 * (2 + 4 + 1 + 4 * 3) + 3);
    /* every tensor's bytes equal the file's bytes at the declared offset */
    for (uint64_t i = 0; i < smelt_stset_n_tensors(s); i++) {
        const smelt_st_tensor *t = smelt_stset_tensor_at(s, i);
        FILE *f = fopen(t->file, "rb");
        cr_assert(f);
        size_t n = (size_t)(t->end - t->begin);
        uint8_t *buf = malloc(n);
        fseek(f, (long)t->file_offset, SEEK_SET);
        cr_assert_eq(fread(buf, 1, n, f), n);
        fclose(f);
        cr_expect(!memcmp(buf, t->data, n), "%s differs", t->name);
        free(buf);
    }
    /* layer 2 straddles the shards (FIXTURES.md) */
    const smelt_st_tensor *a = smelt_stset_find(s, "model.layers.2.block_sparse_moe.experts.0.w3.weight");
    const smelt_st_tensor *b = smelt_stset_find(s, "model.layers.2.block_sparse_moe.experts.0.w1.weight");
    cr_assert(a && b);
    cr_expect_str_neq(a->file, b->file);
    const smelt_st_tensor *emb = smelt_stset_find(s, "model.embed_tokens.weight");
    cr_expect_eq(emb->shape[0], 4096);
    cr_expect_eq(emb->shape[1], 256);
    cr_expect_eq(emb->dtype, SMELT_DT_BF16);
    smelt_stset_close(s);
}

static void copy_file(const char *src, const char *dst)
{
    size_t n;
    uint8_t *b = tu_read(src, &n);
    cr_assert(b, "read %s", src);
    cr_assert_eq(tu_write(dst, b, n), 0);
    free(b);
}

Test(safetensors, sharded_set_errors)
{
    char dir[256], p[512], src[1024];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    tu_path(src, sizeof src, "samples/tiny-mixtral/model.safetensors.index.json");
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    copy_file(src, p);
    tu_path(src, sizeof src, "samples/tiny-mixtral/model-00001-of-00002.safetensors");
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    copy_file(src, p);
    smelt_stset *s = NULL;
    smelt_err e;
    char line[1400], want[1400];
    cr_expect_eq(smelt_stset_open(dir, &s, &e), SMELT_EFORMAT);
    smelt_err_format(&e, line, sizeof line);
    snprintf(want, sizeof want,
             "%s/model.safetensors.index.json: 'model-00002-of-00002.safetensors': shard listed in weight_map is "
             "missing (expected at %s/model-00002-of-00002.safetensors)",
             dir, dir);
    cr_expect_str_eq(line, want);
    cr_expect_null(s);
    /* an index naming a tensor that its shard lacks */
    const char *idx = "{\"metadata\":{},\"weight_map\":{\"ghost.weight\":\"model-00001-of-00002.safetensors\"}}";
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    tu_write(p, idx, strlen(idx));
    cr_expect_eq(smelt_stset_open(dir, &s, &e), SMELT_EFORMAT);
    smelt_err_format(&e, line, sizeof line);
    snprintf(want, sizeof want,
             "%s/model.safetensors.index.json: 'ghost.weight': tensor listed in weight_map is absent from shard "
             "model-00001-of-00002.safetensors",
             dir);
    cr_expect_str_eq(line, want);
    /* path traversal in shard names is refused */
    idx = "{\"weight_map\":{\"x\":\"../evil.safetensors\"}}";
    tu_write(p, idx, strlen(idx));
    cr_expect_eq(smelt_stset_open(dir, &s, &e), SMELT_EFORMAT);
    cr_expect_str_eq(e.msg, "shard name '../evil.safetensors' must be a plain file name");
    tu_rmtree(dir);
}

/* ==== writer ==== */

Test(safetensors, writer_reproduces_hf_shards_byte_for_byte)
{
    char dir[256];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    for (int shard = 1; shard <= 2; shard++) {
        char src[1024], dst[512], name[64];
        snprintf(name, sizeof name, "samples/tiny-mixtral/model-0000%d-of-00002.safetensors", shard);
        tu_path(src, sizeof src, name);
        snprintf(dst, sizeof dst, "%s/out.safetensors", dir);
        smelt_st *st;
        smelt_err e;
        cr_assert_eq(smelt_st_open(src, &st, &e), 0, "%s", e.msg);
        smelt_st_writer *w = smelt_st_writer_new();
        /* declare in a scrambled order: the writer sorts like the safetensors library */
        for (uint64_t k = smelt_st_n_tensors(st); k-- > 0;) {
            const smelt_st_tensor *t = smelt_st_tensor_at(st, k);
            cr_assert_eq(smelt_st_writer_add(w, t->name, t->dtype, t->n_dims, t->shape, &e), 0);
        }
        uint64_t predicted = smelt_st_writer_file_size(w);
        cr_assert_eq(smelt_st_writer_begin(w, dst, &e), 0, "%s", e.msg);
        const char *next;
        while ((next = smelt_st_writer_next(w))) {
            const smelt_st_tensor *t = smelt_st_find(st, next);
            cr_assert_eq(smelt_st_writer_write(w, t->data, t->end - t->begin, &e), 0);
        }
        cr_assert_eq(smelt_st_writer_commit(w, &e), 0, "%s", e.msg);
        smelt_st_writer_free(w);
        smelt_st_close(st);
        cr_expect_eq(tu_cmp_files(src, dst), 0, "shard %d differs", shard);
        size_t n;
        free(tu_read(dst, &n));
        cr_expect_eq(n, predicted);
    }
    tu_rmtree(dir);
}

Test(safetensors, index_writer_matches_transformers)
{
    char src[1024], dir[256], dst[512];
    tu_path(src, sizeof src, "samples/tiny-mixtral");
    smelt_stset *s;
    smelt_err e;
    cr_assert_eq(smelt_stset_open(src, &s, &e), 0);
    size_t n = (size_t)smelt_stset_n_tensors(s);
    const char **names = calloc(n, sizeof *names), **files = calloc(n, sizeof *files);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const smelt_st_tensor *t = smelt_stset_tensor_at(s, i);
        names[i] = t->name;
        files[i] = strrchr(t->file, '/') + 1;
        total += t->end - t->begin;
    }
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(dst, sizeof dst, "%s/model.safetensors.index.json", dir);
    cr_assert_eq(smelt_st_write_index(dst, total, names, files, n, &e), 0);
    tu_path(src, sizeof src, "samples/tiny-mixtral/model.safetensors.index.json");
    cr_expect_eq(tu_cmp_files(src, dst), 0, "index json differs from transformers' output");
    free(names);
    free(files);
    smelt_stset_close(s);
    tu_rmtree(dir);
}

Test(safetensors, shard_planning)
{
    uint64_t sizes[] = {5, 5, 5, 20, 1, 1};
    size_t shard_of[6];
    cr_expect_eq(smelt_st_plan_shards(sizes, 6, 10, shard_of), 4);
    size_t want[] = {0, 0, 1, 2, 3, 3};
    for (int i = 0; i < 6; i++) cr_expect_eq(shard_of[i], want[i], "tensor %d", i);
    char name[64];
    smelt_st_shard_name(name, sizeof name, "model", 0, 3);
    cr_expect_str_eq(name, "model-00001-of-00003.safetensors");
}
