/* arch.c — the architecture table (see arch.h). Names are llama.cpp's (facts of the GGUF
 * format: gguf-py/gguf/constants.py, src/llama-arch.cpp); which tensors each architecture
 * has is what llama.cpp's loader creates for it (src/models/<arch>.cpp). */
#include "arch.h"

#include <stdio.h>
#include <string.h>

#define R SMELT_TP_REQ
#define O SMELT_TP_OPT

/* tensors every architecture has: the embeddings, the norms, attention, and the dense or
 * expert feed-forward (which one is required follows expert_count) */
#define COMMON_WEIGHTS                                                                                                  \
    [SMELT_TK_TOKEN_EMBD] = R, [SMELT_TK_OUTPUT_NORM] = R, [SMELT_TK_OUTPUT] = O, [SMELT_TK_ATTN_NORM] = R,             \
    [SMELT_TK_ATTN_QKV] = O, [SMELT_TK_ATTN_Q] = R, [SMELT_TK_ATTN_K] = R, [SMELT_TK_ATTN_V] = R,                        \
    [SMELT_TK_ATTN_OUT] = R, [SMELT_TK_FFN_NORM] = R
#define DENSE_WEIGHTS [SMELT_TK_FFN_GATE] = R, [SMELT_TK_FFN_DOWN] = R, [SMELT_TK_FFN_UP] = R
#define MOE_WEIGHTS [SMELT_TK_FFN_GATE_INP] = R, [SMELT_TK_FFN_DOWN_EXPS] = R, [SMELT_TK_FFN_UP_EXPS] = R
#define QKV_BIASES [SMELT_TK_ATTN_QKV] = O, [SMELT_TK_ATTN_Q] = O, [SMELT_TK_ATTN_K] = O, [SMELT_TK_ATTN_V] = O

static const smelt_arch k_archs[SMELT_ARCH_COUNT] = {
    [SMELT_ARCH_LLAMA] =
        {
            .id = SMELT_ARCH_LLAMA,
            .name = "llama",
            .family = "Llama, Mistral, Mixtral",
            .hf = {"LlamaForCausalLM", "LLaMAForCausalLM", "MistralForCausalLM", "MixtralForCausalLM"},
            .model_type = {"llama", "mistral", "mixtral"},
            .permute_qk = true,
            .llama_keys = true,
            .ffn = SMELT_FFN_DENSE | SMELT_FFN_MOE,
            .expert_order = {SMELT_TK_FFN_GATE_EXPS, SMELT_TK_FFN_DOWN_EXPS, SMELT_TK_FFN_UP_EXPS},
            .hf_moe = "block_sparse_moe",
            .hf_expert = {"w1", "w2", "w3"},
            /* llama.cpp's llama loader: a gate-less expert FFN and shared experts are allowed */
            .weight = {COMMON_WEIGHTS, DENSE_WEIGHTS, MOE_WEIGHTS, [SMELT_TK_ROPE_FREQS] = O,
                       [SMELT_TK_FFN_GATE_EXPS] = O, [SMELT_TK_FFN_GATE_SHEXP] = R, [SMELT_TK_FFN_UP_SHEXP] = R,
                       [SMELT_TK_FFN_DOWN_SHEXP] = R},
            .bias = {QKV_BIASES, [SMELT_TK_ATTN_OUT] = O, [SMELT_TK_FFN_GATE] = O, [SMELT_TK_FFN_DOWN] = O,
                     [SMELT_TK_FFN_UP] = O},
        },
    [SMELT_ARCH_QWEN2] =
        {
            .id = SMELT_ARCH_QWEN2,
            .name = "qwen2",
            .family = "Qwen2",
            .hf = {"Qwen2ForCausalLM"},
            .model_type = {"qwen2"},
            .rope_neox = true,
            .ffn = SMELT_FFN_DENSE,
            .weight = {COMMON_WEIGHTS, DENSE_WEIGHTS},
            .bias = {QKV_BIASES},
        },
    [SMELT_ARCH_QWEN3] =
        {
            .id = SMELT_ARCH_QWEN3,
            .name = "qwen3",
            .family = "Qwen3",
            .hf = {"Qwen3ForCausalLM"},
            .model_type = {"qwen3"},
            .rope_neox = true,
            .ffn = SMELT_FFN_DENSE,
            .weight = {COMMON_WEIGHTS, DENSE_WEIGHTS, [SMELT_TK_ATTN_Q_NORM] = R, [SMELT_TK_ATTN_K_NORM] = R},
            .bias = {QKV_BIASES},
        },
    [SMELT_ARCH_QWEN3MOE] =
        {
            .id = SMELT_ARCH_QWEN3MOE,
            .name = "qwen3moe",
            .family = "Qwen3-MoE",
            .hf = {"Qwen3MoeForCausalLM"},
            .model_type = {"qwen3_moe"},
            .rope_neox = true,
            .expert_ff = true,
            .ffn = SMELT_FFN_MOE,
            .expert_order = {SMELT_TK_FFN_DOWN_EXPS, SMELT_TK_FFN_GATE_EXPS, SMELT_TK_FFN_UP_EXPS},
            .hf_moe = "mlp",
            .hf_expert = {"gate_proj", "down_proj", "up_proj"},
            .weight = {COMMON_WEIGHTS, MOE_WEIGHTS, [SMELT_TK_FFN_GATE_EXPS] = R, [SMELT_TK_ATTN_Q_NORM] = R,
                       [SMELT_TK_ATTN_K_NORM] = R},
            .bias = {QKV_BIASES},
        },
};

#undef R
#undef O

const char *const smelt_arch_names = "llama, qwen2, qwen3, qwen3moe";
const char *const smelt_arch_hf_names = "LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, Qwen2ForCausalLM, "
                                        "Qwen3ForCausalLM, Qwen3MoeForCausalLM";

const smelt_arch *smelt_arch_at(smelt_arch_id id) { return id < SMELT_ARCH_COUNT ? &k_archs[id] : NULL; }

const smelt_arch *smelt_arch_by_name(const char *name, size_t n)
{
    for (int i = 0; i < SMELT_ARCH_COUNT; i++)
        if (strlen(k_archs[i].name) == n && !memcmp(k_archs[i].name, name, n)) return &k_archs[i];
    return NULL;
}

const smelt_arch *smelt_arch_by_hf(const char *cls, const char *model_type)
{
    for (int i = 0; i < SMELT_ARCH_COUNT; i++) {
        const smelt_arch *a = &k_archs[i];
        if (cls) {
            for (int k = 0; k < 6 && a->hf[k]; k++)
                if (!strcmp(cls, a->hf[k])) return a;
        } else if (model_type) {
            for (int k = 0; k < 4 && a->model_type[k]; k++)
                if (!strcmp(model_type, a->model_type[k])) return a;
        }
    }
    return NULL;
}

const char *smelt_arch_key(const smelt_arch *a, const char *suffix, char *buf, size_t n)
{
    snprintf(buf, n, "%s.%s", a->name, suffix);
    return buf;
}

static const char *const k_stems[SMELT_TK_COUNT] = {
    [SMELT_TK_TOKEN_EMBD] = "token_embd",         [SMELT_TK_OUTPUT_NORM] = "output_norm",
    [SMELT_TK_OUTPUT] = "output",                 [SMELT_TK_ROPE_FREQS] = "rope_freqs",
    [SMELT_TK_ATTN_NORM] = "attn_norm",           [SMELT_TK_ATTN_QKV] = "attn_qkv",
    [SMELT_TK_ATTN_Q] = "attn_q",                 [SMELT_TK_ATTN_K] = "attn_k",
    [SMELT_TK_ATTN_V] = "attn_v",                 [SMELT_TK_ATTN_Q_NORM] = "attn_q_norm",
    [SMELT_TK_ATTN_K_NORM] = "attn_k_norm",       [SMELT_TK_ATTN_OUT] = "attn_output",
    [SMELT_TK_FFN_NORM] = "ffn_norm",             [SMELT_TK_FFN_GATE] = "ffn_gate",
    [SMELT_TK_FFN_DOWN] = "ffn_down",             [SMELT_TK_FFN_UP] = "ffn_up",
    [SMELT_TK_FFN_GATE_INP] = "ffn_gate_inp",     [SMELT_TK_FFN_GATE_EXPS] = "ffn_gate_exps",
    [SMELT_TK_FFN_DOWN_EXPS] = "ffn_down_exps",   [SMELT_TK_FFN_UP_EXPS] = "ffn_up_exps",
    [SMELT_TK_FFN_GATE_SHEXP] = "ffn_gate_shexp", [SMELT_TK_FFN_UP_SHEXP] = "ffn_up_shexp",
    [SMELT_TK_FFN_DOWN_SHEXP] = "ffn_down_shexp",
};

const char *smelt_tk_stem(smelt_tk k) { return k < SMELT_TK_COUNT ? k_stems[k] : "?"; }

void smelt_tk_name(smelt_tk k, int64_t bid, bool bias, char *buf, size_t n)
{
    if (!smelt_tk_per_layer(k)) snprintf(buf, n, "%s.%s", smelt_tk_stem(k), bias ? "bias" : "weight");
    else snprintf(buf, n, "blk.%lld.%s.%s", (long long)bid, smelt_tk_stem(k), bias ? "bias" : "weight");
}

static const char *const k_hf[SMELT_TK_COUNT] = {
    [SMELT_TK_TOKEN_EMBD] = "model.embed_tokens",        [SMELT_TK_OUTPUT_NORM] = "model.norm",
    [SMELT_TK_OUTPUT] = "lm_head",                       [SMELT_TK_ATTN_NORM] = "input_layernorm",
    [SMELT_TK_ATTN_Q] = "self_attn.q_proj",              [SMELT_TK_ATTN_K] = "self_attn.k_proj",
    [SMELT_TK_ATTN_V] = "self_attn.v_proj",              [SMELT_TK_ATTN_Q_NORM] = "self_attn.q_norm",
    [SMELT_TK_ATTN_K_NORM] = "self_attn.k_norm",         [SMELT_TK_ATTN_OUT] = "self_attn.o_proj",
    [SMELT_TK_FFN_NORM] = "post_attention_layernorm",    [SMELT_TK_FFN_GATE] = "mlp.gate_proj",
    [SMELT_TK_FFN_DOWN] = "mlp.down_proj",               [SMELT_TK_FFN_UP] = "mlp.up_proj",
};

const char *smelt_tk_hf(smelt_tk k) { return k < SMELT_TK_COUNT ? k_hf[k] : NULL; }
