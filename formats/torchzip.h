/* torchzip.h — the zip container of PyTorch checkpoints (torch.save ≥ 1.6), read over a
 * read-only mapping. Layer: formats. Includes base/, tsrc.h (scratch buffers), zlib (in .c).
 *
 * Handles stored and deflated entries, zip64 sizes and offsets, data descriptors (the
 * central directory is authoritative) and checks every entry's CRC-32 the first time it
 * is read. Every offset and size taken from the file is bounds-checked; a malformed
 * archive gives SMELT_EFORMAT naming the file, the entry and the byte offset. Encrypted
 * entries, split archives and compression methods other than stored/deflate give
 * SMELT_EUNSUPPORTED. Stored entries (what torch.save writes) are returned as views into
 * the mapping: zero-copy. */
#ifndef SMELT_TORCHZIP_H
#define SMELT_TORCHZIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "tsrc.h"

enum { SMELT_TZ_STORED = 0, SMELT_TZ_DEFLATED = 8 };

typedef struct smelt_tz_entry {
    const char *name;        /* NUL-terminated copy */
    uint16_t method;         /* SMELT_TZ_STORED or SMELT_TZ_DEFLATED */
    uint16_t flags;          /* general purpose bit flag */
    uint32_t crc32;
    uint64_t comp_size;      /* bytes in the archive */
    uint64_t size;           /* bytes once decompressed */
    uint64_t header_offset;  /* local file header */
    uint64_t data_offset;    /* first byte of the (compressed) data */
    uint64_t cd_offset;      /* this entry's central directory record */
} smelt_tz_entry;

typedef struct smelt_tz smelt_tz;

/* Open and index a zip archive. *out is NULL on error. */
int smelt_tz_open(const char *path, smelt_tz **out, smelt_err *e);
/* Same on a caller-owned buffer that must outlive the handle; `name` is used in errors. */
int smelt_tz_open_mem(const void *buf, size_t size, const char *name, smelt_tz **out, smelt_err *e);
void smelt_tz_close(smelt_tz *z); /* NULL is a no-op */

const char *smelt_tz_path(const smelt_tz *z);
uint64_t smelt_tz_n_entries(const smelt_tz *z);
/* Entries in central directory order. Borrowed until smelt_tz_close(). */
const smelt_tz_entry *smelt_tz_entry_at(const smelt_tz *z, uint64_t i);
/* Index of the entry with this exact name, or -1. */
int64_t smelt_tz_find(const smelt_tz *z, const char *name);

/* Bytes of entry i. Stored: a view into the mapping. Deflated: inflated into *scratch
 * (caller-owned, reused). The CRC-32 is verified on the first read of each entry (a
 * mismatch is SMELT_EFORMAT); later reads of a verified entry cost nothing. Valid until
 * the next read into the same scratch or smelt_tz_close(). Not thread-safe. */
int smelt_tz_read(smelt_tz *z, uint64_t i, const void **data, smelt_scratch *scratch, smelt_err *e);
/* Entry i in a fresh heap buffer (caller frees), NUL-terminated for convenience; entries
 * larger than max_bytes are refused (EUNSUPPORTED). CRC-checked. */
int smelt_tz_read_alloc(smelt_tz *z, uint64_t i, uint64_t max_bytes, uint8_t **out, size_t *len,
                        smelt_err *e);
/* Verify the CRC-32 of every entry now (reads the whole archive once). */
int smelt_tz_verify_all(smelt_tz *z, smelt_err *e);
/* Let the pages of entry i go from RSS (no-op for memory archives). */
void smelt_tz_release(const smelt_tz *z, uint64_t i);

#endif
