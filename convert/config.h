/* config.h — an HF config.json read as one of the architectures of formats/arch.h: its
 * hyperparameters and the "<arch>.*" GGUF keys, in the order and with the types
 * llama.cpp's converter writes. Layer: convert. Includes formats/, kvs.h, jansson. */
#ifndef SMELT_CONVERT_CONFIG_H
#define SMELT_CONVERT_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "convert/kvs.h"
#include "formats/arch.h"
#include "formats/base/notes.h"
#include "formats/base/err.h"

/* Identify the architecture (hp->arch, hp->hf_arch) and read the hyperparameters the
 * conversion depends on. cfg_path names config.json in messages. Unknown architecture:
 * EUNSUPPORTED naming it and the supported list; a missing or mistyped key: EFORMAT naming
 * the key; a setting llama.cpp's graph would not reproduce (Qwen3-MoE's norm_topk_prob
 * false, dense layers in a MoE model): EUNSUPPORTED. */
int smelt_hparams_read(json_t *config, const char *cfg_path, smelt_hparams *hp, smelt_err *e);

/* Append the architecture KVs llama.cpp's converter writes (block_count … file_type, then
 * what the architecture's converter class adds: vocab_size and rope.dimension_count for
 * llama, expert_feed_forward_length for qwen3moe), in its order. */
int smelt_arch_kvs(json_t *config, const char *cfg_path, const smelt_hparams *hp, uint32_t file_type, smelt_kvs *kv,
                   const smelt_notes *notes, smelt_err *e);

/* The shared model check (formats/model_check.h) on a plan's KVs and output tensors, before
 * anything is written: what reaches it was not refused by smelt_hparams_read() and
 * smelt_arch_kvs() with a config.json key name, so it is a backstop for combinations
 * (tokenizer arrays, tensor shapes). `dir` names the model directory in messages. */
struct smelt_cv_tensor;
int smelt_arch_check_plan(const smelt_kvs *kv, const struct smelt_cv_tensor *t, size_t n, bool vocab_only, const char *dir,
                          smelt_err *e);

/* Llama 3 RoPE scaling (rope_type "llama3"): the n_rot/2 frequency divisors llama.cpp's
 * converter computes from factor, low/high_freq_factor and original_max_position_embeddings
 * and writes as rope_freqs.weight. Returns 1 and fills out (hp->n_rot / 2 floats) when the
 * config asks for it, 0 when not, negative on a bad value. */
int smelt_config_rope_freqs(json_t *config, const char *cfg_path, const smelt_hparams *hp, float *out, smelt_err *e);

#endif
