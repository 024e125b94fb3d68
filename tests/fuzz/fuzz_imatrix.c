/* fuzz_imatrix.c — libFuzzer target for the imatrix readers (GGUF and legacy .dat): parse,
 * then compute every entry's importance weights and look each entry up by name. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "formats/imatrix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    smelt_imx *m;
    smelt_err e;
    if (smelt_imx_read_mem(data, size, "fuzz", &m, &e) != 0) return 0;
    for (size_t i = 0; i < m->n_entries; i++) {
        const smelt_imx_entry *en = &m->entries[i];
        float *w = malloc(en->n_values * sizeof *w);
        if (w) (void)smelt_imx_weights(m, en, w, NULL, &e);
        free(w);
        (void)smelt_imx_find(m, en->name);
    }
    smelt_imx_free(m);
    return 0;
}
