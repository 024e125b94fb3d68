/* fuzz_bpe_json.c — libFuzzer target for the byte-level BPE path of the vocabulary converter:
 * the input is written as tokenizer.json into a scratch directory (one per process), read
 * by smelt_tokfiles_load and converted with config.json's vocab_size at 300. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/vocab.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64], path[96];

static void remove_dir(void) { remove(dir); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/smelt-fuzz-bpe-XXXXXX");
        if (!mkdtemp(dir)) return 0;
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        atexit(remove_dir);
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    smelt_tokfiles *tf = NULL;
    smelt_err e;
    if (smelt_tokfiles_load(dir, &tf, &e) == 0) {
        json_t *config = json_pack("{s:i}", "vocab_size", 300);
        smelt_kvs kv = {0};
        smelt_cv_vocab_info info;
        smelt_cv_vocab_kvs(tf, config, "config.json", 300, &kv, &info, NULL, &e);
        smelt_kvs_free(&kv);
        json_decref(config);
        smelt_tokfiles_free(tf);
    }
    remove(path);
    return 0;
}
