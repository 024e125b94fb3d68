/* bench_tokenize.c — SPM and byte-level BPE tokenizer throughput on the fixture texts (MB/s, tokens/s), and the
 * ratio to libllama's llama_tokenize on the same vocabulary when the oracle is installed. */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/base/progress.h"
#include "formats/gguf.h"
#include "tests/common/testutil.h"
#include "verify/eval/tokenize.h"

struct o_model_params { /* include/llama.h of the bundled libllama */
    void *devices;
    const void *tbo;
    int32_t n_gpu_layers;
    int split_mode, load_mode, lazy_mode;
    int32_t main_gpu;
    const float *ts;
    void *pcb, *pcb_user;
    const void *kvo;
    bool vocab_only, check_tensors, use_extra_bufts, no_host, no_alloc, load_mtp;
};

static void quiet(int l, const char *t, void *u)
{
    (void)l;
    (void)t;
    (void)u;
}

static double run_smelt(const smelt_vocab *v, const char *t, size_t n, int reps, size_t *ntok)
{
    double t0 = smelt_now();
    for (int r = 0; r < reps; r++) {
        int32_t *ids;
        smelt_err e = {0};
        if (smelt_tokenize(v, t, n, true, false, &ids, ntok, &e)) {
            fprintf(stderr, "tokenize: %s\n", e.msg);
            exit(1);
        }
        free(ids);
    }
    return (smelt_now() - t0) / reps;
}

static double run_llama(const char *path, const char *t, size_t n, int reps, size_t *ntok)
{
    void *h = tu_oracle_llama();
    if (!h) return 0;
    struct o_model_params (*defp)(void) = (struct o_model_params(*)(void))dlsym(h, "llama_model_default_params");
    void *(*load)(const char *, struct o_model_params) =
        (void *(*)(const char *, struct o_model_params))dlsym(h, "llama_model_load_from_file");
    const void *(*getv)(const void *) = (const void *(*)(const void *))dlsym(h, "llama_model_get_vocab");
    int32_t (*tok)(const void *, const char *, int32_t, int32_t *, int32_t, bool, bool) =
        (int32_t(*)(const void *, const char *, int32_t, int32_t *, int32_t, bool, bool))dlsym(h, "llama_tokenize");
    void (*mfree)(void *) = (void (*)(void *))dlsym(h, "llama_model_free");
    void (*log_set)(void (*)(int, const char *, void *), void *) =
        (void (*)(void (*)(int, const char *, void *), void *))dlsym(h, "llama_log_set");
    if (!defp || !load || !getv || !tok || !mfree || !log_set) return 0;
    log_set(quiet, NULL);
    struct o_model_params p = defp();
    p.vocab_only = true;
    void *m = load(path, p);
    if (!m) return 0;
    const void *vocab = getv(m);
    int32_t *ids = malloc(sizeof *ids * (n + 16));
    double t0 = smelt_now();
    for (int r = 0; r < reps; r++) *ntok = (size_t)tok(vocab, t, (int32_t)n, ids, (int32_t)n + 16, true, false);
    double dt = (smelt_now() - t0) / reps;
    free(ids);
    mfree(m);
    return dt;
}

static void bench(const char *vocab_path, const char *label)
{
    smelt_gguf *g;
    smelt_vocab *v;
    smelt_err e = {0};
    if (smelt_gguf_open(vocab_path, SMELT_GGUF_META_ONLY, &g, &e) || smelt_vocab_from_gguf(g, &v, &e)) {
        fprintf(stderr, "%s: %s\n", vocab_path, e.msg);
        exit(1);
    }
    smelt_gguf_close(g);
    static const char *const TEXTS[] = {"samples/text/eval-en.txt", "samples/text/eval-zh.txt"};
    for (int i = 0; i < 2; i++) {
        char p[4200];
        tu_path(p, sizeof p, TEXTS[i]);
        size_t n;
        char *t = (char *)tu_read(p, &n);
        if (!t) exit(1);
        const int reps = 5;
        size_t ns = 0, nl = 0;
        run_smelt(v, t, n, 1, &ns); /* warm up */
        double ds = run_smelt(v, t, n, reps, &ns);
        double dl = run_llama(vocab_path, t, n, reps, &nl);
        printf("tokenize %-10s %-24s %6.1f MB/s %9.0f tokens/s (%zu tokens)", label, TEXTS[i] + 13,
               n / ds / 1e6, ns / ds, ns);
        if (dl > 0) printf("  llama.cpp %6.1f MB/s, ratio %.2f%s", n / dl / 1e6, dl / ds, nl == ns ? "" : " (COUNT DIFFERS)");
        printf("\n");
        free(t);
    }
    smelt_vocab_free(v);
}

int main(void)
{
    char p[4200];
    const char *b = getenv("SMELT_BUILD");
    if (b && *b) snprintf(p, sizeof p, "%s/fixtures/tiny-mixtral-vocab.gguf", b);
    else tu_path(p, sizeof p, "build/release/fixtures/tiny-mixtral-vocab.gguf");
    if (access(p, R_OK) != 0) {
        char cmd[13000], script[4200], model[4200];
        tu_path(script, sizeof script, "tests/verify/mk-vocab-gguf");
        tu_path(model, sizeof model, "samples/tiny-mixtral");
        snprintf(cmd, sizeof cmd, "'%s' '%s' '%s'", script, model, p);
        if (tu_run(cmd, NULL) != 0) p[0] = 0;
    }
    if (p[0]) bench(p, "tiny-mixtral");
    else printf("tokenize: skipped tiny-mixtral (no vocabulary GGUF; llama.cpp converter unavailable)\n");
    static const char *const VOCABS[] = {"llama-spm", "llama-bpe", "qwen2"};
    for (int i = 0; i < 3 && tu_oracle_src(); i++) {
        snprintf(p, sizeof p, "%s/models/ggml-vocab-%s.gguf", tu_oracle_src(), VOCABS[i]);
        if (access(p, R_OK) == 0) bench(p, VOCABS[i]);
    }
    return 0;
}
