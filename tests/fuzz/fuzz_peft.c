/* fuzz_peft.c — libFuzzer target for the PEFT adapter reader: the input is the text of
 * adapter_config.json, a NUL byte, then the bytes of adapter_model.safetensors. Exercises
 * config validation, the Python-regex translation, key classification and pairing, and
 * the target / pattern matching on the modules found. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "formats/peft.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    if (!nul) return 0;
    size_t clen = (size_t)(nul - data);
    smelt_peft *p;
    smelt_err e;
    if (smelt_peft_open_mem("fuzz", (const char *)data, clen, nul + 1, size - clen - 1, &p, &e) != 0) return 0;
    volatile size_t sink = 0;
    for (size_t i = 0; i < smelt_peft_n_modules(p); i++) {
        const smelt_peft_module *m = smelt_peft_module_at(p, i);
        sink += smelt_peft_targets(p, m->name, 0) + smelt_peft_is_module_to_save(p, m->name);
        sink += (size_t)smelt_peft_layer_index(m->name, NULL);
        sink += smelt_peft_pattern_key(json_object_get(smelt_peft_config(p), "rank_pattern"), m->name) != NULL;
    }
    for (size_t i = 0; i < smelt_peft_n_full(p); i++) sink += strlen(smelt_peft_full_at(p, i)->target);
    (void)sink;
    smelt_peft_close(p);
    return 0;
}
