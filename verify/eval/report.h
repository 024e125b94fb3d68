/* report.h — the quant quality table a publisher puts on a model card: for a base model and
 * its quantized files, the type, size, bits per weight, perplexity and KL-divergence against
 * the base on one text — as Markdown, JSON and an SVG plot (verify/eval/svg.h).
 * Layer: verify. Includes formats/, quant/policy.h, verify/eval/ppl.h.
 *
 * Measurements are smelt-perplexity's, run through the library: the base once with its
 * distributions stored (a llama.cpp .kld file), then every quant against them (PPL(Q),
 * PPL(Q)/PPL(base) with llama.cpp's error propagation, KLD statistics, same top token).
 * Results are cached in a directory, keyed by the files' identity (device, inode, size,
 * modification time), the text's xxh64, n_ctx and the chunk count; a cached row holds the
 * same numbers at full precision, so the outputs are identical with or without the cache.
 * Outputs hold no timings and are deterministic. */
#ifndef SMELT_REPORT_H
#define SMELT_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/base/err.h"
#include "formats/base/notes.h"
#include "verify/eval/ppl.h"

typedef struct smelt_report_opts {
    const char *base;                /* base model GGUF (f32/f16/bf16, or any reference) */
    const char *text;                /* evaluation text */
    const char *const *quants;       /* quantized GGUFs, or directories (their *.gguf) */
    size_t n_quants;
    uint32_t n_ctx;                  /* 0: 512 */
    int64_t n_chunks;                /* < 0: every complete chunk */
    uint32_t n_batch;                /* 0: 2048 */
    int n_threads;                   /* <= 0: one per CPU */
    int isa;                         /* -1: best */
    const char *cache_dir;           /* created if missing; NULL: a temporary directory */
    /* Context-length sweep: the whole measurement again at each of these n_ctx values (the
     * text must give 2 x n_ctx tokens for each), reported as PPL and KLD by context. */
    const uint32_t *ctx_sweep;
    size_t n_ctx_sweep;
    /* A line about each model: measured, cached or skipped (formats/base/notes.h). */
    smelt_notes notes;
    /* Callback (may be NULL): every evaluated chunk of model i (0 = base) of n. */
    void (*on_chunk)(void *user, size_t i, size_t n, const smelt_ppl_result *r);
    void *user;
} smelt_report_opts;

void smelt_report_opts_default(smelt_report_opts *o);

typedef struct smelt_report_row {
    char *path;             /* as given or found in a directory (owned) */
    char *file;             /* its last path component (owned) */
    char type[24];          /* ftype name from general.file_type ("Q4_K_M", "F16"), or guessed */
    int file_type;          /* general.file_type, -1 when absent */
    uint64_t file_bytes;    /* size of the file */
    uint64_t tensor_bytes;  /* bytes of tensor data */
    uint64_t n_params;      /* elements of all tensors */
    double bpw;             /* tensor_bytes · 8 / n_params */
    double ppl, ppl_err;
    /* quants only (zero for the base) */
    double ppl_ratio, ppl_ratio_err; /* PPL(Q) / PPL(base) */
    double kld, kld_err, kld_median, kld_p99, kld_p999, kld_max;
    double same_top, same_top_err;   /* fractions */
    double dp_rms;                   /* RMS of Δp, fraction */
    bool cached;            /* taken from the cache */
    double *sweep_ppl, *sweep_kld; /* with a sweep: per context length (owned; KLD 0 for the base) */
} smelt_report_row;

typedef struct smelt_report {
    char *model;            /* general.name of the base, or its file name (owned) */
    char *text;             /* the text path as given (owned) */
    uint32_t n_ctx;
    size_t n_chunks, n_scored;
    smelt_report_row base;
    smelt_report_row *rows; /* the quants, by bits per weight (highest first), then file name */
    size_t n;
    uint32_t *sweep_ctx;    /* the context lengths of the sweep (owned), n_sweep of them */
    size_t n_sweep;
} smelt_report;

/* Measure (or take from the cache) the base and every quant. Directories contribute their
 * *.gguf files in name order, except the base itself and GGUFs that are not models
 * (general.type other than "model", e.g. an imatrix), which are noted and skipped.
 * Errors: EUSAGE (no quant, a file listed twice), those of smelt_gguf_open() for a quant
 * or the base, and those of smelt_ppl_run() (EMISMATCH for a quant whose vocabulary is
 * not the base's). *out is NULL on error. Caller frees. */
int smelt_report_run(const smelt_report_opts *o, smelt_report **out, smelt_err *e);
/* EUSAGE when PREFIX.md/.json/.svg (-ctx.svg) or the cache directory would be, hold or lie inside an
 * input (the base, the text, a quant or a directory of quants). Call before measuring. */
int smelt_report_check_outputs(const smelt_report_opts *o, const char *prefix, smelt_err *e);
void smelt_report_free(smelt_report *r); /* NULL is a no-op */

/* The renderings; *out malloc'd and NUL-terminated (caller frees). ENOMEM. With a sweep
 * the Markdown and JSON gain its tables, and smelt_report_ctx_svg plots PPL against the
 * context length, one line per model. */
int smelt_report_markdown(const smelt_report *r, char **out, size_t *len, smelt_err *e);
int smelt_report_json(const smelt_report *r, char **out, size_t *len, smelt_err *e);
int smelt_report_svg(const smelt_report *r, char **out, size_t *len, smelt_err *e);
int smelt_report_ctx_svg(const smelt_report *r, char **out, size_t *len, smelt_err *e);
/* Write PREFIX.md, PREFIX.json and PREFIX.svg (and PREFIX-ctx.svg with a sweep), each
 * atomically. EIO. */
int smelt_report_write(const smelt_report *r, const char *prefix, smelt_err *e);

#endif
