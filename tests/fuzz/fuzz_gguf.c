/* fuzz_gguf.c — libFuzzer target for the GGUF reader: parse, then touch everything the
 * reader hands out (every KV value, every tensor's first and last byte). */
#include <stddef.h>
#include <stdint.h>

#include "formats/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    smelt_gguf *g;
    smelt_err e;
    if (smelt_gguf_open_mem(data, size, "fuzz", SMELT_GGUF_META_ONLY, &g, &e) != 0) return 0;
    char buf[256];
    for (uint64_t i = 0; i < smelt_gguf_n_kv(g); i++) smelt_gguf_kv_format(smelt_gguf_kv_at(g, i), buf, sizeof buf, 4);
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < smelt_gguf_n_tensors(g); i++) {
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
        if (t->data && t->nbytes) sink ^= t->data[0] ^ t->data[t->nbytes - 1];
        (void)smelt_gguf_find_tensor(g, t->name);
    }
    (void)sink;
    smelt_gguf_close(g);
    return 0;
}
