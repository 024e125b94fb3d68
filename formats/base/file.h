/* file.h — read-only mapped inputs and atomic outputs.
 * Layer: formats/base. Includes err.h only.
 * Inputs are opened O_RDONLY and mapped PROT_READ/MAP_PRIVATE: smelt never modifies them.
 * Outputs are written to a hidden temporary file beside the target and renamed into place
 * by smelt_outfile_commit(); a killed or failed run leaves no valid-looking file, and the
 * temporary file of a run that was killed is removed by the next run that writes the same
 * output (its name carries the writer's process id). */
#ifndef SMELT_FILE_H
#define SMELT_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* ==== read-only mapping ==== */

typedef struct smelt_map {
    const uint8_t *data; /* NULL when size == 0 */
    uint64_t size;
    char *path;          /* owned copy */
} smelt_map;

/* Map `path` read-only. Only a regular file is mapped: a directory, a FIFO or a device is
 * refused as smelt_check_regular_file() says, and a FIFO is never opened for reading, so
 * this does not block. The mapping is registered for the SIGBUS handler of
 * smelt_tool_install_file_safety() until smelt_map_close(). On error fills e (EIO with errno
 * text) and leaves *m zeroed. */
int smelt_map_open(smelt_map *m, const char *path, smelt_err *e);
/* Unmap and free; safe on a zeroed or already-closed map. */
void smelt_map_close(smelt_map *m);
/* Tell the kernel the byte range [off, off+len) is no longer needed (drops its pages from
 * this process's RSS; data stays readable and is re-read on the next access). */
void smelt_map_release(const smelt_map *m, uint64_t off, uint64_t len);
/* Hint sequential access over the whole mapping. */
void smelt_map_sequential(const smelt_map *m);

/* Read a whole small file into a NUL-terminated heap buffer (caller frees).
 * Refuses files larger than max_bytes. */
int smelt_read_file(const char *path, uint64_t max_bytes, char **out, size_t *out_len,
                    smelt_err *e);

/* True if `path` is a regular file (following symbolic links). */
int smelt_file_exists(const char *path);
/* True if something other than a directory exists at `path` (following symbolic links): a
 * regular file, or a FIFO, device or socket. For looking a name up in a model directory, so
 * that such an entry is then refused as "not a regular file" instead of reported missing. */
int smelt_nondir_exists(const char *path);
/* 0 if `path` is a regular file; otherwise SMELT_EIO naming path: "no such file or
 * directory", "is a directory, expected a file", "not a regular file (it is a FIFO)" (or a
 * character device, block device, socket). Only stats the path, never opens it. */
int smelt_check_regular_file(const char *path, smelt_err *e);
int smelt_is_dir(const char *path);
/* Free bytes available to an unprivileged writer in the filesystem holding `path`'s
 * directory; UINT64_MAX when unknown. The environment variable SMELT_ASSUME_FREE_BYTES
 * (a decimal byte count) replaces the figure, so tests can make the check below fire, or
 * pass and meet the file system's own limit. */
uint64_t smelt_fs_free_bytes(const char *path);
/* Before the first byte of an output is written: SMELT_EIO naming `path` with both
 * numbers when the planned `need` bytes exceed the free space of its file system
 * (assume_free, when non-zero, replaces smelt_fs_free_bytes(path)). An unknown free figure
 * passes. */
int smelt_fs_check_space(const char *path, uint64_t need, uint64_t assume_free, smelt_err *e);
/* True if a and b name the same existing file (same device and inode). */
int smelt_same_file(const char *a, const char *b);
/* Join dir and name into buf; returns buf or NULL if it does not fit. */
char *smelt_path_join(char *buf, size_t n, const char *dir, const char *name);

/* ==== atomic output ==== */

typedef struct smelt_outfile smelt_outfile;

/* Create a temporary file `.NAME.smelt-tmp-PID-XXXXXX` in the directory of `path` (NAME its
 * last component, PID this process). Nothing appears at `path` until smelt_outfile_commit().
 * Writes are buffered. First removes the temporary files of the same NAME whose process is
 * gone (left by a killed run), telling the notice hook (smelt_file_set_notice) about each. */
int smelt_outfile_open(smelt_outfile **o, const char *path, smelt_err *e);
int smelt_outfile_write(smelt_outfile *o, const void *p, size_t n, smelt_err *e);
/* Write zero bytes until the file position is a multiple of align. */
int smelt_outfile_pad(smelt_outfile *o, uint64_t align, smelt_err *e);
/* Write at an absolute position (flushes the buffer first; does not move tell()). */
int smelt_outfile_pwrite(smelt_outfile *o, const void *p, size_t n, uint64_t off, smelt_err *e);
uint64_t smelt_outfile_tell(const smelt_outfile *o);
const char *smelt_outfile_path(const smelt_outfile *o);
/* Flush the buffer and free it: o is complete (no more writes) but not yet committed, and
 * holds no memory beyond its names (for writers that finish many files, then commit all). */
int smelt_outfile_finish(smelt_outfile *o, smelt_err *e);
/* Flush, fsync, close and rename over the target; frees o. On failure the temporary file
 * is removed and o is freed as well. */
int smelt_outfile_commit(smelt_outfile *o, smelt_err *e);
/* Remove the temporary file and free o. Safe on NULL. */
void smelt_outfile_abort(smelt_outfile *o);
/* A whole output at once (open, write n bytes, commit): nothing at path unless all of it. */
int smelt_outfile_write_all(const char *path, const void *bytes, size_t n, smelt_err *e);

/* ==== temporary output directories ==== */

/* Create an empty hidden directory `.LEAF.smelt-tmp-PID-XXXXXX` beside the directory `target`
 * (LEAF its last component, trailing slashes ignored) into `out` (n bytes), for an output
 * built as a whole directory and renamed into place. It is registered so that a signal that
 * ends the run removes it with its contents. Stale ones of the same LEAF whose process is gone
 * are removed first (recursively; reported through the notice hook). */
int smelt_tmpdir_create(const char *target, char *out, size_t n, smelt_err *e);
/* Stop tracking a temporary directory after it was renamed into place or removed. */
void smelt_tmpdir_forget(const char *path);

/* ==== notices ==== */

/* Where this module reports what it did on its own, e.g. "removed stale temporary file X
 * left by an interrupted run (pid N)". Process-wide; NULL (the default) reports nothing. */
typedef void (*smelt_file_notice_fn)(const char *msg);
void smelt_file_set_notice(smelt_file_notice_fn fn);

/* ==== tool mains ====
 * The one call a tool main makes before it opens anything; `tool` ("smelt-quantize") names
 * the tool in what it prints (kept by pointer: a string literal). It installs:
 *   - SIGINT/SIGTERM/SIGHUP handlers that remove every open temporary file and directory,
 *     then re-raise the signal;
 *   - a SIGBUS handler: a fault inside a mapped input (the file was truncated or rewritten
 *     while being read, or its storage failed) writes "TOOL: error: PATH: changed or
 *     truncated while reading (...)" to stderr, removes the temporaries and exits with
 *     status 1; a SIGBUS anywhere else removes the temporaries and is re-raised with the
 *     default action (a crash, as without the handler);
 *   - a notice hook that prints "TOOL: note: MSG" on stderr.
 * These handlers and that hook are the only places where smelt's library writes to stderr.
 * Idempotent. */
void smelt_tool_install_file_safety(const char *tool);

#endif
