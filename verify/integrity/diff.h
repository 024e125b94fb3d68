/* diff.h — tensor-wise comparison of two models of the same kind (GGUF with GGUF,
 * safetensors/HF directory with safetensors/HF directory): which tensors are missing on
 * either side, which changed shape or type, which are bit-identical, and for the rest how
 * far apart their values are (decoded to f32: max |Δ|, RMSE, differing elements, and for
 * 16-bit types the elements more than one ulp apart); plus metadata differences.
 * Layer: verify. Includes formats/ and verify/integrity/checkpoint.h. */
#ifndef SMELT_DIFF_H
#define SMELT_DIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/base/err.h"
#include "formats/base/progress.h"
#include "verify/integrity/checkpoint.h"

typedef struct smelt_diff_opts {
    int n_threads;                  /* 0: one per CPU */
    bool values;                    /* compare values of tensors that are not bit-identical (default true) */
    const smelt_progress *progress; /* one step per tensor of A */
} smelt_diff_opts;

void smelt_diff_opts_default(smelt_diff_opts *o);

enum {
    SMELT_TD_IDENTICAL = 0, /* same shape, same type, same bytes */
    SMELT_TD_DIFFERENT = 1, /* same shape; type or bytes differ */
    SMELT_TD_SHAPE = 2,     /* shapes differ: values not compared */
    SMELT_TD_ONLY_A = 3,
    SMELT_TD_ONLY_B = 4,
};

typedef struct smelt_tensor_diff {
    const char *name;      /* borrowed from the models */
    int status;            /* SMELT_TD_* */
    int64_t ia, ib;        /* tensor indices in A and B (-1: absent) */
    bool same_type;
    bool compared;         /* values decoded on both sides and compared */
    uint64_t n_elements;
    uint64_t n_diff;       /* elements whose values differ (NaN equals NaN; +0 equals -0) */
    double max_abs;        /* largest |a - b| over elements finite on both sides */
    double rmse;           /* sqrt(mean (a - b)²) over those elements */
    uint64_t n_nonfinite;  /* elements where exactly one side is NaN/Inf, or both are but differ */
    /* When a 16-bit float type is involved (F16 or BF16 on either side; BF16 when both are
     * 16-bit but differ): distances counted in that format's ulps after rounding both
     * values to it. */
    bool ulp_counted;
    const char *ulp_type;  /* "f16" or "bf16" */
    uint64_t n_over_1ulp;  /* elements more than 1 ulp apart */
    uint64_t max_ulp;
} smelt_tensor_diff;

enum { SMELT_KD_ONLY_A = 0, SMELT_KD_ONLY_B = 1, SMELT_KD_DIFFERENT = 2 };

typedef struct smelt_kv_diff {
    char *key;
    int status;      /* SMELT_KD_* */
    char *a, *b;     /* values as text (NULL on the absent side) */
} smelt_kv_diff;

typedef struct smelt_diff_result {
    smelt_tensor_diff *t; /* A's tensors in order, then the tensors only B has */
    size_t n;
    smelt_kv_diff *kv;    /* GGUF KVs, or the first file's safetensors __metadata__ */
    size_t n_kv;
    uint64_t n_identical, n_different, n_shape, n_only_a, n_only_b;
    bool identical;       /* every tensor identical, none missing, no metadata difference */
} smelt_diff_result;

/* Compare a with b. Errors: EUNSUPPORTED for a GGUF compared with a safetensors checkpoint
 * (names would need mapping); ENOMEM. Differences are findings, not errors. Results do not
 * depend on the thread count. */
int smelt_diff_run(const smelt_checkpoint *a, const smelt_checkpoint *b, const smelt_diff_opts *o, smelt_diff_result *r,
                   smelt_err *e);
void smelt_diff_result_free(smelt_diff_result *r);

#endif
