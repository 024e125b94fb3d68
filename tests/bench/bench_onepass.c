/* bench_onepass.c — HF + LoRA → Q4_K_M in one pass (smelt-merge --gguf --outtype Q4_K_M) on
 * a synthetic Mixtral-8x7B-shaped layer (hidden 4096, 8 experts of 14336, bf16, 2.9 GB; a
 * LoRA of rank 16 on every projection and expert), generated in $TMPDIR and deleted
 * afterwards. Prints the one pass's peak RSS against the largest tensor (a stacked
 * ffn_*_exps, 940 MB in the f16 GGUF; the target is at most twice that) and its time
 * against the three-step path (smelt-merge --gguf --outtype f16, then smelt-quantize), and
 * checks that both outputs are the same bytes. */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "formats/base/progress.h"
#include "tests/common/adapter.h"
#include "tests/common/testutil.h"

#define HID 4096
#define FF 14336
#define KV 1024 /* 8 KV heads of 128 */
#define EXPERTS 8
#define RANK 16

typedef struct {
    char name[96];
    uint64_t rows, cols;
} tdesc;

/* The layer's HF tensors; vocabulary: the sample's tokenizer (4096 tokens). */
static size_t layer_tensors(tdesc *t)
{
    size_t n = 0;
#define ADD(r, c, ...) (snprintf(t[n].name, sizeof t[n].name, __VA_ARGS__), t[n].rows = (r), t[n++].cols = (c))
    ADD(4096, HID, "model.embed_tokens.weight");
    ADD(HID, HID, "model.layers.0.self_attn.q_proj.weight");
    ADD(KV, HID, "model.layers.0.self_attn.k_proj.weight");
    ADD(KV, HID, "model.layers.0.self_attn.v_proj.weight");
    ADD(HID, HID, "model.layers.0.self_attn.o_proj.weight");
    ADD(EXPERTS, HID, "model.layers.0.block_sparse_moe.gate.weight");
    for (int x = 0; x < EXPERTS; x++) {
        ADD(FF, HID, "model.layers.0.block_sparse_moe.experts.%d.w1.weight", x);
        ADD(HID, FF, "model.layers.0.block_sparse_moe.experts.%d.w2.weight", x);
        ADD(FF, HID, "model.layers.0.block_sparse_moe.experts.%d.w3.weight", x);
    }
    ADD(1, HID, "model.layers.0.input_layernorm.weight");
    ADD(1, HID, "model.layers.0.post_attention_layernorm.weight");
    ADD(1, HID, "model.norm.weight");
    ADD(4096, HID, "lm_head.weight");
#undef ADD
    return n;
}

static uint64_t write_base(const char *dir)
{
    tdesc d[64];
    ta_tensor t[64];
    size_t n = layer_tensors(d);
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        bool vec = d[i].rows == 1;
        t[i] = (ta_tensor){d[i].name, SMELT_DT_BF16, vec ? 1 : 2, {vec ? d[i].cols : d[i].rows, d[i].cols}, NULL};
        bytes += d[i].rows * d[i].cols * 2;
    }
    char cfg[1024];
    snprintf(cfg, sizeof cfg,
             "{\"architectures\": [\"MixtralForCausalLM\"], \"model_type\": \"mixtral\", \"hidden_size\": %d,"
             " \"intermediate_size\": %d, \"num_attention_heads\": 32, \"num_key_value_heads\": 8,"
             " \"num_hidden_layers\": 1, \"num_local_experts\": %d, \"num_experts_per_tok\": 2,"
             " \"vocab_size\": 4096, \"rms_norm_eps\": 1e-05, \"rope_theta\": 1000000.0,"
             " \"max_position_embeddings\": 4096, \"bos_token_id\": 1, \"eos_token_id\": 2, \"torch_dtype\": \"bfloat16\"}\n",
             HID, FF, EXPERTS);
    if (ta_write_base(dir, cfg, t, n)) return 0;
    static const char *const tok[] = {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"};
    for (size_t i = 0; i < 3; i++) {
        char src[4200], dst[4300];
        tu_path(src, sizeof src, "samples/tiny-mixtral");
        snprintf(src + strlen(src), sizeof src - strlen(src), "/%s", tok[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, tok[i]);
        size_t len;
        uint8_t *b = tu_read(src, &len);
        if (!b || tu_write(dst, b, len)) return 0;
        free(b);
    }
    return bytes;
}

static int write_lora(const char *dir)
{
    tdesc d[64];
    size_t n = layer_tensors(d), k = 0;
    ta_tensor *ts = calloc(2 * n, sizeof *ts);
    char (*nm)[160] = calloc(2 * n, sizeof *nm);
    float *vals = malloc((size_t)FF * RANK * sizeof *vals);
    if (!ts || !nm || !vals) return -1;
    for (size_t i = 0; i < (size_t)FF * RANK; i++) vals[i] = (float)((int)(i % 13) - 6) * 0.01f;
    for (size_t i = 0; i < n; i++) {
        if (!strstr(d[i].name, "_proj") && !strstr(d[i].name, "experts")) continue;
        int l = (int)(strlen(d[i].name) - strlen(".weight"));
        snprintf(nm[k], sizeof nm[k], "base_model.model.%.*s.lora_A.weight", l, d[i].name);
        ts[k] = (ta_tensor){nm[k], SMELT_DT_F32, 2, {RANK, d[i].cols}, vals};
        k++;
        snprintf(nm[k], sizeof nm[k], "base_model.model.%.*s.lora_B.weight", l, d[i].name);
        ts[k] = (ta_tensor){nm[k], SMELT_DT_F32, 2, {d[i].rows, RANK}, vals};
        k++;
    }
    int rc = ta_write_adapter(dir,
                              "{\"peft_type\": \"LORA\", \"r\": 16, \"lora_alpha\": 32, \"target_modules\": [\"q_proj\", "
                              "\"k_proj\", \"v_proj\", \"o_proj\", \"w1\", \"w2\", \"w3\"]}",
                              ts, k);
    free(ts);
    free(nm);
    free(vals);
    return rc;
}

/* Run a tool (argv[0] = its path); peak RSS in MB, wall seconds in *secs, CPU seconds (user
 * + system, the steadier figure on a shared machine) in *cpu; -1 on failure. */
static double run(char *const argv[], double *secs, double *cpu)
{
    double t0 = smelt_now();
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
        fprintf(stderr, "bench_onepass: %s failed (status %d)\n", argv[0], status);
        return -1;
    }
    *secs = smelt_now() - t0;
    *cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    return (double)ru.ru_maxrss / 1024.0;
}

int main(void)
{
    char dir[4096], merge[4096], quant[4096];
    tu_tool(merge, sizeof merge, "smelt-merge");
    tu_tool(quant, sizeof quant, "smelt-quantize");
    if (access(merge, X_OK) || access(quant, X_OK)) {
        fprintf(stderr, "bench_onepass: smelt-merge or smelt-quantize not built\n");
        return 1;
    }
    if (tu_mkdtemp(dir, sizeof dir)) return 1;
    char base[4200], lora[4200], one[4200], f16[4200], three[4200];
    snprintf(base, sizeof base, "%s/base", dir);
    snprintf(lora, sizeof lora, "%s/lora", dir);
    snprintf(one, sizeof one, "%s/one/m.gguf", dir);
    snprintf(f16, sizeof f16, "%s/three/m.gguf", dir);
    snprintf(three, sizeof three, "%s/three/q.gguf", dir);
    char d1[4300], d3[4300];
    snprintf(d1, sizeof d1, "%s/one", dir);
    snprintf(d3, sizeof d3, "%s/three", dir);
    mkdir(d1, 0755);
    mkdir(d3, 0755);
    uint64_t bytes = write_base(base);
    int ok = bytes > 0 && !write_lora(lora);
    double t1 = 0, tm = 0, tq = 0, c1 = 0, cm = 0, cq = 0, r1 = -1, rm = -1, rq = -1;
    if (ok) {
        char *a1[] = {merge, "-q", "--base", base, "--lora", lora, "--gguf", one, "--outtype", "Q4_K_M", NULL};
        char *am[] = {merge, "-q", "--base", base, "--lora", lora, "--gguf", f16, "--outtype", "f16", NULL};
        char *aq[] = {quant, "-q", f16, three, "Q4_K_M", NULL};
        r1 = run(a1, &t1, &c1);
        rm = run(am, &tm, &cm);
        rq = run(aq, &tq, &cq);
        ok = r1 > 0 && rm > 0 && rq > 0;
    }
    int same = ok && tu_cmp_files(one, three) == 0;
    tu_rmtree(dir);
    if (!ok) return 1;
    double largest = (double)EXPERTS * FF * HID * 2 / 1e6; /* MB: a stacked expert tensor in f16 */
    printf("Mixtral-shaped layer (%.2f GB bf16, LoRA r %d on 4 projections and %d experts) -> Q4_K_M, 2 threads\n",
           (double)bytes / 1e9, RANK, 3 * EXPERTS);
    printf("one pass (smelt-merge --gguf --outtype Q4_K_M): peak RSS %.1f MB = %.2f x the largest tensor (%.0f MB f16), "
           "%.1f s (CPU %.1f s)\n",
           r1, r1 / largest, largest, t1, c1);
    printf("three steps: smelt-merge --outtype f16 %.1f s (CPU %.1f s, peak %.1f MB) + smelt-quantize %.1f s (CPU %.1f s, "
           "peak %.1f MB) = %.1f s (CPU %.1f s); one pass / three steps: %.2f (CPU %.2f)\n",
           tm, cm, rm, tq, cq, rq, tm + tq, cm + cq, t1 / (tm + tq), c1 / (cm + cq));
    printf("outputs byte-identical: %s; peak RSS <= 2 x largest tensor: %s\n", same ? "yes" : "NO",
           r1 <= 2 * largest ? "ok" : "EXCEEDED");
    return same && r1 <= 2 * largest ? 0 : 1;
}
