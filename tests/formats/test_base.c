/* test_base.c — formats/base: float conversions, error formatting, atomic output,
 * thread pool, name map, CLI parsing, CPU features. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "formats/tool/cli.h"
#include "formats/base/cpu.h"
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

/* ==== inputs that are not regular files ==== */

static void expect_line(const smelt_err *e, const char *want)
{
    char line[1200];
    smelt_err_format(e, line, sizeof line);
    cr_expect_str_eq(line, want);
}

/* A FIFO with no writer would block open(O_RDONLY) forever: the timeout catches a hang. */
Test(file, fifo_and_device_inputs_are_not_regular_files, .timeout = 20)
{
    char dir[256], fifo[512], dev[512], missing[512], want[1200];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(fifo, sizeof fifo, "%s/shard.safetensors", dir);
    snprintf(dev, sizeof dev, "%s/zero.gguf", dir);
    snprintf(missing, sizeof missing, "%s/nope.gguf", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_assert_eq(symlink("/dev/zero", dev), 0);
    smelt_map m;
    smelt_err e;
    char *text;
    cr_expect_eq(smelt_map_open(&m, fifo, &e), SMELT_EIO);
    snprintf(want, sizeof want, "%s: not a regular file (it is a FIFO)", fifo);
    expect_line(&e, want);
    cr_expect_null(m.data);
    cr_expect_eq(smelt_read_file(fifo, 1000, &text, NULL, &e), SMELT_EIO);
    expect_line(&e, want);
    cr_expect_eq(smelt_check_regular_file(fifo, &e), SMELT_EIO);
    expect_line(&e, want);
    cr_expect_eq(smelt_map_open(&m, dev, &e), SMELT_EIO);
    snprintf(want, sizeof want, "%s: not a regular file (it is a character device)", dev);
    expect_line(&e, want);
    cr_expect_eq(smelt_read_file(dev, 1000, &text, NULL, &e), SMELT_EIO);
    expect_line(&e, want);
    cr_expect_eq(smelt_check_regular_file(missing, &e), SMELT_EIO);
    snprintf(want, sizeof want, "%s: no such file or directory", missing);
    expect_line(&e, want);
    cr_expect_eq(smelt_check_regular_file(dir, &e), SMELT_EIO);
    cr_expect_str_eq(e.msg, "is a directory, expected a file");
    /* looked up by name, they exist (and are then refused as what they are) */
    cr_expect(smelt_nondir_exists(fifo));
    cr_expect(smelt_nondir_exists(dev));
    cr_expect(!smelt_nondir_exists(missing));
    cr_expect(!smelt_nondir_exists(dir));
    cr_expect(!smelt_file_exists(fifo));
    tu_rmtree(dir);
}

/* ==== temporary names, stale temporaries ==== */

static char g_notices[4096];
static void collect_notice(const char *msg)
{
    size_t l = strlen(g_notices);
    snprintf(g_notices + l, sizeof g_notices - l, "%s\n", msg);
}

static void touch(const char *dir, const char *name)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    cr_assert_eq(tu_write(p, "x", 1), 0, "%s", p);
}

static char *listing(const char *dir)
{
    char cmd[600], *out = NULL;
    snprintf(cmd, sizeof cmd, "ls -A %s", dir);
    tu_run(cmd, &out);
    return out;
}

/* A process id that belonged to a process that has exited and been reaped. */
static pid_t dead_pid(void)
{
    pid_t p = fork();
    if (p == 0) _exit(0);
    cr_assert_gt(p, 0);
    waitpid(p, NULL, 0);
    return p;
}

Test(file, temporary_names_carry_the_pid)
{
    char dir[256], path[512], want[64];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    snprintf(path, sizeof path, "%s/x.bin", dir);
    smelt_outfile *o;
    smelt_err e;
    cr_assert_eq(smelt_outfile_open(&o, path, &e), 0);
    char *ls = listing(dir);
    snprintf(want, sizeof want, ".x.bin.smelt-tmp-%ld-", (long)getpid());
    cr_expect_eq(strncmp(ls, want, strlen(want)), 0, "%s", ls);
    cr_expect_eq(strlen(ls), strlen(want) + 7, "%s", ls); /* six random characters and a newline */
    free(ls);
    smelt_outfile_abort(o);
    char tmp[8300], target[512];
    snprintf(target, sizeof target, "%s/merged/", dir);
    cr_assert_eq(smelt_tmpdir_create(target, tmp, sizeof tmp, &e), 0, "%s", e.msg);
    snprintf(want, sizeof want, "/.merged.smelt-tmp-%ld-", (long)getpid());
    cr_expect_eq(strncmp(tmp + strlen(dir), want, strlen(want)), 0, "%s", tmp);
    cr_expect(smelt_is_dir(tmp));
    smelt_tmpdir_forget(tmp);
    rmdir(tmp);
    tu_rmtree(dir);
}

Test(file, stale_temporaries_of_dead_runs_are_removed)
{
    char dir[256], path[512], want[2048], name[700];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    long dead = (long)dead_pid(), live = (long)getppid();
    const char *kept[] = {
        ".x.bin.smelt-tmp-%ld-abc12",    /* five characters */
        ".x.bin.smelt-tmp-%ld-abc1234",  /* seven */
        ".y.bin.smelt-tmp-%ld-abc123",   /* another output's */
        "x.bin.smelt-tmp-%ld-abc123",    /* not hidden */
        ".x.bin.smelt-tmp-%ld-ab_123",   /* not what mkstemp makes */
    };
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        snprintf(name, sizeof name, kept[i], dead);
        touch(dir, name);
    }
    touch(dir, ".x.bin.smelt-tmp-Qz09aB"); /* no pid: not ours to judge */
    snprintf(name, sizeof name, ".x.bin.smelt-tmp-%ld-liv123", live);
    touch(dir, name);
    snprintf(name, sizeof name, ".x.bin.smelt-tmp-%ld-Dead99", dead);
    touch(dir, name);
    /* a stale directory, with contents, and a symbolic link: not files, left to smelt_tmpdir_create */
    char sub[600], subsub[700];
    snprintf(sub, sizeof sub, "%s/.x.bin.smelt-tmp-%ld-dir123", dir, dead);
    cr_assert_eq(mkdir(sub, 0700), 0);
    touch(sub, "model.safetensors");
    snprintf(subsub, sizeof subsub, "%s/nested", sub);
    cr_assert_eq(mkdir(subsub, 0700), 0);
    touch(subsub, "deep");
    char lnk[600];
    snprintf(lnk, sizeof lnk, "%s/.x.bin.smelt-tmp-%ld-lnk123", dir, dead);
    cr_assert_eq(symlink(sub, lnk), 0);

    g_notices[0] = 0;
    smelt_file_set_notice(collect_notice);
    snprintf(path, sizeof path, "%s/x.bin", dir);
    smelt_outfile *o;
    smelt_err e;
    cr_assert_eq(smelt_outfile_open(&o, path, &e), 0);
    smelt_outfile_abort(o);
    snprintf(want, sizeof want,
             "removed stale temporary file %s/.x.bin.smelt-tmp-%ld-Dead99 left by an interrupted run (pid %ld)\n", dir,
             dead, dead);
    cr_expect_str_eq(g_notices, want);
    snprintf(name, sizeof name, "%s/.x.bin.smelt-tmp-%ld-Dead99", dir, dead);
    cr_expect_neq(access(name, F_OK), 0, "the stale file is still there");
    snprintf(name, sizeof name, "%s/.x.bin.smelt-tmp-%ld-liv123", dir, live);
    cr_expect_eq(access(name, F_OK), 0, "the live run's file was removed");
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        char nm[160];
        snprintf(nm, sizeof nm, kept[i], dead);
        snprintf(name, sizeof name, "%s/%s", dir, nm);
        cr_expect_eq(access(name, F_OK), 0, "%s was removed", nm);
    }
    cr_expect(smelt_is_dir(sub));

    /* the directory of a dead run goes with its contents; the link (not a directory) stays */
    g_notices[0] = 0;
    char tmp[8300];
    cr_assert_eq(smelt_tmpdir_create(path, tmp, sizeof tmp, &e), 0, "%s", e.msg);
    snprintf(want, sizeof want,
             "removed stale temporary directory %s/.x.bin.smelt-tmp-%ld-dir123 left by an interrupted run (pid %ld)\n",
             dir, dead, dead);
    cr_expect_str_eq(g_notices, want);
    cr_expect(!smelt_is_dir(sub));
    struct stat st;
    cr_expect_eq(lstat(lnk, &st), 0, "the symbolic link was removed");
    smelt_tmpdir_forget(tmp);
    rmdir(tmp);

    /* a relative output path names the removed file as the user would */
    snprintf(name, sizeof name, "%s/.x.bin.smelt-tmp-%ld-Dead98", dir, dead);
    cr_assert_eq(tu_write(name, "x", 1), 0);
    g_notices[0] = 0;
    cr_assert_eq(chdir(dir), 0);
    cr_assert_eq(smelt_outfile_open(&o, "x.bin", &e), 0);
    smelt_outfile_abort(o);
    snprintf(want, sizeof want,
             "removed stale temporary file .x.bin.smelt-tmp-%ld-Dead98 left by an interrupted run (pid %ld)\n", dead, dead);
    cr_expect_str_eq(g_notices, want);
    smelt_file_set_notice(NULL);
    cr_assert_eq(chdir("/"), 0);
    tu_rmtree(dir);
}

/* ==== the tool mains' signal handlers ==== */

typedef struct {
    int status;     /* from waitpid */
    char err[2048]; /* the child's stderr */
} child_result;

/* Run fn(dir) in a child whose stderr is captured; no core files. */
static child_result run_child(void (*fn)(const char *dir), const char *dir)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t p = fork();
    cr_assert_geq(p, 0);
    if (p == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        fn(dir);
        _exit(99); /* fn did not end the process */
    }
    close(fds[1]);
    child_result r = {0};
    size_t n = 0;
    ssize_t k;
    while ((k = read(fds[0], r.err + n, sizeof r.err - 1 - n)) > 0) n += (size_t)k;
    close(fds[0]);
    waitpid(p, &r.status, 0);
    return r;
}

/* In the child: an input of 64 KiB mapped, an output being written, a temporary output
 * directory with nested contents. */
static void start_work(const char *dir, smelt_map *m)
{
    char in[512], out[512], target[512], tmp[8300], p[8400];
    snprintf(in, sizeof in, "%s/in.bin", dir);
    static uint8_t bytes[65536];
    if (tu_write(in, bytes, sizeof bytes)) _exit(90);
    smelt_err e;
    if (m && smelt_map_open(m, in, &e)) _exit(91);
    smelt_outfile *o;
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    if (smelt_outfile_open(&o, out, &e) || smelt_outfile_write(o, bytes, sizeof bytes, &e)) _exit(92);
    snprintf(target, sizeof target, "%s/merged", dir);
    if (smelt_tmpdir_create(target, tmp, sizeof tmp, &e)) _exit(93);
    snprintf(p, sizeof p, "%s/model.safetensors", tmp);
    if (tu_write(p, bytes, 100)) _exit(94);
    snprintf(p, sizeof p, "%s/sub", tmp);
    if (mkdir(p, 0700)) _exit(95);
    snprintf(p, sizeof p, "%s/sub/file", tmp);
    if (tu_write(p, bytes, 100)) _exit(96);
}

static void truncated_mapped_input(const char *dir)
{
    smelt_tool_install_file_safety("smelt-test");
    smelt_map m;
    start_work(dir, &m);
    char in[512];
    snprintf(in, sizeof in, "%s/in.bin", dir);
    if (truncate(in, 4096)) _exit(97);
    volatile uint8_t x = m.data[40000]; /* SIGBUS: the page is past the end of the file now */
    (void)x;
}

Test(file, sigbus_in_a_mapped_input_is_an_error_line_and_status_1)
{
    char dir[256], want[1200];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    child_result r = run_child(truncated_mapped_input, dir);
    cr_expect(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 1, "status %#x", r.status);
    snprintf(want, sizeof want,
             "smelt-test: error: %s/in.bin: changed or truncated while reading (the read at byte 40000 failed; the file "
             "was 65536 bytes when opened, 4096 now)\n",
             dir);
    cr_expect_str_eq(r.err, want);
    char *ls = listing(dir);
    cr_expect_str_eq(ls, "in.bin\n", "temporary output file or directory left: %s", ls);
    free(ls);
    tu_rmtree(dir);
}

static void truncated_unregistered_mapping(const char *dir)
{
    smelt_tool_install_file_safety("smelt-test");
    start_work(dir, NULL);
    char in[512];
    snprintf(in, sizeof in, "%s/in.bin", dir);
    int fd = open(in, O_RDONLY);
    const uint8_t *p = mmap(NULL, 65536, PROT_READ, MAP_PRIVATE, fd, 0);
    if (fd < 0 || p == MAP_FAILED || truncate(in, 4096)) _exit(97);
    volatile uint8_t x = p[40000]; /* SIGBUS outside every smelt_map */
    (void)x;
}

Test(file, sigbus_outside_mapped_inputs_still_crashes)
{
    char dir[256];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    child_result r = run_child(truncated_unregistered_mapping, dir);
    cr_expect(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGBUS, "status %#x", r.status);
    cr_expect_str_eq(r.err, "");
    char *ls = listing(dir);
    cr_expect_str_eq(ls, "in.bin\n", "temporary output file or directory left: %s", ls);
    free(ls);
    tu_rmtree(dir);
}

static void terminated(const char *dir)
{
    smelt_tool_install_file_safety("smelt-test");
    smelt_map m;
    start_work(dir, &m);
    raise(SIGTERM);
}

Test(file, termination_removes_temporary_files_and_directories)
{
    char dir[256];
    cr_assert_eq(tu_mkdtemp(dir, sizeof dir), 0);
    child_result r = run_child(terminated, dir);
    cr_expect(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGTERM, "status %#x", r.status);
    char *ls = listing(dir);
    cr_expect_str_eq(ls, "in.bin\n", "temporary output file or directory left: %s", ls);
    free(ls);
    tu_rmtree(dir);
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

/* ==== CPU features ==== */

Test(cpu, kernel_set_choice_follows_the_features)
{
    unsigned need = SMELT_CPU_AVX2 | SMELT_CPU_FMA | SMELT_CPU_F16C;
    bool avx2 = (smelt_cpu_features() & need) == need;
    cr_expect_eq(smelt_cpu_has_avx2(), avx2);
    cr_expect_eq(smelt_cpu_isa(-1), avx2 ? SMELT_ISA_AVX2 : SMELT_ISA_PORTABLE);
    cr_expect_eq(smelt_cpu_isa(SMELT_ISA_AVX2), avx2 ? SMELT_ISA_AVX2 : SMELT_ISA_PORTABLE);
    cr_expect_eq(smelt_cpu_isa(SMELT_ISA_PORTABLE), SMELT_ISA_PORTABLE);
    cr_expect_eq(smelt_cpu_isa(SMELT_ISA_COUNT), SMELT_ISA_PORTABLE);
    cr_expect_str_eq(smelt_isa_name(SMELT_ISA_PORTABLE), "portable");
    cr_expect_str_eq(smelt_isa_name(SMELT_ISA_AVX2), "avx2");
    cr_expect_str_eq(smelt_isa_name(7), "unknown");
}

/* Each test runs in its own process, so the variable is read by the first call here. */
Test(cpu, smelt_no_simd_turns_every_feature_off)
{
    setenv("SMELT_NO_SIMD", "1", 1);
    cr_expect_eq(smelt_cpu_features(), 0u);
    cr_expect_eq(smelt_cpu_isa(-1), SMELT_ISA_PORTABLE);
    cr_expect_eq(smelt_cpu_isa(SMELT_ISA_AVX2), SMELT_ISA_PORTABLE);
}
