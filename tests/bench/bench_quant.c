/* bench_quant.c — quantization throughput per type, smelt vs llama.cpp, on a synthetic
 * Mixtral-8x7B-shaped expert matrix (14336 rows of 4096; generated, never stored).
 *
 * Both sides run on the same thread pool with the same row chunks (about 64k elements
 * per task, as smelt_q_quantize_rows and llama-quantize split work): smelt through
 * smelt_q_quantize_rows, llama.cpp through ggml_quantize_chunk from libggml-base. Each
 * measurement walks the matrix from the first row until the whole matrix is done or its
 * time is up, and reports input MB/s (f32 bytes read); three alternating rounds per
 * side, the best of each kept. Without an
 * imatrix and with a synthetic one. Environment: SMELT_BENCH_THREADS (default: CPUs),
 * SMELT_BENCH_SECONDS (default 1), SMELT_BENCH_TYPES (comma list, default all). */
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "formats/base/pool.h"
#include "formats/base/cpu.h"
#include "quant/qtypes.h"
#include "tests/common/testutil.h"

#define ROWS 14336
#define COLS 4096

typedef size_t (*chunk_fn)(int type, const float *src, void *dst, int64_t start, int64_t nrows, int64_t n_per_row,
                           const float *imatrix);

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

typedef struct {
    chunk_fn chunk;
    int type;
    const float *x;
    uint8_t *dst;
    int64_t row0, rows_per_task, rows;
    size_t row_bytes;
    const float *imx;
} gjob;

static void g_task(void *ctx, size_t task, int thread)
{
    (void)thread;
    gjob *j = ctx;
    int64_t r = j->row0 + (int64_t)task * j->rows_per_task;
    int64_t n = j->row0 + j->rows - r < j->rows_per_task ? j->row0 + j->rows - r : j->rows_per_task;
    j->chunk(j->type, j->x + r * COLS, j->dst + (size_t)r * j->row_bytes, 0, n, COLS, j->imx);
}

/* MB/s of one implementation: batches of 256 rows from row 0 until done or out of time. */
static double measure(int smelt, chunk_fn chunk, int type, const float *x, uint8_t *dst, const float *imx,
                      smelt_pool *pool, double seconds)
{
    uint64_t rb;
    smelt_type_row_bytes(type, COLS, &rb, NULL);
    int64_t per = (65536 + COLS - 1) / COLS, done = 0;
    double t0 = now(), t = 0;
    while (done < ROWS && t < seconds) {
        int64_t n = ROWS - done < 256 ? ROWS - done : 256;
        if (smelt) {
            smelt_err e = {0};
            smelt_q_quantize_rows(type, x + done * COLS, dst + (size_t)done * rb, n, COLS, imx, pool, &e);
        } else {
            gjob j = {chunk, type, x, dst, done, per, n, (size_t)rb, imx};
            smelt_pool_run(pool, (size_t)((n + per - 1) / per), g_task, &j);
        }
        done += n;
        t = now() - t0;
    }
    return (double)done * COLS * 4 / t / 1e6;
}

static int wanted(const char *list, const char *name)
{
    if (!list || !*list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n)
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return 1;
    return 0;
}

int main(void)
{
    const char *e = getenv("SMELT_BENCH_THREADS");
    int threads = e && atoi(e) > 0 ? atoi(e) : smelt_cpu_count();
    e = getenv("SMELT_BENCH_SECONDS");
    double seconds = e && atof(e) > 0 ? atof(e) : 1.0;
    const char *types = getenv("SMELT_BENCH_TYPES");

    void *h = tu_oracle_ggml();
    chunk_fn chunk = h ? (chunk_fn)dlsym(h, "ggml_quantize_chunk") : NULL;
    float *x = malloc((size_t)ROWS * COLS * 4), *imx = malloc(COLS * 4);
    uint8_t *dst = malloc((size_t)ROWS * COLS * 2);
    if (!x || !imx || !dst) {
        fprintf(stderr, "bench_quant: out of memory\n");
        return 1;
    }
    /* weights ~ N(0, 0.02) with a heavier tail: sum of uniforms, 1 in 500 scaled by 6 */
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < (size_t)ROWS * COLS; i++) {
        float v = 0;
        for (int k = 0; k < 4; k++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            v += (float)(s >> 40) * (1.0f / 16777216.0f);
        }
        v = (v - 2.0f) * 0.0346f;
        x[i] = (s & 511) == 0 ? v * 6 : v;
    }
    for (int j = 0; j < COLS; j++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        double u = (double)(s >> 11) / 9007199254740992.0;
        imx[j] = (float)(exp(2.0 * (u - 0.5) * 2.0) * ((s & 127) == 0 ? 50 : 1));
    }
    memset(dst, 0, (size_t)ROWS * COLS * 2);
    smelt_pool *pool = smelt_pool_new(threads);
    printf("quantization throughput, %d x %d f32 (%.0f MB), %d thread%s, kernels: %s%s\n", ROWS, COLS,
           (double)ROWS * COLS * 4 / 1e6, threads, threads == 1 ? "" : "s", smelt_isa_name(smelt_q_isa()),
           chunk ? "" : " (llama.cpp oracle not installed: smelt only)");
    printf("%-6s %-8s %12s %12s %8s\n", "type", "imatrix", "smelt MB/s", "ggml MB/s", "ratio");
    double worst = INFINITY;
    for (size_t i = 0; i < smelt_q_n_types(); i++) {
        int t = smelt_q_type_at(i);
        const smelt_qtype_ops *o = smelt_q_ops(t);
        if (!smelt_qtype_encodes(o) || !smelt_type_is_quantized(t) || !wanted(types, smelt_type_name(t))) continue;
        for (int w = o->needs_imatrix ? 1 : 0; w < 2; w++) { /* ggml aborts without one there */
            const float *im = w ? imx : NULL;
            /* alternate the two sides and keep each one's best round: a shared machine's
             * load then skews both alike */
            double ms = 0, mg = 0;
            for (int round = 0; round < 3; round++) {
                double a = measure(1, NULL, t, x, dst, im, pool, seconds / 3);
                double b = chunk ? measure(0, chunk, t, x, dst, im, pool, seconds / 3) : 0;
                ms = a > ms ? a : ms;
                mg = b > mg ? b : mg;
            }
            if (chunk) {
                printf("%-6s %-8s %12.1f %12.1f %8.2f\n", smelt_type_name(t), w ? "yes" : "no", ms, mg, ms / mg);
                if (ms / mg < worst) worst = ms / mg;
            } else {
                printf("%-6s %-8s %12.1f %12s %8s\n", smelt_type_name(t), w ? "yes" : "no", ms, "-", "-");
            }
            fflush(stdout);
        }
    }
    if (chunk) printf("lowest ratio smelt/ggml: %.2f (target >= 1.00)\n", worst);

    smelt_pool_free(pool);
    free(x);
    free(imx);
    free(dst);
    return 0;
}
