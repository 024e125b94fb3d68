/* make_layer — write the synthetic Mixtral-shaped layer (tests/common/mixtral_layer.h) for
 * the bench scripts: a one-layer Mixtral model with SMELT_BENCH_EXPERTS experts (default
 * 1; 8 = a full Mixtral-8x7B layer, 2.8 GB of experts), and with --imatrix its synthetic
 * importance matrix (a made-up profile, not a statistic of real activations).
 *   make_layer OUT.gguf [--imatrix IMX.gguf] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/common/mixtral_layer.h"

int main(int argc, char **argv)
{
    const char *ev = getenv("SMELT_BENCH_EXPERTS");
    int n_exp = ev ? atoi(ev) : 1;
    if (!(argc == 2 || (argc == 4 && !strcmp(argv[2], "--imatrix"))) || n_exp < 1 || n_exp > 8) {
        fprintf(stderr, "usage: [SMELT_BENCH_EXPERTS=1..8] make_layer OUT.gguf [--imatrix IMX.gguf]\n");
        return 2;
    }
    smelt_err e;
    int rc = ml_write_model(argv[1], (uint32_t)n_exp, &e);
    if (!rc && argc == 4) rc = ml_write_imatrix(argv[3], (uint32_t)n_exp, &e);
    if (rc) fprintf(stderr, "make_layer: %s\n", e.msg);
    return rc ? 1 : 0;
}
