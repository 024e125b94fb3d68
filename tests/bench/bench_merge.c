/* bench_merge.c — smelt-merge's memory bound: merge a LoRA (r 16 on every projection) into
 * synthetic Llama-shaped bf16 models of ~0.9 GB and ~2.7 GB generated in $TMPDIR (deleted
 * afterwards) and print the peak RSS of each run and the throughput. The peak must stay
 * below a fixed bound whatever the model size: about the largest tensor (here the 131 MB
 * embedding, written from the mapped base) plus working buffers, because inputs are mapped
 * and released tensor by tensor and outputs are streamed. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "formats/base/half.h"
#include "formats/base/progress.h"
#include "formats/safetensors.h"
#include "tests/common/adapter.h"
#include "tests/common/testutil.h"

#define HID 2048
#define FF 5632
#define VOCAB 32000
#define RANK 16
#define BOUND_MB 256.0

typedef struct {
    char name[96];
    uint64_t rows, cols;
} tdesc;

static size_t model_tensors(int layers, tdesc *t)
{
    size_t n = 0;
    static const char *const proj[7] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                        "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
    snprintf(t[n].name, sizeof t[n].name, "model.embed_tokens.weight");
    t[n].rows = VOCAB, t[n++].cols = HID;
    for (int l = 0; l < layers; l++) {
        for (int p = 0; p < 7; p++) {
            snprintf(t[n].name, sizeof t[n].name, "model.layers.%d.%s.weight", l, proj[p]);
            t[n].rows = p >= 4 ? (p == 6 ? HID : FF) : HID;
            t[n].cols = p == 6 ? FF : HID;
            n++;
        }
        snprintf(t[n].name, sizeof t[n].name, "model.layers.%d.input_layernorm.weight", l);
        t[n].rows = 1, t[n++].cols = HID;
    }
    snprintf(t[n].name, sizeof t[n].name, "model.norm.weight");
    t[n].rows = 1, t[n++].cols = HID;
    snprintf(t[n].name, sizeof t[n].name, "lm_head.weight");
    t[n].rows = VOCAB, t[n++].cols = HID;
    return n;
}

/* one safetensors shard per ~1 GB, bf16 pseudo-random values */
static uint64_t write_model(const char *dir, int layers)
{
    mkdir(dir, 0755);
    tdesc t[2 + 8 * 64 + 2];
    size_t n = model_tensors(layers, t);
    char cfg[512];
    snprintf(cfg, sizeof cfg,
             "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n  \"hidden_size\": %d,\n"
             "  \"num_attention_heads\": 16,\n  \"num_hidden_layers\": %d,\n  \"vocab_size\": %d\n}\n",
             HID, layers, VOCAB);
    ta_write_text(dir, "config.json", cfg);
    uint64_t total = 0;
    uint16_t *buf = malloc(4u << 20);
    uint32_t s = 7;
    size_t first = 0;
    int shard = 0;
    char (*files)[64] = calloc(n, sizeof *files);
    const char **names = calloc(n, sizeof *names), **fl = calloc(n, sizeof *fl);
    while (first < n) {
        uint64_t bytes = 0;
        size_t last = first;
        while (last < n && (bytes == 0 || bytes + t[last].rows * t[last].cols * 2 <= 1000000000ull))
            bytes += t[last].rows * t[last].cols * 2, last++;
        char path[4300];
        snprintf(files[shard], sizeof files[shard], "model-%05d.safetensors", shard + 1);
        snprintf(path, sizeof path, "%s/%s", dir, files[shard]);
        smelt_st_writer *w = smelt_st_writer_new();
        smelt_err e;
        for (size_t i = first; i < last; i++) {
            uint64_t sh[2] = {t[i].rows, t[i].cols};
            smelt_st_writer_add(w, t[i].name, SMELT_DT_BF16, t[i].rows == 1 ? 1 : 2, t[i].rows == 1 ? sh + 1 : sh, &e);
            names[i] = t[i].name;
            fl[i] = files[shard];
        }
        if (smelt_st_writer_begin(w, path, &e)) {
            fprintf(stderr, "bench_merge: %s\n", e.msg);
            exit(1);
        }
        const char *next;
        while ((next = smelt_st_writer_next(w))) {
            size_t i = first;
            while (strcmp(t[i].name, next)) i++;
            uint64_t left = t[i].rows * t[i].cols;
            while (left) {
                size_t k = left < (2u << 20) ? (size_t)left : (2u << 20);
                for (size_t j = 0; j < k; j++) {
                    s = s * 1664525u + 1013904223u;
                    buf[j] = smelt_f32_to_bf16(((float)(s >> 8) * 0x1p-24f - 0.5f) * 0.1f);
                }
                smelt_st_writer_write(w, buf, k * 2, &e);
                left -= k;
            }
        }
        smelt_st_writer_commit(w, &e);
        smelt_st_writer_free(w);
        total += bytes;
        shard++;
        first = last;
    }
    char ip[4300];
    snprintf(ip, sizeof ip, "%s/model.safetensors.index.json", dir);
    smelt_err e;
    smelt_st_write_index(ip, total, names, fl, n, &e);
    free(buf);
    free(files);
    free(names);
    free(fl);
    return total;
}

static void write_adapter(const char *dir, int layers)
{
    tdesc t[2 + 8 * 64 + 2];
    size_t n = model_tensors(layers, t), k = 0;
    ta_tensor *ts = calloc(2 * n, sizeof *ts);
    char (*nm)[128] = calloc(2 * n, sizeof *nm);
    static float vals[FF * RANK];
    for (size_t i = 0; i < FF * RANK; i++) vals[i] = (float)((int)(i % 13) - 6) * 0.01f;
    for (size_t i = 0; i < n; i++) {
        if (!strstr(t[i].name, "_proj")) continue;
        size_t l = strlen(t[i].name) - strlen(".weight");
        snprintf(nm[k], sizeof nm[k], "base_model.model.%.*s.lora_A.weight", (int)l, t[i].name);
        ts[k] = (ta_tensor){nm[k], SMELT_DT_F32, 2, {RANK, t[i].cols}, vals};
        k++;
        snprintf(nm[k], sizeof nm[k], "base_model.model.%.*s.lora_B.weight", (int)l, t[i].name);
        ts[k] = (ta_tensor){nm[k], SMELT_DT_F32, 2, {t[i].rows, RANK}, vals};
        k++;
    }
    ta_write_adapter(dir,
                     "{\"peft_type\": \"LORA\", \"r\": 16, \"lora_alpha\": 32, \"target_modules\": [\"q_proj\", "
                     "\"k_proj\", \"v_proj\", \"o_proj\", \"gate_proj\", \"up_proj\", \"down_proj\"]}",
                     ts, k);
    free(ts);
    free(nm);
}

/* Run smelt-merge; returns its peak RSS in MB, seconds in *secs. */
static double run_merge(const char *tool, const char *base, const char *ad, const char *out, double *secs)
{
    double t0 = smelt_now();
    pid_t pid = fork();
    if (pid == 0) {
        execl(tool, tool, "-q", "--base", base, "--lora", ad, "-o", out, (char *)NULL);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
        fprintf(stderr, "bench_merge: smelt-merge failed (status %d)\n", status);
        return -1;
    }
    *secs = smelt_now() - t0;
    return (double)ru.ru_maxrss / 1024.0;
}

int main(void)
{
    char dir[4096], tool[4096];
    tu_tool(tool, sizeof tool, "smelt-merge");
    if (access(tool, X_OK)) {
        fprintf(stderr, "bench_merge: %s not built\n", tool);
        return 1;
    }
    if (tu_mkdtemp(dir, sizeof dir)) return 1;
    int sizes[2] = {6, 24};
    double peak[2];
    int ok = 1;
    for (int k = 0; k < 2; k++) {
        char base[4200], ad[4200], out[4200];
        snprintf(base, sizeof base, "%s/base%d", dir, k);
        snprintf(ad, sizeof ad, "%s/lora%d", dir, k);
        snprintf(out, sizeof out, "%s/out%d", dir, k);
        uint64_t bytes = write_model(base, sizes[k]);
        write_adapter(ad, sizes[k]);
        double secs = 0;
        peak[k] = run_merge(tool, base, ad, out, &secs);
        if (peak[k] < 0) ok = 0;
        else
            printf("merge %2d layers (%.2f GB bf16, LoRA r %d on %d projections): peak RSS %.1f MB, %.1f s, %.0f MB/s\n",
                   sizes[k], (double)bytes / 1e9, RANK, 7 * sizes[k], peak[k], secs, (double)bytes / 1e6 / secs);
        tu_rmtree(base);
        tu_rmtree(out);
        char mf[4300];
        snprintf(mf, sizeof mf, "%s.xxh64", out);
        remove(mf);
    }
    tu_rmtree(dir);
    if (!ok) return 1;
    printf("peak RSS ratio large/small model: %.2f (model size ratio %.2f); largest tensor %.0f MB (embeddings, "
           "written straight from the mapped base); bound %.0f MB: %s\n",
           peak[1] / peak[0], (double)(2 * VOCAB * HID + 24 * 51.4e6) / (2 * VOCAB * HID + 6 * 51.4e6),
           (double)VOCAB * HID * 2 / 1e6, BOUND_MB, peak[0] < BOUND_MB && peak[1] < BOUND_MB ? "ok" : "EXCEEDED");
    return peak[0] < BOUND_MB && peak[1] < BOUND_MB ? 0 : 1;
}
