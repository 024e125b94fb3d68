/* bench_quantize.c — smelt-quantize throughput (input MB/s) and peak RSS per type on
 * Mixtral-shaped expert tensors (rows of 4096 and 14336), next to llama.cpp's
 * llama_model_quantize with the same thread count when the oracle is installed.
 * The model is generated (random f16, tests/common/mixtral_layer.h's expert tensors), never
 * committed: SMELT_BENCH_EXPERTS experts per tensor (default 1; 8 = the up and down experts
 * of one Mixtral-8x7B layer, 1.9 GB), SMELT_BENCH_THREADS
 * (default 2), SMELT_BENCH_TYPES (default: every pure type smelt can produce). Each run
 * is a forked child, so wall time and RSS are its own; three alternating rounds per type,
 * the best time of each side kept. smelt's time includes fsync of its output before the
 * rename (its atomic-write rule); llama_model_quantize does not sync. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "formats/base/progress.h"
#include "quant/qtypes.h"
#include "quant/quantize.h"
#include "tests/common/mixtral_layer.h"

typedef struct result {
    double secs;
    long rss_mb;
    int ok;
} result;

/* Run fn in a child; its wall time and peak RSS. */
static result in_child(int (*fn)(void *), void *arg)
{
    result r = {0, 0, 0};
    double t0 = smelt_now();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) _exit(fn(arg) ? 1 : 0);
    int st;
    struct rusage ru;
    if (pid < 0 || wait4(pid, &st, 0, &ru) != pid) return r;
    r.secs = smelt_now() - t0;
    r.rss_mb = ru.ru_maxrss / 1024;
    r.ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    return r;
}

/* Rounds per type and side. The conversions (BF16, F32) are bound by writing the output,
 * where one run's page-cache writeback lands on the next: a single run scatters by ±40%. */
#define ROUNDS 3

static result best(result a, result b)
{
    if (!b.ok) return a.ok ? a : b;
    if (!a.ok || b.secs < a.secs) {
        if (a.rss_mb > b.rss_mb) b.rss_mb = a.rss_mb; /* peak RSS: the largest seen */
        return b;
    }
    if (b.rss_mb > a.rss_mb) a.rss_mb = b.rss_mb;
    return a;
}

typedef struct job {
    const char *in, *out, *ftype;
    int threads, ftype_id;
} job;

static int run_smelt(void *p)
{
    job *j = p;
    smelt_quantize_opts o;
    smelt_quantize_opts_default(&o);
    o.ftype = j->ftype;
    o.n_threads = j->threads;
    o.pure = true;
    o.skip_model_check = true; /* one layer's expert tensors, not a whole model */
    smelt_err e;
    int rc = smelt_quantize_run(&o, j->in, j->out, NULL, &e);
    if (rc) fprintf(stderr, "smelt: %s\n", e.msg);
    return rc;
}

static int run_llama(void *p)
{
    job *j = p;
    const lq_api *a = lq_get();
    lq_params q = a->default_params();
    q.ftype = j->ftype_id;
    q.nthread = j->threads;
    q.pure = true;
    return (int)lq_quantize(a, j->in, j->out, &q, NULL);
}

int main(void)
{
    const char *ev = getenv("SMELT_BENCH_EXPERTS"), *tv = getenv("SMELT_BENCH_THREADS");
    uint32_t n_exp = ev ? (uint32_t)atoi(ev) : 1;
    int threads = tv ? atoi(tv) : 2;
    if (n_exp < 1 || n_exp > 8 || threads < 1) {
        fprintf(stderr, "bench_quantize: SMELT_BENCH_EXPERTS must be 1..8, SMELT_BENCH_THREADS >= 1\n");
        return 2;
    }
    char dir[4096], in[4200], out[4200];
    if (tu_mkdtemp(dir, sizeof dir)) return 1;
    snprintf(in, sizeof in, "%s/layer-f16.gguf", dir);
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    smelt_err e;
    if (ml_write_experts(in, n_exp, &e)) {
        fprintf(stderr, "bench_quantize: writing the model: %s\n", e.msg);
        return 1;
    }
    double mb = 2.0 * 4096 * 14336 * n_exp * 2 / 1e6;
    const lq_api *a = lq_get();
    printf("Mixtral-shaped ffn_up_exps + ffn_down_exps, %u expert%s: %.0f MB of f16, %d thread%s, --pure\n", n_exp,
           n_exp > 1 ? "s" : "", mb, threads, threads > 1 ? "s" : "");
    printf("%-7s %12s %9s %12s %9s %7s\n", "type", "smelt MB/s", "RSS MB", "llama MB/s", "RSS MB", "ratio");
    const char *deflt[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K_S", "Q4_K_S", "Q5_K_S", "Q6_K", "BF16", "F32"};
    char *types = getenv("SMELT_BENCH_TYPES") ? strdup(getenv("SMELT_BENCH_TYPES")) : NULL;
    size_t nt = sizeof deflt / sizeof deflt[0];
    const char *list[64];
    if (types) {
        nt = 0;
        for (char *s = strtok(types, " ,"); s && nt < 64; s = strtok(NULL, " ,")) list[nt++] = s;
    } else {
        memcpy(list, deflt, sizeof deflt);
    }
    int rc = 0, shown = 0;
    for (size_t i = 0; i < nt; i++) {
        const smelt_ftype_info *fi = smelt_ftype_find(list[i]);
        if (!fi) continue;
        if (!smelt_q_can_quantize(fi->default_type)) {
            if (types) printf("%-7s %12s\n", fi->name, "(not yet)");
            continue;
        }
        job j = {in, out, fi->name, threads, fi->ftype};
        result s = {0, 0, 0}, l = {0, 0, 0};
        for (int round = 0; round < ROUNDS; round++) { /* alternating; the best of each side */
            result x = in_child(run_smelt, &j);
            unlink(out);
            s = best(s, x);
            if (!a) continue;
            x = in_child(run_llama, &j);
            unlink(out);
            l = best(l, x);
        }
        if (!s.ok) rc = 1;
        printf("%-7s %12.1f %9ld", fi->name, mb / s.secs, s.rss_mb);
        if (l.ok) printf(" %12.1f %9ld %7.2f\n", mb / l.secs, l.rss_mb, l.secs / s.secs);
        else printf(" %12s\n", a ? "(failed)" : "(no oracle)");
        shown++;
    }
    if (!shown) printf("(no type smelt can produce in this list yet)\n");
    free(types);
    tu_rmtree(dir);
    return rc;
}
