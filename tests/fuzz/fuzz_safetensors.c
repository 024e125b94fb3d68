/* fuzz_safetensors.c — libFuzzer target for the safetensors reader. */
#include <stddef.h>
#include <stdint.h>

#include "formats/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    smelt_st *st;
    smelt_err e;
    if (smelt_st_open_mem(data, size, "fuzz", &st, &e) != 0) return 0;
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < smelt_st_n_tensors(st); i++) {
        const smelt_st_tensor *t = smelt_st_tensor_at(st, i);
        if (t->end > t->begin) sink ^= t->data[0] ^ t->data[t->end - t->begin - 1];
        (void)smelt_st_find(st, t->name);
    }
    (void)sink;
    smelt_st_close(st);
    return 0;
}
