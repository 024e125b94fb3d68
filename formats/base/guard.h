/* guard.h — an output never is, contains, or lies inside an input.
 * Layer: formats/base. Includes err.h only.
 *
 * A tool lists what it reads (files, and directories with the names it reads in them),
 * then asks before it writes each output. Paths are compared by device and inode after
 * resolving links, so "m.gguf", "./m.gguf", "/abs/m.gguf", a symlink and a hard link to it
 * are all the same input. The rules:
 *   - a file output may not be an input file, an input directory, or a directory that holds
 *     an input; inside an input directory it may not take a name the tool reads there;
 *   - a directory output may not be an input directory, hold an input (at any depth), or
 *     lie inside an input directory.
 * A refusal is SMELT_EUSAGE (exit 2) and names the output, the input and what the input is. */
#ifndef SMELT_GUARD_H
#define SMELT_GUARD_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

typedef struct smelt_guard smelt_guard;

/* Which names an input directory's reader takes from it (direct children only). */
typedef bool (*smelt_guard_reads_fn)(const char *name);
bool smelt_guard_reads_everything(const char *name);
/* A Hugging Face model or PEFT adapter directory: every name but the kinds of file smelt
 * writes and never reads there (*.gguf, *.xxh64 manifests, *.kld distributions). */
bool smelt_guard_reads_model_dir(const char *name);
/* A directory of models: only *.gguf. */
bool smelt_guard_reads_gguf(const char *name);

smelt_guard *smelt_guard_new(void); /* NULL when out of memory */
void smelt_guard_free(smelt_guard *g); /* NULL is a no-op */

/* Record an input. `what` says what it is ("the model", "the base model directory"); kept as
 * given (a string literal or storage that outlives the guard). A directory input needs
 * `reads` (NULL = reads everything). A path that does not exist is ignored: opening it will
 * fail with its own error. Returns SMELT_ENOMEM or 0. */
int smelt_guard_add(smelt_guard *g, const char *path, const char *what, smelt_guard_reads_fn reads, smelt_err *e);

/* May `out` be written as a file (created or replaced)? */
int smelt_guard_check_file(const smelt_guard *g, const char *out, smelt_err *e);
/* May `out` be written as a directory (created, or replaced as a whole)? */
int smelt_guard_check_dir(const smelt_guard *g, const char *out, smelt_err *e);

/* Shorthand for a tool whose inputs are plain files: may `out` be written as a file, given
 * these inputs (entries with a NULL path are skipped)? */
typedef struct smelt_guard_input {
    const char *path, *what;
} smelt_guard_input;
int smelt_guard_check_file_against(const char *out, const smelt_guard_input *inputs, size_t n, smelt_err *e);

#endif
