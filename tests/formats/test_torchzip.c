/* test_torchzip.c — the zip reader under PyTorch checkpoints: stored (zero-copy), deflated
 * and zip64 entries, CRC checks, a real torch.save file, and malformed archives with their
 * exact messages. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/torchzip.h"
#include "tests/common/testutil.h"
#include "tests/common/torchsave.h"

static const char k_a[] = "hello, zip";
static uint8_t k_big[5000];

static void three(tb_buf *z, int deflate, int zip64)
{
    for (size_t i = 0; i < sizeof k_big; i++) k_big[i] = (uint8_t)(i * 7 % 13);
    ts_entry e[3] = {{"archive/a", k_a, sizeof k_a - 1, 0}, {"archive/data/0", k_big, sizeof k_big, deflate},
                     {"archive/empty", "", 0, 0}};
    ts_zip(z, e, 3, zip64);
}

static void check_three(tb_buf *z, int deflate)
{
    smelt_tz *t;
    smelt_err e;
    smelt_err_clear(&e);
    cr_assert_eq(smelt_tz_open_mem(z->p, z->len, "t.bin", &t, &e), 0, "%s", e.msg);
    cr_assert_eq(smelt_tz_n_entries(t), 3);
    cr_expect_str_eq(smelt_tz_entry_at(t, 1)->name, "archive/data/0");
    cr_expect_eq(smelt_tz_entry_at(t, 1)->method, deflate ? SMELT_TZ_DEFLATED : SMELT_TZ_STORED);
    cr_expect_eq(smelt_tz_entry_at(t, 1)->size, sizeof k_big);
    cr_expect_eq(smelt_tz_find(t, "archive/empty"), 2);
    cr_expect_eq(smelt_tz_find(t, "archive/nope"), -1);
    smelt_scratch sc = {0};
    const void *d;
    cr_assert_eq(smelt_tz_read(t, 0, &d, &sc, &e), 0, "%s", e.msg);
    cr_expect_eq(memcmp(d, k_a, sizeof k_a - 1), 0);
    cr_expect(d >= (const void *)z->p && d < (const void *)(z->p + z->len), "stored entries are views into the archive");
    cr_assert_eq(smelt_tz_read(t, 1, &d, &sc, &e), 0, "%s", e.msg);
    cr_expect_eq(memcmp(d, k_big, sizeof k_big), 0);
    if (!deflate) cr_expect_eq((const uint8_t *)d - z->p, (long)smelt_tz_entry_at(t, 1)->data_offset);
    if (!deflate) cr_expect_eq(smelt_tz_entry_at(t, 1)->data_offset % 64, 0, "torch aligns record data to 64 bytes");
    cr_assert_eq(smelt_tz_read(t, 2, &d, &sc, &e), 0, "%s", e.msg);
    uint8_t *buf;
    size_t len;
    cr_assert_eq(smelt_tz_read_alloc(t, 0, 100, &buf, &len, &e), 0);
    cr_expect_eq(len, sizeof k_a - 1);
    cr_expect_str_eq((char *)buf, k_a);
    free(buf);
    cr_expect_eq(smelt_tz_verify_all(t, &e), 0, "%s", e.msg);
    smelt_scratch_free(&sc);
    smelt_tz_close(t);
}

Test(torchzip, stored_entries_are_zero_copy)
{
    tb_buf z = {0};
    three(&z, 0, 0);
    check_three(&z, 0);
    tb_free(&z);
}

Test(torchzip, deflated_entries)
{
    tb_buf z = {0};
    three(&z, 1, 0);
    check_three(&z, 1);
    tb_free(&z);
}

Test(torchzip, zip64_records)
{
    tb_buf z = {0};
    three(&z, 0, 1);
    check_three(&z, 0);
    tb_free(&z);
    three(&z, 1, 1);
    check_three(&z, 1);
    tb_free(&z);
}

Test(torchzip, real_torch_save_file)
{
    char p[4096];
    tu_path(p, sizeof p, "samples/tiny-mixtral-zh-lora-bin/adapter_model.bin");
    smelt_tz *t;
    smelt_err e;
    cr_assert_eq(smelt_tz_open(p, &t, &e), 0, "%s", e.msg);
    cr_expect_gt(smelt_tz_n_entries(t), 130);
    cr_expect_geq(smelt_tz_find(t, "adapter_model/data.pkl"), 0);
    cr_expect_eq(smelt_tz_verify_all(t, &e), 0, "%s", e.msg);
    smelt_tz_close(t);
}

/* ==== malformed ==== */

static void expect_open_err(const tb_buf *z, int code, const char *msg)
{
    smelt_tz *t = NULL;
    smelt_err e;
    smelt_err_clear(&e);
    int rc = smelt_tz_open_mem(z->p, z->len, "t.bin", &t, &e);
    char line[1200];
    smelt_err_format(&e, line, sizeof line);
    cr_expect_eq(rc, code, "rc %d: %s", rc, line);
    cr_expect_null(t);
    cr_expect_str_eq(line, msg);
}

static void expect_read_err(const tb_buf *z, uint64_t i, const char *msg)
{
    smelt_tz *t = NULL;
    smelt_err e;
    smelt_err_clear(&e);
    cr_assert_eq(smelt_tz_open_mem(z->p, z->len, "t.bin", &t, &e), 0, "%s", e.msg);
    smelt_scratch sc = {0};
    const void *d;
    int rc = smelt_tz_read(t, i, &d, &sc, &e);
    char line[1200];
    smelt_err_format(&e, line, sizeof line);
    cr_expect_eq(rc, SMELT_EFORMAT, "rc %d: %s", rc, line);
    cr_expect_str_eq(line, msg);
    smelt_scratch_free(&sc);
    smelt_tz_close(t);
}

Test(torchzip, every_truncation_is_an_error)
{
    tb_buf z = {0};
    three(&z, 1, 0);
    for (size_t n = 0; n < z.len; n++) {
        smelt_tz *t = NULL;
        smelt_err e;
        int rc = smelt_tz_open_mem(z.p, n, "t.bin", &t, &e);
        cr_expect_neq(rc, 0, "a %zu-byte prefix opened", n);
        cr_expect_null(t);
    }
    tb_free(&z);
    three(&z, 1, 1);
    for (size_t n = 0; n < z.len; n++) {
        smelt_tz *t = NULL;
        smelt_err e;
        cr_expect_neq(smelt_tz_open_mem(z.p, n, "t.bin", &t, &e), 0, "zip64: a %zu-byte prefix opened", n);
    }
    tb_free(&z);
}

Test(torchzip, messages)
{
    tb_buf z = {0};
    three(&z, 0, 0);
    long c1 = ts_central_offset(&z, "archive/data/0"), l1 = ts_local_offset(&z, "archive/data/0");
    cr_assert(c1 > 0 && l1 > 0);

    tb_buf t = {0};
    tb_put(&t, z.p, z.len - 22); /* no end record */
    expect_open_err(&t, SMELT_EFORMAT, "t.bin: no end-of-central-directory record: not a zip archive, or truncated");
    tb_free(&t);

    tb_put(&t, "\x80\x02}q\x00.", 6);
    expect_open_err(&t, SMELT_EFORMAT, "t.bin: @ byte 0 (0x0): 6 bytes is too small for a zip archive (a PyTorch .bin is a zip file)");
    tb_zeros(&t, 40);
    expect_open_err(&t, SMELT_EUNSUPPORTED,
                    "t.bin: legacy PyTorch serialization (a bare pickle, torch < 1.6 or _use_new_zipfile_serialization=False) "
                    "is not supported; re-save it with torch.save from torch >= 1.6 or as safetensors");
    tb_free(&t);

    /* data cut short but directory kept: the entry's data runs into the directory */
    tb_put(&t, z.p, z.len);
    uint32_t bad = 0x12345678;
    memcpy(t.p + l1, &bad, 4);
    char msg[512];
    snprintf(msg, sizeof msg,
             "t.bin: 'archive/data/0' @ byte %ld (0x%lx): expected a local file header (signature 0x04034b50), found 0x12345678", l1,
             l1);
    expect_open_err(&t, SMELT_EFORMAT, msg);
    memcpy(t.p, z.p, z.len);

    uint16_t m12 = 12;
    memcpy(t.p + c1 + 10, &m12, 2);
    snprintf(msg, sizeof msg,
             "t.bin: 'archive/data/0' @ byte %ld (0x%lx): compression method 12 is not supported (only stored and deflate)", c1, c1);
    expect_open_err(&t, SMELT_EUNSUPPORTED, msg);
    memcpy(t.p, z.p, z.len);

    uint16_t enc = 1;
    memcpy(t.p + c1 + 8, &enc, 2);
    snprintf(msg, sizeof msg, "t.bin: 'archive/data/0' @ byte %ld (0x%lx): entry is encrypted", c1, c1);
    expect_open_err(&t, SMELT_EUNSUPPORTED, msg);
    memcpy(t.p, z.p, z.len);

    /* the directory claims more data than there is */
    uint32_t huge = 0x7fffffff;
    memcpy(t.p + c1 + 20, &huge, 4);
    memcpy(t.p + c1 + 24, &huge, 4);
    snprintf(msg, sizeof msg,
             "t.bin: 'archive/data/0' @ byte %ld (0x%lx): data [128, +2147483647) runs past the end of the file (%zu bytes): "
             "truncated archive",
             l1, l1, z.len);
    expect_open_err(&t, SMELT_EFORMAT, msg);
    memcpy(t.p, z.p, z.len);

    /* the same name twice */
    tb_free(&t);
    ts_entry dup[2] = {{"archive/x", "1", 1, 0}, {"archive/x", "2", 1, 0}};
    ts_zip(&t, dup, 2, 0);
    long c2 = ts_central_offset(&t, "archive/x");
    long cd2 = c2 + 46 + 9;
    snprintf(msg, sizeof msg, "t.bin: 'archive/x' @ byte %ld (0x%lx): entry name appears twice in the archive", cd2, cd2);
    expect_open_err(&t, SMELT_EFORMAT, msg);
    tb_free(&t);

    /* entry count that cannot fit */
    tb_put(&t, z.p, z.len);
    uint16_t many = 60000;
    memcpy(t.p + t.len - 22 + 8, &many, 2);
    memcpy(t.p + t.len - 22 + 10, &many, 2);
    snprintf(msg, sizeof msg, "t.bin: @ byte %zu (0x%zx): 60000 entries cannot fit in a %u-byte central directory", z.len - 22,
             z.len - 22, (unsigned)(z.len - 22 - (size_t)ts_central_offset(&z, "archive/a")));
    expect_open_err(&t, SMELT_EFORMAT, msg);
    tb_free(&t);
    tb_free(&z);
}

Test(torchzip, crc_is_checked_on_read)
{
    tb_buf z = {0};
    three(&z, 0, 0);
    long l1 = ts_local_offset(&z, "archive/data/0");
    uint64_t data = (uint64_t)l1 + 30 + 14;
    data += z.p[l1 + 28] | (z.p[l1 + 29] << 8);
    z.p[data + 100] ^= 1;
    char msg[512];
    snprintf(msg, sizeof msg, "t.bin: 'archive/data/0' @ byte %llu (0x%llx): CRC-32 mismatch: the directory says %08x, the data gives ",
             (unsigned long long)data, (unsigned long long)data,
             (unsigned)(z.p[ts_central_offset(&z, "archive/data/0") + 16] | (z.p[ts_central_offset(&z, "archive/data/0") + 17] << 8) |
                        (z.p[ts_central_offset(&z, "archive/data/0") + 18] << 16) |
                        ((unsigned)z.p[ts_central_offset(&z, "archive/data/0") + 19] << 24)));
    smelt_tz *t;
    smelt_err e;
    cr_assert_eq(smelt_tz_open_mem(z.p, z.len, "t.bin", &t, &e), 0);
    smelt_scratch sc = {0};
    const void *d;
    cr_expect_eq(smelt_tz_read(t, 1, &d, &sc, &e), SMELT_EFORMAT);
    char line[1200];
    smelt_err_format(&e, line, sizeof line);
    cr_expect_eq(strncmp(line, msg, strlen(msg)), 0, "%s", line);
    cr_expect_eq(smelt_tz_read(t, 0, &d, &sc, &e), 0, "other entries stay readable");
    smelt_scratch_free(&sc);
    smelt_tz_close(t);
    tb_free(&z);
}

Test(torchzip, corrupt_deflate_stream)
{
    tb_buf z = {0};
    three(&z, 1, 0);
    long l1 = ts_local_offset(&z, "archive/data/0");
    uint64_t data = (uint64_t)l1 + 30 + 14;
    data += z.p[l1 + 28] | (z.p[l1 + 29] << 8);
    memset(z.p + data, 0xff, 4);
    char msg[512];
    snprintf(msg, sizeof msg, "t.bin: 'archive/data/0' @ byte %llu (0x%llx): deflated data is corrupt or truncated (zlib: invalid block type) after 0 of 5000 bytes",
             (unsigned long long)data, (unsigned long long)data);
    expect_read_err(&z, 1, msg);
    tb_free(&z);
}
