/* integrity.h — integrity checks and hashes of a model (GGUF or safetensors): every tensor
 * read in full, xxh64 per tensor and over all tensor data, NaN/Inf counts of every tensor
 * smelt can decode; hash manifests in llama-gguf-hash's format, written and checked.
 * Layer: verify. Includes formats/ and verify/integrity/checkpoint.h.
 *
 * Hashes are llama-gguf-hash's: per tensor, XXH64(seed 0) of the tensor's data bytes; for
 * the model, XXH64 of all tensors' data bytes concatenated in file order (metadata and
 * padding excluded, so editing a KV does not change it). A manifest line reads
 *   "xxh64     <16 hex>  <label>:<tensor name>"   and the last one   "xxh64     <16 hex>  <label>"
 * so `llama-gguf-hash --check` accepts smelt's manifests and smelt accepts its. */
#ifndef SMELT_INTEGRITY_H
#define SMELT_INTEGRITY_H

#include <stdbool.h>
#include <stdint.h>

#include "formats/base/err.h"
#include "formats/base/progress.h"
#include "verify/integrity/checkpoint.h"

typedef struct smelt_verify_opts {
    int n_threads;                  /* 0: one per CPU */
    bool values;                    /* decode values and count NaN/Inf (default true) */
    const smelt_progress *progress; /* one step per tensor (may be NULL) */
} smelt_verify_opts;

void smelt_verify_opts_default(smelt_verify_opts *o);

/* What was learned about a tensor's values. */
enum {
    SMELT_VALUES_CHECKED = 0,     /* decoded: n_nan, n_inf, max_abs are meaningful */
    SMELT_VALUES_INTEGER = 1,     /* an integer tensor: no NaN/Inf possible */
    SMELT_VALUES_UNSUPPORTED = 2, /* a type smelt cannot decode yet: hashed only */
    SMELT_VALUES_SKIPPED = 3,     /* opts.values was false */
};

typedef struct smelt_tensor_check {
    uint64_t xxh64;
    int values;       /* SMELT_VALUES_* */
    uint64_t n_nan, n_inf;
    float max_abs;    /* largest finite |x| */
} smelt_tensor_check;

typedef struct smelt_verify_result {
    uint64_t n_tensors;
    smelt_tensor_check *t;   /* one per tensor, in smelt_checkpoint_tensor_at() order */
    uint64_t model_xxh64;    /* over all tensor data, in order */
    uint64_t data_bytes;     /* tensor bytes read */
    uint64_t n_nan, n_inf;   /* totals */
    uint64_t n_nonfinite_tensors; /* tensors holding a NaN or an Inf */
    uint64_t n_unchecked;    /* tensors whose values smelt cannot decode */
} smelt_verify_result;

/* Read every tensor of m: hash it and (opts->values) decode it a block range at a time to
 * count NaN/Inf. Results do not depend on the thread count. Fills *r (free with
 * smelt_verify_result_free). Errors: ENOMEM, EIO. NaN/Inf are findings, not errors. */
int smelt_verify_scan(const smelt_checkpoint *m, const smelt_verify_opts *o, smelt_verify_result *r, smelt_err *e);
void smelt_verify_result_free(smelt_verify_result *r);

/* "0123456789abcdef" (16 lowercase hex digits + NUL) into buf[17]. */
void smelt_hex64(uint64_t h, char buf[17]);

/* ==== manifests ==== */

/* Write the manifest of a scan: one xxh64 line per tensor named "<label>:<tensor>", then the
 * model line "<label>" (label defaults to the model path; it must not contain spaces).
 * Atomic. Errors: EIO, EUSAGE for a label with whitespace. */
int smelt_manifest_write(const smelt_checkpoint *m, const smelt_verify_result *r, const char *label,
                         const char *path, smelt_err *e);

enum {
    SMELT_MF_OK = 0,
    SMELT_MF_MISMATCH = 1,
    SMELT_MF_ABSENT = 2, /* the manifest has no xxh64 entry for it */
};

typedef struct smelt_manifest_check {
    int *tensor;             /* per tensor: SMELT_MF_* */
    uint64_t *expect;        /* per tensor: the manifest's hash (when not ABSENT) */
    int model;               /* the model line: SMELT_MF_* */
    uint64_t model_expect;
    uint64_t n_ok, n_mismatch, n_absent;
    char **extra;            /* tensor names listed in the manifest but absent from the model */
    size_t n_extra;
    uint64_t n_other_lines;  /* sha1/sha256/uuid lines (not checked) */
    char label[256];         /* the label the manifest was written with */
    /* Verdict: no mismatch, no extra entry, and either the model line matched or every
     * tensor was checked and matched. */
    bool ok;
} smelt_manifest_check;

/* Check a scan against a manifest (smelt's or llama-gguf-hash's; sha1/sha256/uuid lines are
 * skipped). Entries are matched by tensor name, whatever the label (the file may have been
 * moved or renamed). Errors: EIO; EFORMAT for a malformed xxh64 line (with its line
 * number) or a manifest with no xxh64 line. */
int smelt_manifest_check_run(const char *manifest, const smelt_checkpoint *m, const smelt_verify_result *r,
                             smelt_manifest_check *c, smelt_err *e);
void smelt_manifest_check_free(smelt_manifest_check *c);

#endif
