/* fuzz_torchzip.c — libFuzzer target for the PyTorch zip reader: index the archive, then
 * read (inflate, CRC-check) every entry. */
#include <stddef.h>
#include <stdint.h>

#include "formats/torchzip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    smelt_tz *z;
    smelt_err e;
    if (smelt_tz_open_mem(data, size, "fuzz", &z, &e) != 0) return 0;
    smelt_scratch sc = {0};
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < smelt_tz_n_entries(z); i++) {
        const smelt_tz_entry *t = smelt_tz_entry_at(z, i);
        if (t->size > (64u << 20)) continue; /* the reader allows it; the fuzzer's memory does not */
        const void *d;
        if (smelt_tz_read(z, i, &d, &sc, &e) == 0 && t->size) sink ^= ((const uint8_t *)d)[t->size - 1];
        (void)smelt_tz_find(z, t->name);
    }
    (void)sink;
    smelt_scratch_free(&sc);
    smelt_tz_close(z);
    return 0;
}
