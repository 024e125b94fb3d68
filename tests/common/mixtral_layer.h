/* mixtral_layer.h — the synthetic Mixtral-8x7B-shaped layer of `make bench` (random f16
 * weights, generated on the spot, never committed): 4096 × 14336 experts, n_exp of them
 * (1..8; 8 = one full Mixtral-8x7B layer). Two forms:
 *   - the expert tensors alone (blk.0.ffn_up_exps, blk.0.ffn_down_exps under llama
 *     metadata that says 8 experts): not a model smelt's model check or llama.cpp would
 *     load, only an input for throughput runs that skip the check (bench_quantize);
 *   - a one-layer Mixtral model around n_exp experts (attention, norms, router, gate/up/
 *     down experts, a 512-token vocabulary): the tools take it as they take a real model
 *     (bench scripts, through tests/bench/make_layer).
 * And a synthetic importance matrix for the model form. */
#ifndef SMELT_TESTS_MIXTRAL_LAYER_H
#define SMELT_TESTS_MIXTRAL_LAYER_H

#include <stdint.h>

#include "formats/base/err.h"
#include "tests/common/quantize_plans.h"

/* The model form's shape: 1 layer, Mixtral-8x7B's widths, n_exp experts. */
qr_shape ml_shape(uint32_t n_exp);
/* The expert tensors alone (see above), a row of 14336 f16 values at a time. */
int ml_write_experts(const char *path, uint32_t n_exp, smelt_err *e);
/* The one-layer model (qr_write_model with a small vocabulary). */
int ml_write_model(const char *path, uint32_t n_exp, smelt_err *e);
/* A GGUF imatrix (formats/imatrix's format) for the model form: an entry for every matrix
 * a forward pass multiplies with (not token_embd), keyed by the model's tensor names, with
 * per-expert counts. */
int ml_write_imatrix(const char *path, uint32_t n_exp, smelt_err *e);

#endif
