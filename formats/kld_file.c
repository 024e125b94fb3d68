/* kld_file.c — llama.cpp's .kld file of base log-probabilities: reader and atomic writer. */
#include "kld_file.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "formats/base/ckd.h"

#define HEADER_BYTES 20u

/* ==== reading ==== */

struct smelt_kld_file {
    smelt_map map;
    uint32_t n_ctx, n_vocab, n_chunk, n_rec;
    size_t rec_u16;
    uint64_t rec_off; /* byte offset of the first record */
};

static uint32_t rd_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

int smelt_kld_open(const char *path, smelt_kld_file **out, smelt_err *e)
{
    *out = NULL;
    smelt_kld_file *f = calloc(1, sizeof *f);
    if (!f) return SMELT_NOMEM(e, "the KLD file reader");
    int rc = smelt_map_open(&f->map, path, e);
    if (rc) {
        free(f);
        return rc;
    }
    const uint8_t *p = f->map.data;
    uint64_t size = f->map.size;
    if (size < HEADER_BYTES || memcmp(p, SMELT_KLD_MAGIC, 8) != 0) {
        rc = SMELT_CORRUPT(e, path, 0, NULL,
                           "not a KLD base file: expected the magic \"_logits_\" and a 20-byte header "
                           "(file of %" PRIu64 " bytes)", size);
        goto fail;
    }
    f->n_ctx = rd_u32(p + 8);
    uint32_t nv = rd_u32(p + 12), nc = rd_u32(p + 16);
    if (f->n_ctx < 3 || f->n_ctx > (1u << 24)) {
        rc = SMELT_CORRUPT(e, path, 8, "n_ctx", "context %u is impossible (expected 3 .. 2^24)", f->n_ctx);
        goto fail;
    }
    if (nv == 0 || nv > INT32_MAX) {
        rc = SMELT_CORRUPT(e, path, 12, "n_vocab", "vocabulary size %d is impossible", (int32_t)nv);
        goto fail;
    }
    if (nc == 0 || nc > INT32_MAX) {
        rc = SMELT_CORRUPT(e, path, 16, "n_chunk", "chunk count %d is impossible", (int32_t)nc);
        goto fail;
    }
    f->n_vocab = nv;
    f->n_chunk = nc;
    f->n_rec = f->n_ctx - 1 - f->n_ctx / 2;
    f->rec_u16 = smelt_kld_record_u16(nv);
    uint64_t ntok, tok_bytes, recs, rec_bytes, want;
    if (!smelt_mul_u64(f->n_ctx, nc, &ntok) || !smelt_mul_u64(ntok, 4, &tok_bytes) ||
        !smelt_mul_u64((uint64_t)nc, f->n_rec, &recs) || !smelt_mul_u64(recs, f->rec_u16 * 2, &rec_bytes) ||
        !smelt_add_u64(HEADER_BYTES + tok_bytes, rec_bytes, &want)) {
        rc = SMELT_CORRUPT(e, path, 8, NULL, "header sizes overflow (n_ctx %u, n_vocab %u, n_chunk %u)", f->n_ctx, nv, nc);
        goto fail;
    }
    f->rec_off = HEADER_BYTES + tok_bytes;
    if (size < want) {
        uint64_t have_recs = size > f->rec_off ? (size - f->rec_off) / (f->rec_u16 * 2) : 0;
        rc = SMELT_CORRUPT(e, path, size, NULL,
                           "truncated: the header announces %u chunks x %u records of %zu bytes (%" PRIu64
                           " bytes in all) but the file ends after %" PRIu64 " bytes (%" PRIu64 " complete records)",
                           nc, f->n_rec, f->rec_u16 * 2, want, size, have_recs);
        goto fail;
    }
    if (size > want) {
        rc = SMELT_CORRUPT(e, path, want, NULL, "%" PRIu64 " unexpected bytes after the last record", size - want);
        goto fail;
    }
    *out = f;
    return 0;
fail:
    smelt_map_close(&f->map);
    free(f);
    return rc;
}

void smelt_kld_close(smelt_kld_file *f)
{
    if (!f) return;
    smelt_map_close(&f->map);
    free(f);
}

uint32_t smelt_kld_n_ctx(const smelt_kld_file *f) { return f->n_ctx; }
uint32_t smelt_kld_n_vocab(const smelt_kld_file *f) { return f->n_vocab; }
uint32_t smelt_kld_n_chunk(const smelt_kld_file *f) { return f->n_chunk; }
const char *smelt_kld_path(const smelt_kld_file *f) { return f->map.path; }

const int32_t *smelt_kld_tokens(const smelt_kld_file *f)
{
    return (const int32_t *)(const void *)(f->map.data + HEADER_BYTES);
}

const uint16_t *smelt_kld_record(const smelt_kld_file *f, uint32_t c, uint32_t i)
{
    uint64_t idx = (uint64_t)c * f->n_rec + i;
    return (const uint16_t *)(const void *)(f->map.data + f->rec_off + idx * f->rec_u16 * 2);
}

/* ==== writing ==== */

struct smelt_kld_writer {
    smelt_outfile *out;
    size_t rec_u16;
    uint64_t want, have;
};

int smelt_kld_writer_open(const char *path, uint32_t n_ctx, uint32_t n_vocab, uint32_t n_chunk,
                          const int32_t *tokens, smelt_kld_writer **out, smelt_err *e)
{
    *out = NULL;
    smelt_kld_writer *w = calloc(1, sizeof *w);
    if (!w) return SMELT_NOMEM(e, "the KLD writer");
    w->rec_u16 = smelt_kld_record_u16(n_vocab);
    w->want = (uint64_t)n_chunk * (n_ctx - 1 - n_ctx / 2);
    int rc = smelt_outfile_open(&w->out, path, e);
    if (rc) {
        free(w);
        return rc;
    }
    uint32_t hdr[3] = {n_ctx, n_vocab, n_chunk};
    if ((rc = smelt_outfile_write(w->out, SMELT_KLD_MAGIC, 8, e)) || (rc = smelt_outfile_write(w->out, hdr, 12, e)) ||
        (rc = smelt_outfile_write(w->out, tokens, (size_t)n_ctx * n_chunk * 4, e))) {
        smelt_kld_writer_abort(w);
        return rc;
    }
    *out = w;
    return 0;
}

int smelt_kld_writer_write(smelt_kld_writer *w, const uint16_t *records, size_t n, smelt_err *e)
{
    w->have += n;
    return smelt_outfile_write(w->out, records, n * w->rec_u16 * 2, e);
}

int smelt_kld_writer_commit(smelt_kld_writer *w, smelt_err *e)
{
    int rc;
    if (w->have != w->want) {
        rc = SMELT_ERR(e, SMELT_EINTERNAL, smelt_outfile_path(w->out), NULL,
                       "%" PRIu64 " records written, %" PRIu64 " expected", w->have, w->want);
        smelt_kld_writer_abort(w);
        return rc;
    }
    rc = smelt_outfile_commit(w->out, e);
    free(w);
    return rc;
}

void smelt_kld_writer_abort(smelt_kld_writer *w)
{
    if (!w) return;
    smelt_outfile_abort(w->out);
    free(w);
}
