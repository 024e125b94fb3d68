/* fuzz_spm.c — libFuzzer target for the SentencePiece tokenizer.model protobuf reader. */
#include <stddef.h>
#include <stdint.h>

#include "formats/tokfiles.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    smelt_spm *s;
    smelt_err e;
    if (smelt_spm_load_mem(data, size, "fuzz", &s, &e) != 0) return 0;
    volatile uint32_t sink = 0;
    for (size_t i = 0; i < s->n_pieces; i++) sink ^= s->pieces[i].len ^ (uint32_t)s->pieces[i].piece[0];
    (void)sink;
    smelt_spm_free(s);
    return 0;
}
