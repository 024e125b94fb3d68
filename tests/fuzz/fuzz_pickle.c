/* fuzz_pickle.c — libFuzzer target for the allow-listed state-dict unpickler. */
#include <stddef.h>
#include <stdint.h>

#include "formats/pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    smelt_pk_dict *d;
    smelt_err e;
    if (smelt_pk_load_state_dict(data, size, "fuzz", "data.pkl", &d, &e) != 0) return 0;
    volatile uint64_t sink = 0;
    for (size_t i = 0; i < smelt_pk_count(d); i++) {
        const smelt_pk_tensor *t = smelt_pk_at(d, i);
        sink ^= t->nelements ^ t->offset ^ (uint64_t)t->name[0] ^ (uint64_t)t->storage[0];
    }
    (void)sink;
    smelt_pk_free(d);
    return 0;
}
