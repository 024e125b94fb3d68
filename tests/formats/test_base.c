/* test_base.c — formats/base: float conversions, error formatting, atomic output,
 * thread pool, name map, CLI parsing. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/base/cli.h"
#include "formats/base/err.h"
#include "formats/base/file.h"
#include "formats/base/half.h"
#include "formats/base/names.h"
#include "formats/base/pool.h"
#include "formats/dtype.h"
#include "tests/common/testutil.h"

static uint32_t rng_state = 12345;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

Test(half, f16_to_f32_to_f16_is_identity_for_every_value)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = smelt_f16_to_f32((uint16_t)h);
        _Float16 ref;
        memcpy(&ref, &(uint16_t){(uint16_t)h}, 2);
        if (isnan(f)) {
            cr_expect(isnan((float)ref));
            cr_expect(isnan(smelt_f16_to_f32(smelt_f32_to_f16(f))));
            continue;
        }
        cr_expect_eq(f, (float)ref, "h=%04x", h);
        cr_expect_eq(smelt_f32_to_f16(f), h, "h=%04x", h);
    }
}

Test(half, f32_to_f16_rounds_like_the_compiler)
{
    /* gcc's _Float16 conversion (libgcc or F16C) rounds to nearest even: an independent
     * reference for random bit patterns, including subnormals and overflow. */
    for (int i = 0; i < 2000000; i++) {
        uint32_t u = rnd();
        float f = smelt_bits_f32(u);
        if (isnan(f)) continue;
        _Float16 ref = (_Float16)f;
        uint16_t rb;
        memcpy(&rb, &ref, 2);
        cr_assert_eq(smelt_f32_to_f16(f), rb, "f=%a (bits %08x)", (double)f, u);
    }
    /* ties around 1.0: 1 + 2^-11 is halfway between 1 and 1+2^-10 → even (1.0) */
    cr_expect_eq(smelt_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
    cr_expect_eq(smelt_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
    cr_expect_eq(smelt_f32_to_f16(65504.0f), 0x7bff);
    cr_expect_eq(smelt_f32_to_f16(65519.0f), 0x7bff);
    cr_expect_eq(smelt_f32_to_f16(65520.0f), 0x7c00);
}

Test(half, overflow_is_counted_and_can_clamp)
{
    float src[5] = {1.0f, 70000.0f, -1e9f, INFINITY, 65504.0f};
    uint16_t dst[5];
    cr_expect_eq(smelt_row_f32_to_f16(src, dst, 5, SMELT_F16_OVERFLOW_INF), 2);
    cr_expect_eq(dst[1], 0x7c00);
    cr_expect_eq(dst[2], 0xfc00);
    cr_expect_eq(dst[3], 0x7c00); /* a real infinity is not an overflow */
    cr_expect_eq(smelt_row_f32_to_f16(src, dst, 5, SMELT_F16_OVERFLOW_CLAMP), 2);
    cr_expect_eq(dst[1], 0x7bff);
    cr_expect_eq(dst[2], 0xfbff);
    cr_expect_eq(dst[3], 0x7c00);
}

static uint16_t bf16_ref(float f)
{
    uint32_t u = smelt_f32_bits(f);
    uint32_t lo = u & 0xffff0000u, hi = lo + 0x10000u;
    double d = f, dl = smelt_bits_f32(lo), dh = smelt_bits_f32(hi);
    double el = fabs(d - dl), eh = fabs(dh - d);
    if (el < eh) return (uint16_t)(lo >> 16);
    if (eh < el) return (uint16_t)(hi >> 16);
    return (uint16_t)(((lo >> 16) & 1) ? hi >> 16 : lo >> 16);
}

Test(half, bf16_rounds_to_nearest_even_and_keeps_nan)
{
    for (int i = 0; i < 2000000; i++) {
        float f = smelt_bits_f32(rnd());
        if (isnan(f) || isinf(f)) continue;
        uint32_t u = smelt_f32_bits(f);
        if ((u & 0x7f800000u) == 0x7f000000u) continue; /* top binade: rounding to inf, checked below */
        cr_assert_eq(smelt_f32_to_bf16(f), bf16_ref(f), "f=%a", (double)f);
    }
    cr_expect_eq(smelt_f32_to_bf16(smelt_bits_f32(0x3f808000u)), 0x3f80); /* tie → even */
    cr_expect_eq(smelt_f32_to_bf16(smelt_bits_f32(0x3f818000u)), 0x3f82); /* tie → even */
    cr_expect_eq(smelt_f32_to_bf16(smelt_bits_f32(0x7f7fffffu)), 0x7f80); /* FLT_MAX → inf */
    uint16_t n = smelt_f32_to_bf16(smelt_bits_f32(0x7f800001u));        /* signalling NaN */
    cr_expect(isnan(smelt_bf16_to_f32(n)));
    cr_expect_eq(smelt_f32_to_bf16(-0.0f), 0x8000);
}

Test(half, fp8_decoding)
{
    cr_expect_eq(smelt_f8e4m3_to_f32(0x7e), 448.0f);
    cr_expect_eq(smelt_f8e4m3_to_f32(0x38), 1.0f);
    cr_expect_eq(smelt_f8e4m3_to_f32(0x01), 0x1p-9f);
    cr_expect_eq(smelt_f8e4m3_to_f32(0xb8), -1.0f);
    cr_expect(isnan(smelt_f8e4m3_to_f32(0x7f)));
    cr_expect_eq(smelt_f8e5m2_to_f32(0x3c), 1.0f);
    cr_expect_eq(smelt_f8e5m2_to_f32(0x7b), 57344.0f);
    cr_expect(isinf(smelt_f8e5m2_to_f32(0x7c)));
    float out[2];
    uint8_t src[2] = {0x38, 0x40};
    cr_expect_eq(smelt_dtype_to_f32(SMELT_DT_F8_E4M3, src, out, 2), 0);
    cr_expect_eq(out[1], 2.0f);
}

Test(err, formats_file_object_offset_and_message)
{
    smelt_err e;
    smelt_err_clear(&e);
    char line[512];
    SMELT_CORRUPT(&e, "a.gguf", 0x1f40, "blk.0.attn_q.weight", "expected %d, found %d", 1, 2);
    smelt_err_format(&e, line, sizeof line);
    cr_expect_str_eq(line, "a.gguf: 'blk.0.attn_q.weight' @ byte 8000 (0x1f40): expected 1, found 2");
    cr_expect_eq(e.code, SMELT_EFORMAT);
    cr_expect_eq(smelt_err_exit_status(e.code), 3);
    SMELT_ERR(&e, SMELT_EUSAGE, NULL, NULL, "bad flag");
    smelt_err_format(&e, line, sizeof line);
    cr_expect_str_eq(line, "bad flag");
    smelt_err_prefix(&e, "while %s", "parsing");
    cr_expect_str_eq(e.msg, "while parsing: bad flag");
    cr_expect_eq(SMELT_ERR(NULL, SMELT_EIO, "x", NULL, "no record"), SMELT_EIO);
}

Test(file, outfile_commit_and_abort)
{
    char dir[256], path[512];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/x.bin", dir);
    smelt_outfile *o;
    smelt_err e;
    cr_assert_eq(smelt_outfile_open(&o, path, &e), 0);
    cr_expect_neq(access(path, F_OK), 0, "visible before commit");
    cr_assert_eq(smelt_outfile_write(o, "abc", 3, &e), 0);
    cr_assert_eq(smelt_outfile_pad(o, 8, &e), 0);
    cr_expect_eq(smelt_outfile_tell(o), 8);
    cr_assert_eq(smelt_outfile_pwrite(o, "Z", 1, 1, &e), 0);
    cr_assert_eq(smelt_outfile_commit(o, &e), 0);
    size_t n;
    uint8_t *b = tu_read(path, &n);
    cr_assert(b);
    cr_expect_eq(n, 8);
    cr_expect(!memcmp(b, "aZc\0\0\0\0\0", 8));
    free(b);
    /* abort leaves the committed file untouched and no temporary behind */
    cr_assert_eq(smelt_outfile_open(&o, path, &e), 0);
    smelt_outfile_write(o, "zzzz", 4, &e);
    smelt_outfile_abort(o);
    b = tu_read(path, &n);
    cr_expect_eq(n, 8);
    free(b);
    char cmd[600], *out = NULL;
    snprintf(cmd, sizeof cmd, "ls -A %s", dir);
    tu_run(cmd, &out);
    cr_expect_str_eq(out, "x.bin\n");
    free(out);
    /* a directory as output is refused */
    cr_expect_eq(smelt_outfile_open(&o, dir, &e), SMELT_EUSAGE);
    tu_rmtree(dir);
}

Test(file, map_errors)
{
    smelt_map m;
    smelt_err e;
    cr_expect_eq(smelt_map_open(&m, "/nonexistent/x", &e), SMELT_EIO);
    cr_expect_str_eq(e.msg, "cannot open: No such file or directory");
    cr_expect_eq(smelt_map_open(&m, "/tmp", &e), SMELT_EIO);
    cr_expect_str_eq(e.msg, "is a directory, expected a file");
}

typedef struct {
    int64_t *out;
    atomic_int calls;
} pool_ctx;

static void square(void *ctx, size_t task, int thread)
{
    (void)thread;
    pool_ctx *c = ctx;
    c->out[task] = (int64_t)task * (int64_t)task;
    atomic_fetch_add(&c->calls, 1);
}

Test(pool, every_task_runs_once_for_any_thread_count)
{
    for (int nt = 1; nt <= 5; nt++) {
        smelt_pool *p = smelt_pool_new(nt);
        cr_assert(p);
        for (int rep = 0; rep < 20; rep++) {
            int64_t out[1000] = {0};
            pool_ctx c = {out, 0};
            smelt_pool_run(p, 1000, square, &c);
            cr_assert_eq(atomic_load(&c.calls), 1000);
            for (int i = 0; i < 1000; i++) cr_assert_eq(out[i], (int64_t)i * i);
        }
        smelt_pool_free(p);
    }
    int64_t out[3];
    pool_ctx c = {out, 0};
    smelt_pool_run(NULL, 3, square, &c);
    cr_expect_eq(out[2], 4);
}

Test(names, insert_find_duplicates_and_growth)
{
    smelt_names m;
    cr_assert_eq(smelt_names_init(&m, 2), 0);
    static char keys[5000][16];
    for (int i = 0; i < 5000; i++) {
        snprintf(keys[i], 16, "k%d", i);
        cr_assert_eq(smelt_names_add(&m, keys[i], (size_t)i), SMELT_NAMES_ADDED);
    }
    cr_expect_eq(smelt_names_add(&m, "k17", 99), 17);
    for (int i = 0; i < 5000; i++) cr_assert_eq(smelt_names_find(&m, keys[i]), i);
    cr_expect_eq(smelt_names_find(&m, "nope"), -1);
    smelt_names_free(&m);
}

Test(cli, sizes_and_ints)
{
    uint64_t v;
    cr_expect_eq(smelt_cli_size("10GB", &v), 0);
    cr_expect_eq(v, 10000000000ull);
    cr_expect_eq(smelt_cli_size("500M", &v), 0);
    cr_expect_eq(v, 500000000ull);
    cr_expect_eq(smelt_cli_size("2GiB", &v), 0);
    cr_expect_eq(v, 2147483648ull);
    cr_expect_eq(smelt_cli_size("1.5k", &v), 0);
    cr_expect_eq(v, 1500);
    cr_expect_eq(smelt_cli_size("12XB", &v), -1);
    cr_expect_eq(smelt_cli_size("-1", &v), -1);
    long l;
    cr_expect_eq(smelt_cli_int("42", 0, 100, &l), 0);
    cr_expect_eq(l, 42);
    cr_expect_eq(smelt_cli_int("420", 0, 100, &l), -1);
    cr_expect_eq(smelt_cli_int("4x", 0, 100, &l), -1);
}
