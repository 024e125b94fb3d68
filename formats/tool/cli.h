/* cli.h — helpers shared by the tool mains: version, number and size parsing, help text,
 * --json output.
 * Layer: formats/base. Mains only; library code never parses command lines. Uses jansson. */
#ifndef SMELT_CLI_H
#define SMELT_CLI_H

#include <stdbool.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SMELT_VERSION "0.1.0"

/* Parse a non-negative integer; returns 0 on success, -1 if not a number in [lo, hi]. */
int smelt_cli_int(const char *s, long lo, long hi, long *out);
/* Parse a byte size: "123", "10K", "500M", "5G", "2GB", "1.5G" (powers of 1000, as
 * transformers' max_shard_size; "KiB/MiB/GiB" are powers of 1024). -1 on error. */
int smelt_cli_size(const char *s, uint64_t *out);
/* Print "TOOL version X" to stdout. */
void smelt_cli_version(const char *tool);
/* Print "TOOL: error: MSG\nTry 'TOOL --help'.\n" to stderr; returns exit status 2. */
int smelt_cli_usage_error(const char *tool, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The evaluation options of smelt-perplexity, smelt-imatrix and smelt-report, by getopt
 * code: 'm' (-m MODEL), 'f' (-f TEXT), 'c' (-c N_CTX), 'C' (--chunks N), 'b' (-b N_BATCH),
 * 't' (-t N_THREADS). A NULL field is not the tool's option (smelt-report takes no -m).
 * SMELT_CLI_EVAL_LONGOPTS goes in the option table (with --model only where `model` is set:
 * SMELT_CLI_EVAL_MODEL_LONGOPT). */
typedef struct smelt_cli_eval {
    const char **model;
    const char **text;
    uint32_t *n_ctx;
    int64_t *n_chunks;
    uint32_t *n_batch;
    int *n_threads;
} smelt_cli_eval;
#define SMELT_CLI_EVAL_MODEL_LONGOPT {"model", required_argument, 0, 'm'}
#define SMELT_CLI_EVAL_LONGOPTS                                                           \
    {"file", required_argument, 0, 'f'}, {"ctx-size", required_argument, 0, 'c'},         \
        {"chunks", required_argument, 0, 'C'}, {"batch-size", required_argument, 0, 'b'}, \
        {"threads", required_argument, 0, 't'}
/* If `code` is one of them: parse `arg` into its field and return 1, or print the usage
 * error and return its exit status 2. Otherwise return 0. */
int smelt_cli_eval_opt(const char *tool, int code, const char *arg, const smelt_cli_eval *ev);
/* --split-max-size SIZE and --split-max-tensors N (smelt-convert, smelt-merge --gguf,
 * smelt-quantize): long options with these getopt codes; SMELT_CLI_SPLIT_LONGOPTS goes in the
 * option table, SMELT_CLI_SPLIT_HELP in the help text. */
enum { SMELT_CLI_SPLIT_SIZE = 0x5301, SMELT_CLI_SPLIT_TENSORS = 0x5302 };
#define SMELT_CLI_SPLIT_LONGOPTS                                             \
    {"split-max-size", required_argument, 0, SMELT_CLI_SPLIT_SIZE},         \
    {"split-max-tensors", required_argument, 0, SMELT_CLI_SPLIT_TENSORS}
#define SMELT_CLI_SPLIT_HELP                                                                         \
    "  --split-max-size SIZE  write the output as llama-gguf-split --split does: files\n"            \
    "                         OUT-00001-of-0000N.gguf ... of at most SIZE of tensor data each\n"     \
    "                         (500M, 4G: powers of 1000; a larger tensor gets a file alone)\n"     \
    "  --split-max-tensors N  the same with at most N tensors per file\n"
typedef struct smelt_cli_split {
    bool on;
    uint64_t max_bytes, max_tensors;
} smelt_cli_split;
/* If `code` is one of the two: parse `arg` into s and return 1, or print the usage error and
 * return its exit status 2. Otherwise return 0. */
int smelt_cli_split_opt(const char *tool, int code, const char *arg, smelt_cli_split *s);
/* A tool's --json output: j as jansson writes it with `flags` (JSON_INDENT(n), …), then a
 * newline, on stdout. Every tool prints its JSON through here, never with printf, so paths
 * and names are escaped (quotes, backslashes, control characters; UTF-8 as is unless
 * JSON_ENSURE_ASCII). j stays the caller's. Returns 0, or -1 when j is NULL or the text
 * cannot be made (out of memory). */
int smelt_cli_print_json(const json_t *j, size_t flags);
/* Human-readable byte count ("17.3 MB") into buf. */
const char *smelt_cli_bytes(char *buf, size_t n, uint64_t bytes);

#endif
