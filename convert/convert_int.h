/* convert_int.h — the plan structure shared by plan.c (deciding) and convert.c (writing).
 * Layer: convert. Private to convert/. */
#ifndef SMELT_CONVERT_INT_H
#define SMELT_CONVERT_INT_H

#include "convert/config.h"
#include "convert/convert.h"
#include "convert/meta.h"
#include "convert/vocab.h"

struct smelt_convert_plan {
    const smelt_tsrc *src;
    smelt_convert_opts opts;
    smelt_kvs kv;
    smelt_cv_tensor *t;
    size_t n, cap;
    int outtype;          /* resolved */
    uint32_t file_type;
    smelt_hparams hp;
    smelt_cv_vocab_info vocab;
    smelt_param_count pc;
    char *config_path, *tok_dir;
    float *rope_freqs;    /* computed rope_freqs.weight (Llama 3 RoPE scaling), or NULL */
};

#endif
