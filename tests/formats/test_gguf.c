/* test_gguf.c — GGUF reader/writer: values, layout, round trips of llama.cpp files,
 * atomic output, interop with libggml's reader, and a corpus of malformed files. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/gguf.h"
#include "tests/common/bytes.h"
#include "tests/common/testutil.h"

/* ==== a small valid file, built by hand ==== */

typedef struct {
    uint32_t version;
    int64_t n_tensors, n_kv;
    uint64_t key0_len;     /* length prefix of the first key */
    uint32_t kv0_type;     /* value type of the first kv */
    int dup_key;           /* second key equals the first */
    int dup_tensor;        /* second tensor named like the first */
    uint32_t t0_ndims;
    int64_t t0_ne0, t0_ne1;
    int32_t t1_type;
    int64_t t1_ne0;
    uint64_t t1_offset;
    int bad_bool;
    int align_kv;          /* 0: none, else value of general.alignment (u32) */
    int align_kv_type;     /* value type for general.alignment */
    int data_bytes;        /* -1: full */
    int t0_last_dim_zero;  /* with t0_ndims > 2: the last dimension is 0 instead of 1 */
} spec;

static spec base_spec(void)
{
    spec s = {3, 2, 2, 20, 8, 0, 0, 2, 4, 2, 8, 32, 32, 0, 0, 4, -1};
    return s;
}

/* Layout of the baseline (offsets used in expected messages):
 *   0 magic, 4 version, 8 n_tensors, 16 n_kv
 *   24 kv0 "general.architecture" = "llama"          (ends 69)
 *   69 kv1 "test.arr" = [u32 1,2,3]                  (ends 113)
 *  113 t0 "a" F32 [4,2] @0                           (ends 154)
 *  154 t1 "b" Q8_0 [32] @32                          (ends 187)
 *  192 data: 32 bytes of a, 34 bytes of b, padding to 288 */
static tb_buf build(const spec *s)
{
    tb_buf b = {0};
    tb_put(&b, "GGUF", 4);
    tb_u32(&b, s->version);
    tb_u64(&b, (uint64_t)s->n_tensors);
    tb_u64(&b, (uint64_t)(s->n_kv + (s->align_kv ? 1 : 0)));
    tb_u64(&b, s->key0_len);
    tb_put(&b, "general.architecture", 20);
    tb_u32(&b, s->kv0_type);
    tb_gstr(&b, "llama");
    tb_gstr(&b, s->dup_key ? "general.architecture" : "test.arr");
    if (s->bad_bool) {
        tb_u32(&b, 7);
        tb_u8(&b, 2);
    } else {
        tb_u32(&b, 9);
        tb_u32(&b, 4);
        tb_u64(&b, 3);
        tb_u32(&b, 1);
        tb_u32(&b, 2);
        tb_u32(&b, 3);
    }
    if (s->align_kv) {
        tb_gstr(&b, "general.alignment");
        tb_u32(&b, (uint32_t)s->align_kv_type);
        tb_u32(&b, (uint32_t)s->align_kv);
    }
    tb_gstr(&b, "a");
    tb_u32(&b, s->t0_ndims);
    tb_u64(&b, (uint64_t)s->t0_ne0);
    if (s->t0_ndims > 1) tb_u64(&b, (uint64_t)s->t0_ne1);
    for (uint32_t d = 2; d < s->t0_ndims; d++) tb_u64(&b, s->t0_last_dim_zero && d == s->t0_ndims - 1 ? 0 : 1);
    tb_u32(&b, 0);
    tb_u64(&b, 0);
    tb_gstr(&b, s->dup_tensor ? "a" : "b");
    tb_u32(&b, 1);
    tb_u64(&b, (uint64_t)s->t1_ne0);
    tb_u32(&b, (uint32_t)s->t1_type);
    tb_u64(&b, s->t1_offset);
    tb_pad(&b, s->align_kv > 0 && s->align_kv_type == 4 ? (size_t)s->align_kv : 32);
    size_t data = s->data_bytes >= 0 ? (size_t)s->data_bytes : 96;
    for (size_t i = 0; i < data; i++) tb_u8(&b, (uint8_t)(i * 7 + 1));
    return b;
}

static int open_buf(const tb_buf *b, smelt_gguf **g, smelt_err *e)
{
    smelt_err_clear(e);
    return smelt_gguf_open_mem(b->p, b->len, "t.gguf", 0, g, e);
}

static void expect_error(const spec *s, int code, const char *msg)
{
    tb_buf b = build(s);
    smelt_gguf *g = NULL;
    smelt_err e;
    int rc = open_buf(&b, &g, &e);
    char line[1200];
    smelt_err_format(&e, line, sizeof line);
    cr_expect_eq(rc, code, "rc %d, expected %d (%s)", rc, code, line);
    cr_expect_null(g);
    cr_expect_str_eq(line, msg);
    tb_free(&b);
}

Test(gguf, reads_baseline)
{
    spec s = base_spec();
    tb_buf b = build(&s);
    smelt_gguf *g;
    smelt_err e;
    cr_assert_eq(open_buf(&b, &g, &e), 0, "%s", e.msg);
    cr_expect_eq(smelt_gguf_version(g), 3);
    cr_expect_eq(smelt_gguf_n_kv(g), 2);
    cr_expect_eq(smelt_gguf_n_tensors(g), 2);
    cr_expect_eq(smelt_gguf_data_offset(g), 192);
    smelt_str arch;
    cr_assert_eq(smelt_gguf_get_str(g, "general.architecture", &arch, &e), 0);
    cr_expect_eq(arch.n, 5);
    cr_expect(!memcmp(arch.p, "llama", 5));
    const smelt_gguf_kv *arr;
    cr_assert_eq(smelt_gguf_get_arr(g, "test.arr", SMELT_GGUF_U32, &arr, &e), 0);
    cr_expect_eq(arr->n, 3);
    cr_expect_eq(smelt_gguf_kv_int(arr, 2), 3);
    const smelt_gguf_tensor *a = smelt_gguf_find_tensor(g, "a"), *t = smelt_gguf_find_tensor(g, "b");
    cr_assert(a && t);
    cr_expect_eq(a->ne[0], 4);
    cr_expect_eq(a->ne[1], 2);
    cr_expect_eq(a->nbytes, 32);
    cr_expect_eq(t->type, SMELT_TYPE_Q8_0);
    cr_expect_eq(t->nbytes, 34);
    cr_expect_eq(a->data, b.p + 192);
    cr_expect_eq(t->data, b.p + 224);
    cr_expect_null(smelt_gguf_find_tensor(g, "c"));
    /* typed getter errors name the key and both types */
    uint32_t u;
    cr_expect_eq(smelt_gguf_get_u32(g, "general.architecture", &u, &e), SMELT_EFORMAT);
    cr_expect_str_eq(e.msg, "expected u32, found string");
    cr_expect_eq(smelt_gguf_get_u32(g, "nope", &u, &e), SMELT_EFORMAT);
    cr_expect_str_eq(e.msg, "required key is missing");
    smelt_gguf_close(g);
    tb_free(&b);
}

Test(gguf, every_truncation_is_an_error)
{
    spec s = base_spec();
    tb_buf b = build(&s);
    /* the last tensor's data ends at 258; the padding after it is optional */
    for (size_t n = 0; n < 258; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, b.p, n);
        smelt_gguf *g = NULL;
        smelt_err e;
        smelt_err_clear(&e);
        int rc = smelt_gguf_open_mem(copy, n, "t.gguf", 0, &g, &e);
        cr_expect_eq(rc, SMELT_EFORMAT, "prefix of %zu bytes: rc %d (%s)", n, rc, e.msg);
        cr_expect_null(g);
        cr_expect_neq(e.offset, SMELT_NO_OFFSET, "prefix %zu: error without offset", n);
        /* metadata-only reading accepts a file that ends before its data section (after the
         * last tensor info at 187), never one that ends inside it */
        rc = smelt_gguf_open_mem(copy, n, "t.gguf", SMELT_GGUF_META_ONLY, &g, &e);
        cr_expect_eq(rc, n >= 187 && n <= 192 ? 0 : SMELT_EFORMAT, "meta-only prefix of %zu bytes: rc %d (%s)", n, rc,
                     e.msg);
        if (n == 200) {
            char line[512];
            smelt_err_format(&e, line, sizeof line);
            cr_expect_str_eq(line, "t.gguf: 'a' @ byte 113 (0x71): data [0, 32) runs past the end of the file (the data "
                                   "section holds 8 bytes from file offset 192): truncated or corrupt");
        }
        if (!rc) cr_expect_null(smelt_gguf_tensor_at(g, 1)->data);
        smelt_gguf_close(g);
        free(copy);
    }
    tb_free(&b);
}

Test(gguf, truncation_messages)
{
    tb_buf b = {0};
    tb_put(&b, "GG", 2);
    smelt_gguf *g;
    smelt_err e;
    char line[512];
    cr_expect_eq(open_buf(&b, &g, &e), SMELT_EFORMAT);
    smelt_err_format(&e, line, sizeof line);
    cr_expect_str_eq(line, "t.gguf: @ byte 0 (0x0): magic needs 4 bytes but only 2 remain in the file");
    tb_free(&b);
    spec s = base_spec();
    s.data_bytes = 40;
    expect_error(&s, SMELT_EFORMAT,
                 "t.gguf: 'b' @ byte 154 (0x9a): data [32, 66) runs past the end of the file (the data section holds "
                 "40 bytes from file offset 192): truncated or corrupt");
}

Test(gguf, malformed_headers)
{
    spec s;
    s = base_spec();
    s.version = 4;
    expect_error(&s, SMELT_EUNSUPPORTED, "t.gguf: @ byte 4 (0x4): unsupported GGUF version 4 (supported: 2, 3)");
    s = base_spec();
    s.version = 1;
    expect_error(&s, SMELT_EUNSUPPORTED,
                 "t.gguf: @ byte 4 (0x4): GGUF version 1 is not supported (only 2 and 3); convert the model again");
    s = base_spec();
    s.n_tensors = 1000000;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: @ byte 8 (0x8): tensor count 1000000 cannot fit in the 264 bytes that follow");
    s = base_spec();
    s.n_tensors = -1;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: @ byte 8 (0x8): tensor count -1 cannot fit in the 264 bytes that follow");
    s = base_spec();
    s.n_kv = 1000;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: @ byte 16 (0x10): kv count 1000 cannot fit in the 264 bytes that follow");
    s = base_spec();
    s.key0_len = 1000000000;
    expect_error(&s, SMELT_EFORMAT,
                 "t.gguf: 'kv #0' @ byte 24 (0x18): key length 1000000000 runs past the end of the file (256 bytes remain)");
    s = base_spec();
    s.kv0_type = 13;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'general.architecture' @ byte 52 (0x34): invalid value type 13 (valid: 0..12)");
    s = base_spec();
    s.dup_key = 1;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'general.architecture' @ byte 69 (0x45): duplicate key (first defined as kv #0)");
    s = base_spec();
    s.bad_bool = 1;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'test.arr' @ byte 89 (0x59): bool value is 2, expected 0 or 1");
}

Test(gguf, magic)
{
    spec s = base_spec();
    tb_buf b = build(&s);
    b.p[3] = 'X';
    smelt_gguf *g;
    smelt_err e;
    char line[512];
    cr_expect_eq(open_buf(&b, &g, &e), SMELT_EFORMAT);
    smelt_err_format(&e, line, sizeof line);
    cr_expect_str_eq(line, "t.gguf: @ byte 0 (0x0): bad magic 47 47 55 58, expected \"GGUF\" (47 47 55 46)");
    tb_free(&b);
}

Test(gguf, malformed_tensor_infos)
{
    spec s;
    s = base_spec();
    s.dup_tensor = 1;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'a' @ byte 154 (0x9a): duplicate tensor name (first defined as tensor #0)");
    s = base_spec();
    s.t0_ndims = 5;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'a' @ byte 122 (0x7a): n_dims is 5, at most 4 allowed");
    s = base_spec();
    s.t0_ne0 = -4;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'a' @ byte 126 (0x7e): dimension 0 is negative (-4)");
    /* a dimension of 0: no elements (quantizing it would divide by zero) */
    s = base_spec();
    s.t0_ne0 = 0;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'a' @ byte 126 (0x7e): dimension 0 is 0: a tensor without elements");
    s = base_spec();
    s.t0_ne1 = 0;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'a' @ byte 134 (0x86): dimension 1 is 0: a tensor without elements");
    s = base_spec();
    s.t0_ndims = 4;
    s.t0_last_dim_zero = 1;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'a' @ byte 150 (0x96): dimension 3 is 0: a tensor without elements");
    s = base_spec();
    s.t1_ne0 = 0; /* a multiple of the q8_0 block size, and of every other */
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'b' @ byte 167 (0xa7): dimension 0 is 0: a tensor without elements");
    s = base_spec();
    s.t0_ne0 = (int64_t)1 << 62;
    s.t0_ne1 = 4;
    expect_error(&s, SMELT_EFORMAT,
                 "t.gguf: 'a' @ byte 134 (0x86): element count overflows at dimension 1 (4)");
    s = base_spec();
    s.t1_type = 99;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'b' @ byte 175 (0xaf): unknown ggml type id 99");
    s = base_spec();
    s.t1_type = 31;
    expect_error(&s, SMELT_EUNSUPPORTED,
                 "t.gguf: 'b' @ byte 175 (0xaf): type id 31 (q4_0_4_4) was removed from GGUF; re-quantize from the "
                 "original model");
    s = base_spec();
    s.t1_ne0 = 30;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'b' @ byte 175 (0xaf): row length 30 is not a multiple of the q8_0 block size 32");
    s = base_spec();
    s.t1_offset = 0;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'b' @ byte 154 (0x9a): data [0, 34) overlaps tensor 'a' [0, 32)");
    s = base_spec();
    s.t1_offset = 33;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'b' @ byte 154 (0x9a): data offset 33 is not a multiple of the alignment 32");
    s = base_spec();
    s.t1_offset = 4096;
    expect_error(&s, SMELT_EFORMAT,
                 "t.gguf: 'b' @ byte 154 (0x9a): data [4096, 4130) runs past the end of the file (the data section "
                 "holds 96 bytes from file offset 192): truncated or corrupt");
}

Test(gguf, alignment_key)
{
    spec s = base_spec();
    s.align_kv = 64;
    s.align_kv_type = 4;
    s.data_bytes = 128;
    s.t1_offset = 64;
    tb_buf b = build(&s);
    smelt_gguf *g;
    smelt_err e;
    cr_assert_eq(open_buf(&b, &g, &e), 0, "%s", e.msg);
    cr_expect_eq(smelt_gguf_alignment(g), 64);
    cr_expect_eq(smelt_gguf_data_offset(g) % 64, 0);
    smelt_gguf_close(g);
    tb_free(&b);
    /* 32 is a valid offset for alignment 32 but not 64 */
    s.t1_offset = 32;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'b' @ byte 187 (0xbb): data offset 32 is not a multiple of the alignment 64");
    s = base_spec();
    s.align_kv = 48;
    s.align_kv_type = 4;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'general.alignment' @ byte 142 (0x8e): alignment 48 is not a power of 2");
    s = base_spec();
    s.align_kv = 32;
    s.align_kv_type = 5;
    expect_error(&s, SMELT_EFORMAT, "t.gguf: 'general.alignment' @ byte 113 (0x71): must be u32, found i32");
}

/* ==== writer ==== */

static void write_sample(const char *path, int abort_midway)
{
    smelt_err e;
    smelt_err_clear(&e);
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    cr_assert(w);
    cr_assert_eq(smelt_gguf_writer_set_str(w, "general.architecture", "llama", &e), 0);
    smelt_gguf_writer_set_u8(w, "t.u8", 200, &e);
    smelt_gguf_writer_set_i8(w, "t.i8", -5, &e);
    smelt_gguf_writer_set_u16(w, "t.u16", 60000, &e);
    smelt_gguf_writer_set_i16(w, "t.i16", -30000, &e);
    smelt_gguf_writer_set_u32(w, "t.u32", 4000000000u, &e);
    smelt_gguf_writer_set_i32(w, "t.i32", -2000000000, &e);
    smelt_gguf_writer_set_u64(w, "t.u64", 18000000000000000000ull, &e);
    smelt_gguf_writer_set_i64(w, "t.i64", -9000000000000000000ll, &e);
    smelt_gguf_writer_set_f32(w, "t.f32", 0.25f, &e);
    smelt_gguf_writer_set_f64(w, "t.f64", -1e300, &e);
    smelt_gguf_writer_set_bool(w, "t.bool", true, &e);
    const char *strs[] = {"a", "", "中文"};
    smelt_gguf_writer_set_arr_str(w, "t.strs", strs, NULL, 3, &e);
    float fs[] = {1.5f, -2.0f};
    smelt_gguf_writer_set_arr(w, "t.f32s", SMELT_GGUF_F32, fs, 2, &e);
    smelt_gguf_writer_set_u32(w, "t.u32", 7, &e); /* replace in place */
    uint64_t ne0[2] = {64, 3}, ne1[1] = {5};
    cr_assert_eq(smelt_gguf_writer_add_tensor(w, "w0", 2, ne0, SMELT_TYPE_F16, &e), 0);
    cr_assert_eq(smelt_gguf_writer_add_tensor(w, "w1", 1, ne1, SMELT_TYPE_F32, &e), 0);
    uint64_t size = smelt_gguf_writer_file_size(w);
    cr_assert_eq(smelt_gguf_writer_begin(w, path, &e), 0, "%s", e.msg);
    uint16_t h[192];
    for (int i = 0; i < 192; i++) h[i] = (uint16_t)(0x3c00 + i);
    cr_assert_eq(smelt_gguf_writer_write(w, h, 100, &e), 0);
    if (abort_midway) {
        smelt_gguf_writer_free(w);
        return;
    }
    cr_assert_eq(smelt_gguf_writer_write(w, (uint8_t *)h + 100, 284, &e), 0);
    float f[5] = {1, 2, 3, 4, 5};
    /* committing before the last tensor is complete is refused */
    cr_expect_eq(smelt_gguf_writer_commit(w, &e), SMELT_EINTERNAL);
    cr_assert_eq(smelt_gguf_writer_write(w, f, sizeof f, &e), 0);
    cr_assert_eq(smelt_gguf_writer_commit(w, &e), 0, "%s", e.msg);
    smelt_gguf_writer_free(w);
    size_t len;
    uint8_t *data = tu_read(path, &len);
    cr_expect_eq(len, size);
    free(data);
}

Test(gguf, writer_values_round_trip)
{
    char dir[256], path[512];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    write_sample(path, 0);
    smelt_gguf *g;
    smelt_err e;
    cr_assert_eq(smelt_gguf_open(path, 0, &g, &e), 0, "%s", e.msg);
    uint32_t u32;
    uint64_t u64;
    int64_t i64;
    float f;
    bool bv;
    cr_expect_eq(smelt_gguf_get_u32(g, "t.u32", &u32, &e), 0);
    cr_expect_eq(u32, 7);
    cr_expect_eq(smelt_gguf_get_u32(g, "t.u16", &u32, &e), 0);
    cr_expect_eq(u32, 60000);
    cr_expect_eq(smelt_gguf_get_u64(g, "t.u64", &u64, &e), 0);
    cr_expect_eq(u64, 18000000000000000000ull);
    cr_expect_eq(smelt_gguf_get_i64(g, "t.i64", &i64, &e), 0);
    cr_expect_eq(i64, -9000000000000000000ll);
    cr_expect_eq(smelt_gguf_get_i64(g, "t.i8", &i64, &e), 0);
    cr_expect_eq(i64, -5);
    cr_expect_eq(smelt_gguf_get_u32(g, "t.i16", &u32, &e), SMELT_EFORMAT); /* negative */
    cr_expect_eq(smelt_gguf_get_f32(g, "t.f32", &f, &e), 0);
    cr_expect_eq(f, 0.25f);
    cr_expect_eq(smelt_gguf_get_bool(g, "t.bool", &bv, &e), 0);
    cr_expect(bv);
    const smelt_gguf_kv *kv = smelt_gguf_get_kv(g, "t.f64");
    cr_expect_eq(smelt_gguf_kv_num(kv, 0), -1e300);
    cr_expect_eq(smelt_gguf_find_kv(g, "t.u32"), 5); /* replaced in place, not appended */
    const smelt_gguf_kv *strs;
    cr_assert_eq(smelt_gguf_get_arr(g, "t.strs", SMELT_GGUF_STRING, &strs, &e), 0);
    cr_expect_eq(strs->n, 3);
    smelt_str s2 = smelt_gguf_arr_str(strs, 2);
    cr_expect_eq(s2.n, 6);
    cr_expect(!memcmp(s2.p, "中文", 6));
    cr_expect_eq(smelt_gguf_arr_str(strs, 1).n, 0);
    const smelt_gguf_tensor *w0 = smelt_gguf_find_tensor(g, "w0"), *w1 = smelt_gguf_find_tensor(g, "w1");
    cr_assert(w0 && w1);
    cr_expect_eq(w0->nbytes, 384);
    cr_expect_eq(w1->offset, 384);
    uint16_t h;
    memcpy(&h, w0->data + 2 * 191, 2);
    cr_expect_eq(h, 0x3c00 + 191);
    float v;
    memcpy(&v, w1->data + 16, 4);
    cr_expect_eq(v, 5.0f);
    smelt_gguf_close(g);
    tu_rmtree(dir);
}

Test(gguf, aborted_writer_leaves_nothing)
{
    char dir[256], path[512];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    write_sample(path, 1);
    cr_expect_neq(access(path, F_OK), 0, "output exists after abort");
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.' || (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))) n++;
    closedir(d);
    cr_expect_eq(n, 0, "temporary files left behind");
    tu_rmtree(dir);
}

/* Read a GGUF and write it back with the same KVs, tensors and data. */
static void rewrite(const char *src, const char *dst)
{
    smelt_gguf *g;
    smelt_err e;
    cr_assert_eq(smelt_gguf_open(src, 0, &g, &e), 0, "%s: %s", src, e.msg);
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    smelt_gguf_writer_set_version(w, smelt_gguf_version(g));
    smelt_gguf_writer_set_pad_empty(w, smelt_gguf_file_size(g) > smelt_gguf_header_end(g));
    cr_assert_eq(smelt_gguf_writer_copy_all_kv(w, g, &e), 0);
    for (uint64_t i = 0; i < smelt_gguf_n_tensors(g); i++) {
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
        cr_assert_eq(smelt_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, t->type, &e), 0, "%s", e.msg);
    }
    cr_assert_eq(smelt_gguf_writer_begin(w, dst, &e), 0, "%s", e.msg);
    for (uint64_t i = 0; i < smelt_gguf_n_tensors(g); i++) {
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
        cr_assert_eq(smelt_gguf_writer_write(w, t->data, t->nbytes, &e), 0, "%s", e.msg);
    }
    cr_assert_eq(smelt_gguf_writer_commit(w, &e), 0, "%s", e.msg);
    smelt_gguf_writer_free(w);
    smelt_gguf_close(g);
}

Test(gguf, round_trip_third_party_file)
{
    char src[1024], dir[256], dst[512];
    tu_path(src, sizeof src, "tests/fixtures/external/gguf-llama2-tiny-random-ollama/llama-2-tiny-random.gguf");
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(dst, sizeof dst, "%s/rt.gguf", dir);
    rewrite(src, dst);
    cr_expect_eq(tu_cmp_files(src, dst), 0, "rewritten file differs from the original");
    tu_rmtree(dir);
}

/* smelt_gguf_writer_header: the bytes of the file up to its data section, which the reader
 * opens as a metadata-only GGUF with the same KVs and tensor infos. */
Test(gguf, writer_header_is_the_file_up_to_its_data)
{
    char src[1024];
    tu_path(src, sizeof src, "tests/fixtures/external/gguf-llama2-tiny-random-ollama/llama-2-tiny-random.gguf");
    smelt_gguf *g, *m;
    smelt_err e;
    cr_assert_eq(smelt_gguf_open(src, 0, &g, &e), 0, "%s", e.msg);
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    smelt_gguf_writer_set_version(w, smelt_gguf_version(g));
    cr_assert_eq(smelt_gguf_writer_copy_all_kv(w, g, &e), 0);
    for (uint64_t i = 0; i < smelt_gguf_n_tensors(g); i++) {
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
        cr_assert_eq(smelt_gguf_writer_add_tensor(w, t->name, t->n_dims, t->ne, t->type, &e), 0, "%s", e.msg);
    }
    uint8_t *head;
    size_t n;
    cr_assert_eq(smelt_gguf_writer_header(w, &head, &n, &e), 0, "%s", e.msg);
    cr_expect_eq(n, smelt_gguf_data_offset(g));
    cr_expect(!memcmp(head, smelt_gguf_base(g), n), "header bytes differ from the file's");
    cr_assert_eq(smelt_gguf_open_mem(head, n, "header", 0, &m, &e), SMELT_EFORMAT, "tensor data is missing");
    cr_assert_eq(smelt_gguf_open_mem(head, n, "header", SMELT_GGUF_META_ONLY, &m, &e), 0, "%s", e.msg);
    cr_expect_eq(smelt_gguf_n_kv(m), smelt_gguf_n_kv(g));
    cr_assert_eq(smelt_gguf_n_tensors(m), smelt_gguf_n_tensors(g));
    for (uint64_t i = 0; i < smelt_gguf_n_tensors(g); i++) {
        const smelt_gguf_tensor *a = smelt_gguf_tensor_at(g, i), *b = smelt_gguf_tensor_at(m, i);
        cr_expect_str_eq(a->name, b->name);
        cr_expect_eq(a->offset, b->offset);
        cr_expect_eq(a->nbytes, b->nbytes);
        cr_expect_null(b->data);
    }
    smelt_gguf_close(m);
    free(head);
    smelt_gguf_writer_free(w);
    smelt_gguf_close(g);
}

Test(gguf, round_trip_llama_cpp_vocab_files)
{
    const char *srcdir = tu_oracle_src();
    if (!srcdir) cr_skip_test("llama.cpp source not installed (make oracle)");
    char models[1024];
    snprintf(models, sizeof models, "%s/models", srcdir);
    DIR *d = opendir(models);
    cr_assert(d);
    char dir[256];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".gguf")) continue;
        char src[2048], dst[512];
        snprintf(src, sizeof src, "%s/%s", models, de->d_name);
        snprintf(dst, sizeof dst, "%s/rt.gguf", dir);
        rewrite(src, dst);
        cr_expect_eq(tu_cmp_files(src, dst), 0, "%s: rewritten file differs", de->d_name);
        n++;
    }
    closedir(d);
    cr_expect_geq(n, 10, "only %d vocab files found", n);
    tu_rmtree(dir);
}

/* ==== interop: libggml's own reader accepts what smelt writes ==== */

typedef struct {
    bool no_alloc;
    void **ctx;
} ggml_gguf_params;

Test(gguf, libggml_reads_smelt_output)
{
    void *h = tu_oracle_ggml();
    if (!h) cr_skip_test("llama.cpp libggml-base not installed (make oracle)");
    void *(*init)(const char *, ggml_gguf_params) = (void *(*)(const char *, ggml_gguf_params))dlsym(h, "gguf_init_from_file");
    void (*gfree)(void *) = (void (*)(void *))dlsym(h, "gguf_free");
    int64_t (*n_kv)(void *) = (int64_t(*)(void *))dlsym(h, "gguf_get_n_kv");
    int64_t (*n_t)(void *) = (int64_t(*)(void *))dlsym(h, "gguf_get_n_tensors");
    int64_t (*find_key)(void *, const char *) = (int64_t(*)(void *, const char *))dlsym(h, "gguf_find_key");
    uint32_t (*get_u32)(void *, int64_t) = (uint32_t(*)(void *, int64_t))dlsym(h, "gguf_get_val_u32");
    const char *(*arr_str)(void *, int64_t, size_t) = (const char *(*)(void *, int64_t, size_t))dlsym(h, "gguf_get_arr_str");
    size_t (*t_off)(void *, int64_t) = (size_t(*)(void *, int64_t))dlsym(h, "gguf_get_tensor_offset");
    cr_assert(init && gfree && n_kv && n_t && find_key && get_u32 && arr_str && t_off);
    char dir[256], path[512];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    write_sample(path, 0);
    ggml_gguf_params p = {true, NULL};
    void *ctx = init(path, p);
    cr_assert(ctx, "libggml refused smelt's GGUF");
    cr_expect_eq(n_kv(ctx), 14);
    cr_expect_eq(n_t(ctx), 2);
    cr_expect_eq(get_u32(ctx, find_key(ctx, "t.u32")), 7);
    cr_expect_str_eq(arr_str(ctx, find_key(ctx, "t.strs"), 2), "中文");
    cr_expect_eq(t_off(ctx, 1), 384);
    gfree(ctx);
    tu_rmtree(dir);
}

/* ==== split models (llama.cpp's gguf-split layout) ==== */

/* Shard `no` of `count` at PREFIX-0000i-of-0000N.gguf: split keys (split.count = cnt,
 * split.tensors.count = tot, which may lie), the metadata in shard 0, one f32 tensor of 8
 * values per name, each value = the name's first letter. */
static void write_shard(const char *prefix, int no, int count, int cnt, int tot, const char *const *names, int n)
{
    char p[4400];
    smelt_err e;
    smelt_gguf_split_path(p, sizeof p, prefix, no, count);
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    if (no == 0) cr_assert_eq(smelt_gguf_writer_set_str(w, "general.architecture", "test", &e), 0);
    cr_assert_eq(smelt_gguf_writer_set_u16(w, SMELT_GGUF_SPLIT_NO, (uint16_t)no, &e), 0);
    cr_assert_eq(smelt_gguf_writer_set_u16(w, SMELT_GGUF_SPLIT_COUNT, (uint16_t)cnt, &e), 0);
    cr_assert_eq(smelt_gguf_writer_set_i32(w, SMELT_GGUF_SPLIT_TENSORS, tot, &e), 0);
    uint64_t ne[1] = {8};
    for (int i = 0; i < n; i++) cr_assert_eq(smelt_gguf_writer_add_tensor(w, names[i], 1, ne, SMELT_TYPE_F32, &e), 0);
    cr_assert_eq(smelt_gguf_writer_begin(w, p, &e), 0, "%s", e.msg);
    for (int i = 0; i < n; i++) {
        float v[8];
        for (int k = 0; k < 8; k++) v[k] = names[i][0];
        cr_assert_eq(smelt_gguf_writer_write(w, v, sizeof v, &e), 0);
    }
    cr_assert_eq(smelt_gguf_writer_commit(w, &e), 0, "%s", e.msg);
    smelt_gguf_writer_free(w);
}

/* Open PREFIX-00001-of-00003.gguf expecting error `code` with the line
 * "<dir>/<line_after_dir>" (the directory is put in front of every %s-free path). */
static void expect_split_error(const char *first, int code, const char *want)
{
    smelt_gguf *g = NULL;
    smelt_err e;
    smelt_err_clear(&e);
    int rc = smelt_gguf_open(first, 0, &g, &e);
    char line[2000];
    smelt_err_format(&e, line, sizeof line);
    cr_expect_eq(rc, code, "rc %d: %s", rc, line);
    cr_expect_null(g);
    cr_expect_str_eq(line, want);
}

Test(gguf, split_models)
{
    char dir[256], prefix[512], first[600], p1[600], p2[600], want[3000];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(prefix, sizeof prefix, "%s/m", dir);
    smelt_gguf_split_path(first, sizeof first, prefix, 0, 3);
    smelt_gguf_split_path(p1, sizeof p1, prefix, 1, 3);
    smelt_gguf_split_path(p2, sizeof p2, prefix, 2, 3);
    static const char *const a[] = {"a", "b"}, *const c[] = {"c"}, *const d[] = {"d", "e"};
    write_shard(prefix, 0, 3, 3, 5, a, 2);
    write_shard(prefix, 1, 3, 3, 5, c, 1);
    write_shard(prefix, 2, 3, 3, 5, d, 2);
    /* the first shard opens the whole model: its KVs, every tensor, in shard order */
    smelt_gguf *g;
    smelt_err e;
    cr_assert_eq(smelt_gguf_open(first, 0, &g, &e), 0, "%s", e.msg);
    cr_expect_eq(smelt_gguf_n_shards(g), 3);
    cr_assert_eq(smelt_gguf_n_tensors(g), 5);
    static const int shard_of[] = {0, 0, 1, 2, 2};
    for (uint64_t i = 0; i < 5; i++) {
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
        cr_expect_eq(t->name[0], 'a' + (int)i);
        cr_expect_eq(t->shard, shard_of[i]);
        cr_expect_eq(smelt_gguf_find_tensor(g, t->name), t);
        float v;
        memcpy(&v, t->data + 28, 4);
        cr_expect_eq(v, (float)('a' + (int)i), "tensor %s reads its own shard's bytes", t->name);
        smelt_gguf_release_tensor(g, t);
    }
    cr_expect_str_eq(smelt_gguf_path(smelt_gguf_shard(g, 2)), p2);
    cr_expect_eq(smelt_gguf_shard(g, 0), g);
    cr_expect_null(smelt_gguf_shard(g, 3));
    size_t l0, l1, l2;
    free(tu_read(first, &l0));
    free(tu_read(p1, &l1));
    free(tu_read(p2, &l2));
    cr_expect_eq(smelt_gguf_total_size(g), l0 + l1 + l2);
    smelt_gguf_close(g);
    /* one file alone on request; a later shard only that way */
    cr_assert_eq(smelt_gguf_open(first, SMELT_GGUF_ONE_FILE, &g, &e), 0);
    cr_expect_eq(smelt_gguf_n_tensors(g), 2);
    cr_expect_eq(smelt_gguf_n_shards(g), 1);
    smelt_gguf_close(g);
    cr_assert_eq(smelt_gguf_open(p1, SMELT_GGUF_ONE_FILE, &g, &e), 0);
    smelt_gguf_close(g);
    snprintf(want, sizeof want, "%s: 'split.no': this file is shard 2 of 3; give the first shard (split.no 0), which finds the others", p1);
    expect_split_error(p1, SMELT_EUSAGE, want);
    /* a shard of another split: its count, its total, its number */
    write_shard(prefix, 1, 3, 4, 5, c, 1);
    snprintf(want, sizeof want, "%s: 'split.count': expected 3 as in %s, found 4: a shard of another split", p1, first);
    expect_split_error(first, SMELT_EFORMAT, want);
    write_shard(prefix, 1, 3, 3, 7, c, 1);
    snprintf(want, sizeof want, "%s: 'split.tensors.count': expected 5 as in %s, found 7: a shard of another split", p1,
             first);
    expect_split_error(first, SMELT_EFORMAT, want);
    write_shard(prefix, 2, 3, 3, 5, c, 1);
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s/x.gguf", dir);
    cr_assert_eq(rename(p2, tmp), 0);
    write_shard(prefix, 1, 3, 3, 5, d, 2); /* shard 2 renamed to be shard 3: wrong number */
    cr_assert_eq(rename(p1, p2), 0);
    cr_assert_eq(rename(tmp, p1), 0);
    snprintf(want, sizeof want, "%s: 'split.no': expected 1 (shard 2 of 3), found 2", p1);
    expect_split_error(first, SMELT_EFORMAT, want);
    /* a tensor in two shards; a total that does not add up */
    static const char *const ac[] = {"a", "c"};
    write_shard(prefix, 1, 3, 3, 5, ac, 2);
    write_shard(prefix, 2, 3, 3, 5, d, 2);
    snprintf(want, sizeof want, "%s: 'a' @ byte 106 (0x6a): tensor also present in %s", p1, first);
    expect_split_error(first, SMELT_EFORMAT, want);
    write_shard(prefix, 1, 3, 3, 5, c, 1);
    write_shard(prefix, 2, 3, 3, 5, d, 1);
    snprintf(want, sizeof want, "%s: 'split.tensors.count': says 5 tensors, the 3 shards hold 4", first);
    expect_split_error(first, SMELT_EFORMAT, want);
    /* a missing shard, named */
    unlink(p2);
    snprintf(want, sizeof want, "%s: shard 3 of 3 is missing (%s says the model has 3 files)", p2, first);
    expect_split_error(first, SMELT_EIO, want);
    /* a first shard under another name */
    write_shard(prefix, 2, 3, 3, 5, d, 2);
    snprintf(tmp, sizeof tmp, "%s/renamed.gguf", dir);
    cr_assert_eq(rename(first, tmp), 0);
    snprintf(want, sizeof want, "%s: the first of 3 shards must be named PREFIX-00001-of-00003.gguf (llama.cpp split naming)",
             tmp);
    expect_split_error(tmp, SMELT_EUSAGE, want);
    tu_rmtree(dir);
}

/* The writer's split: which tensors go where (a tensor over the limit alone), the split keys
 * in each file, nothing at any output path before commit, nothing left after an abort. */
Test(gguf, writer_split)
{
    char dir[256], out[512], p[3][600];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(out, sizeof out, "%s/s.gguf", dir);
    for (int abort_it = 1; abort_it >= 0; abort_it--) {
        smelt_err e;
        smelt_gguf_writer *w = smelt_gguf_writer_new();
        cr_assert_eq(smelt_gguf_writer_set_str(w, "general.architecture", "test", &e), 0);
        cr_assert_eq(smelt_gguf_writer_set_u16(w, SMELT_GGUF_SPLIT_COUNT, 9, &e), 0); /* stale: replaced */
        smelt_gguf_writer_set_split(w, 64, 0);
        static const uint64_t n[4] = {8, 32, 8, 8}; /* f32: 32, 128, 32, 32 bytes */
        static const char *const names[4] = {"a", "b", "c", "d"};
        for (int i = 0; i < 4; i++) cr_assert_eq(smelt_gguf_writer_add_tensor(w, names[i], 1, &n[i], SMELT_TYPE_F32, &e), 0);
        cr_assert_eq(smelt_gguf_writer_n_files(w), 3);
        for (int f = 0; f < 3; f++) smelt_gguf_writer_file_path(w, out, (size_t)f, p[f], sizeof p[f]);
        char want[600];
        snprintf(want, sizeof want, "%s/s-00003-of-00003.gguf", dir);
        cr_expect_str_eq(p[2], want);
        uint64_t total = smelt_gguf_writer_file_size(w);
        cr_assert_eq(smelt_gguf_writer_begin(w, out, &e), 0, "%s", e.msg);
        for (int i = 0; i < 4; i++) {
            float v[32];
            for (uint64_t k = 0; k < n[i]; k++) v[k] = (float)(10 * i + (int)k);
            cr_assert_eq(smelt_gguf_writer_write(w, v, 4 * n[i], &e), 0, "%s", e.msg);
            for (int f = 0; f < 3; f++) cr_expect_neq(access(p[f], F_OK), 0, "%s exists before commit", p[f]);
        }
        if (abort_it) {
            smelt_gguf_writer_free(w);
            DIR *d = opendir(dir);
            struct dirent *de;
            int left = 0;
            while ((de = readdir(d))) left += de->d_name[0] != '.' || strstr(de->d_name, "smelt-tmp") != NULL;
            closedir(d);
            cr_expect_eq(left, 0, "an aborted split left files");
            continue;
        }
        cr_assert_eq(smelt_gguf_writer_commit(w, &e), 0, "%s", e.msg);
        smelt_gguf_writer_free(w);
        uint64_t sum = 0;
        static const int per_file[3] = {1, 1, 2};
        for (int f = 0; f < 3; f++) {
            size_t len;
            free(tu_read(p[f], &len));
            sum += len;
            smelt_gguf *g;
            cr_assert_eq(smelt_gguf_open(p[f], SMELT_GGUF_ONE_FILE, &g, &e), 0, "%s", e.msg);
            cr_expect_eq(smelt_gguf_n_tensors(g), (uint64_t)per_file[f]);
            cr_expect_eq(smelt_gguf_n_kv(g), f == 0 ? 4u : 3u);
            cr_expect_str_eq(smelt_gguf_kv_at(g, smelt_gguf_n_kv(g) - 3)->key, SMELT_GGUF_SPLIT_NO);
            cr_expect_str_eq(smelt_gguf_kv_at(g, smelt_gguf_n_kv(g) - 2)->key, SMELT_GGUF_SPLIT_TENSORS);
            cr_expect_str_eq(smelt_gguf_kv_at(g, smelt_gguf_n_kv(g) - 1)->key, SMELT_GGUF_SPLIT_COUNT);
            uint32_t no, cnt;
            int64_t tot;
            cr_expect(!smelt_gguf_get_u32(g, SMELT_GGUF_SPLIT_NO, &no, &e) && no == (uint32_t)f);
            cr_expect(!smelt_gguf_get_u32(g, SMELT_GGUF_SPLIT_COUNT, &cnt, &e) && cnt == 3);
            cr_expect(!smelt_gguf_get_i64(g, SMELT_GGUF_SPLIT_TENSORS, &tot, &e) && tot == 4);
            smelt_gguf_close(g);
        }
        cr_expect_eq(sum, total);
        smelt_gguf *g;
        cr_assert_eq(smelt_gguf_open(p[0], 0, &g, &e), 0, "%s", e.msg);
        cr_assert_eq(smelt_gguf_n_tensors(g), 4);
        for (int i = 0; i < 4; i++) {
            const smelt_gguf_tensor *t = smelt_gguf_find_tensor(g, names[i]);
            float v;
            memcpy(&v, t->data + 4, 4);
            cr_expect_eq(v, (float)(10 * i + 1));
        }
        smelt_gguf_close(g);
    }
    /* by tensor count: a new file before every 3rd tensor */
    smelt_err e;
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    uint64_t ne = 8;
    smelt_gguf_writer_set_split(w, 0, 3);
    for (int i = 0; i < 7; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "t%d", i);
        cr_assert_eq(smelt_gguf_writer_add_tensor(w, nm, 1, &ne, SMELT_TYPE_F32, &e), 0);
    }
    cr_expect_eq(smelt_gguf_writer_n_files(w), 3);
    smelt_gguf_writer_free(w);
    tu_rmtree(dir);
}
