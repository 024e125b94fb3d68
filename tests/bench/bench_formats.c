/* bench_formats.c — throughput of the format layer: f32→f16/bf16 row conversion (with the
 * ratio to ggml's own row converters when llama.cpp's libggml-base is installed) and
 * streaming a GGUF to disk. Prints MB/s of input. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/base/half.h"
#include "formats/base/progress.h"
#include "formats/gguf.h"
#include "tests/common/testutil.h"

#define N (16u << 20) /* 16 M floats = 64 MB */

static double best_of(int reps, void (*fn)(void *), void *ctx)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = smelt_now();
        fn(ctx);
        double dt = smelt_now() - t0;
        if (dt < best) best = dt;
    }
    return best;
}

typedef struct {
    float *src;
    uint16_t *dst;
    void (*ggml)(const float *, void *, int64_t);
} conv;

static void smelt_f16(void *c_)
{
    conv *c = c_;
    smelt_row_f32_to_f16(c->src, c->dst, N, SMELT_F16_OVERFLOW_INF);
}
static void smelt_bf16(void *c_)
{
    conv *c = c_;
    smelt_row_f32_to_bf16(c->src, c->dst, N);
}
static void ggml_conv(void *c_)
{
    conv *c = c_;
    c->ggml(c->src, c->dst, N);
}

int main(void)
{
    float *src = malloc(sizeof(float) * N);
    uint16_t *dst = malloc(2 * N);
    if (!src || !dst) return 1;
    uint32_t s = 1;
    for (size_t i = 0; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        src[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 4.0f;
    }
    conv c = {src, dst, NULL};
    double mb = (double)N * 4 / 1e6;
    void *g = tu_oracle_ggml();
    const char *names[2] = {"f32→f16", "f32→bf16"};
    void (*ours[2])(void *) = {smelt_f16, smelt_bf16};
    const char *gsym[2] = {"ggml_fp32_to_fp16_row", "ggml_fp32_to_bf16_row_ref"};
    for (int k = 0; k < 2; k++) {
        double t = best_of(3, ours[k], &c);
        printf("%-10s smelt %8.1f MB/s", names[k], mb / t);
        if (g && (c.ggml = (void (*)(const float *, void *, int64_t))dlsym(g, gsym[k]))) {
            double tg = best_of(3, ggml_conv, &c);
            printf("   ggml %8.1f MB/s   ratio %.2f", mb / tg, tg / t);
        }
        printf("\n");
    }
    /* GGUF streaming write: 8 tensors of 16 MB */
    char dir[256], path[512];
    if (tu_mkdtemp(dir, sizeof dir)) return 1;
    snprintf(path, sizeof path, "%s/bench.gguf", dir);
    smelt_err e;
    double t0 = smelt_now();
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    for (int i = 0; i < 8; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d", i);
        uint64_t ne[2] = {4096, 1024};
        smelt_gguf_writer_add_tensor(w, name, 2, ne, SMELT_TYPE_F32, &e);
    }
    int rc = smelt_gguf_writer_begin(w, path, &e);
    for (int i = 0; !rc && i < 8; i++) rc = smelt_gguf_writer_write(w, src, 4096u * 1024u * 4u, &e);
    if (!rc) rc = smelt_gguf_writer_commit(w, &e);
    smelt_gguf_writer_free(w);
    double tw = smelt_now() - t0;
    printf("gguf write  %8.1f MB/s (128 MB, fsync included)%s\n", 128.0 * 1.048576 / tw, rc ? "  FAILED" : "");
    tu_rmtree(dir);
    free(src);
    free(dst);
    return rc ? 1 : 0;
}
