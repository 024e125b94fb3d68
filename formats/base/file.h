/* file.h — read-only mapped inputs and atomic outputs.
 * Layer: formats/base. Includes err.h only.
 * Inputs are opened O_RDONLY and mapped PROT_READ/MAP_PRIVATE: smelt never modifies them.
 * Outputs are written to a hidden temporary file beside the target and renamed into place
 * by smelt_outfile_commit(); a killed or failed run leaves no valid-looking file. */
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

/* Map `path` read-only. On error fills e (EIO with errno text) and leaves *m zeroed. */
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

int smelt_file_exists(const char *path);
int smelt_is_dir(const char *path);
/* Free bytes available to an unprivileged writer in the filesystem holding `path`'s
 * directory; UINT64_MAX when unknown. */
uint64_t smelt_fs_free_bytes(const char *path);
/* True if a and b name the same existing file (same device and inode). */
int smelt_same_file(const char *a, const char *b);
/* Join dir and name into buf; returns buf or NULL if it does not fit. */
char *smelt_path_join(char *buf, size_t n, const char *dir, const char *name);

/* ==== atomic output ==== */

typedef struct smelt_outfile smelt_outfile;

/* Create a temporary file in the directory of `path`. Nothing appears at `path` until
 * smelt_outfile_commit(). Writes are buffered. */
int smelt_outfile_open(smelt_outfile **o, const char *path, smelt_err *e);
int smelt_outfile_write(smelt_outfile *o, const void *p, size_t n, smelt_err *e);
/* Write zero bytes until the file position is a multiple of align. */
int smelt_outfile_pad(smelt_outfile *o, uint64_t align, smelt_err *e);
/* Write at an absolute position (flushes the buffer first; does not move tell()). */
int smelt_outfile_pwrite(smelt_outfile *o, const void *p, size_t n, uint64_t off, smelt_err *e);
uint64_t smelt_outfile_tell(const smelt_outfile *o);
const char *smelt_outfile_path(const smelt_outfile *o);
/* Flush, fsync, close and rename over the target; frees o. On failure the temporary file
 * is removed and o is freed as well. */
int smelt_outfile_commit(smelt_outfile *o, smelt_err *e);
/* Remove the temporary file and free o. Safe on NULL. */
void smelt_outfile_abort(smelt_outfile *o);

/* Install SIGINT/SIGTERM/SIGHUP handlers that unlink every open temporary file, then
 * re-raise the signal. For tool mains; idempotent. */
void smelt_outfile_install_signal_cleanup(void);

#endif
