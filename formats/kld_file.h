/* kld_file.h — llama.cpp's .kld file: the per-token log-probabilities of a base model
 * that llama-perplexity --kl-divergence-base writes, read and written byte-compatibly.
 * Layer: formats. Includes formats/base only.
 *
 * File layout (tools/perplexity/perplexity.cpp; all little-endian):
 *
 *   0   "_logits_"                      8 bytes
 *   8   n_ctx                           u32
 *   12  n_vocab                         i32
 *   16  n_chunk                         i32
 *   20  tokens[n_ctx * n_chunk]         i32, the evaluation text as tokenized (the first
 *                                       token of each chunk as in the text, not BOS)
 *   ..  for each chunk, for each of the n_ctx - 1 - n_ctx/2 scored positions, one record
 *       of nv = 2*((n_vocab + 1)/2) + 4 u16:
 *         f32 scale, f32 min_log_prob   (the first 4 u16)
 *         u16 q[n_vocab] (+ one pad u16 when n_vocab is odd)
 *       log p_i ≈ scale * q_i + min_log_prob; logits more than 16 below the maximum are
 *       clamped to that floor (q = 0). */
#ifndef SMELT_KLD_FILE_H
#define SMELT_KLD_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "formats/base/err.h"
#include "formats/base/file.h"

#define SMELT_KLD_MAGIC "_logits_"

/* u16 per record for a vocabulary of n_vocab tokens. */
static inline size_t smelt_kld_record_u16(uint32_t n_vocab) { return 2 * (((size_t)n_vocab + 1) / 2) + 4; }

/* ==== reading ==== */

typedef struct smelt_kld_file smelt_kld_file;

/* Map and validate a .kld file: magic, sizes, and that the file holds exactly the
 * records its header announces. Errors: EIO; EFORMAT naming the byte offset (bad magic,
 * truncated or over-long file, impossible sizes). */
int smelt_kld_open(const char *path, smelt_kld_file **out, smelt_err *e);
void smelt_kld_close(smelt_kld_file *f); /* NULL is a no-op */
uint32_t smelt_kld_n_ctx(const smelt_kld_file *f);
uint32_t smelt_kld_n_vocab(const smelt_kld_file *f);
uint32_t smelt_kld_n_chunk(const smelt_kld_file *f);
/* n_ctx * n_chunk tokens, borrowed until close. */
const int32_t *smelt_kld_tokens(const smelt_kld_file *f);
/* Record `i` (0 .. n_ctx-2-n_ctx/2) of chunk c, borrowed until close. */
const uint16_t *smelt_kld_record(const smelt_kld_file *f, uint32_t c, uint32_t i);
const char *smelt_kld_path(const smelt_kld_file *f);

/* ==== writing ==== */

typedef struct smelt_kld_writer smelt_kld_writer;

/* Start an atomic output (nothing appears at path until commit) and write the header and
 * the n_ctx * n_chunk tokens. */
int smelt_kld_writer_open(const char *path, uint32_t n_ctx, uint32_t n_vocab, uint32_t n_chunk,
                          const int32_t *tokens, smelt_kld_writer **out, smelt_err *e);
/* Append n records (record_u16 each). */
int smelt_kld_writer_write(smelt_kld_writer *w, const uint16_t *records, size_t n, smelt_err *e);
/* Check every record arrived, then fsync and rename; frees w. */
int smelt_kld_writer_commit(smelt_kld_writer *w, smelt_err *e);
void smelt_kld_writer_abort(smelt_kld_writer *w); /* NULL is a no-op */

#endif
