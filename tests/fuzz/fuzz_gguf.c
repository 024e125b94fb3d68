/* fuzz_gguf.c — libFuzzer target for the GGUF reader: parse, then touch everything the
 * reader hands out (every KV value, every tensor's first and last byte), run the model check
 * every tool applies (formats/model_check.h) and the non-finite scan of float tensors. */
#include <stddef.h>
#include <stdint.h>

#include "formats/base/finite.h"
#include "formats/ggml_types.h"
#include "formats/gguf.h"
#include "formats/model_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The element format of a float GGUF type, or -1. */
static int float_format(int type)
{
    switch (type) {
    case SMELT_TYPE_F32: return SMELT_FIN_F32;
    case SMELT_TYPE_F16: return SMELT_FIN_F16;
    case SMELT_TYPE_BF16: return SMELT_FIN_BF16;
    default: return -1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    smelt_gguf *g;
    smelt_err e;
    if (smelt_gguf_open_mem(data, size, "fuzz", SMELT_GGUF_META_ONLY, &g, &e) != 0) return 0;
    char buf[256];
    for (uint64_t i = 0; i < smelt_gguf_n_kv(g); i++) smelt_gguf_kv_format(smelt_gguf_kv_at(g, i), buf, sizeof buf, 4);
    volatile uint64_t sink = 0;
    for (uint64_t i = 0; i < smelt_gguf_n_tensors(g); i++) {
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
        if (t->data && t->nbytes) sink ^= t->data[0] ^ t->data[t->nbytes - 1];
        (void)smelt_gguf_find_tensor(g, t->name);
        int fmt = float_format(t->type);
        if (fmt >= 0 && t->data && t->nbytes) {
            double v;
            sink ^= smelt_nonfinite_count((smelt_fin_fmt)fmt, t->data, t->nelements);
            sink ^= smelt_nonfinite_first((smelt_fin_fmt)fmt, t->data, t->nelements, &v);
        }
    }
    smelt_mc_hparams hp;
    (void)smelt_mc_check_gguf(g, SMELT_MC_OTHER_ARCH_OK | SMELT_MC_NON_MODEL_OK, &hp, &e);
    (void)sink;
    smelt_gguf_close(g);
    return 0;
}
