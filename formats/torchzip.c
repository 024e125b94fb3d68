/* torchzip.c — zip reader for PyTorch checkpoints: end of central directory (+ zip64),
 * central directory, local headers, stored/deflated data, CRC-32. Includes base/, zlib.
 *
 *   [local header 30 B + name + extra][data] ... [central directory records] [zip64 EOCD]
 *   [zip64 locator] [EOCD 22 B + comment]
 *
 * The central directory is the single source of truth for sizes, CRCs and offsets; each
 * local header is checked to name the same entry and to leave its data inside the file,
 * before the central directory. */
#include "torchzip.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "base/ckd.h"
#include "base/file.h"
#include "base/names.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOC64 0x07064b50u

struct smelt_tz {
    smelt_map map;      /* owned mapping (file archives) */
    const uint8_t *p;   /* archive bytes */
    uint64_t size;
    char *path;
    smelt_tz_entry *ent;
    uint8_t *verified;  /* per entry: CRC already checked */
    uint64_t n;
    smelt_names index;
};

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24); }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

/* [off, off+len) inside the archive */
static int in_file(const smelt_tz *z, uint64_t off, uint64_t len)
{
    uint64_t end;
    return smelt_add_u64(off, len, &end) && end <= z->size;
}

/* ==== end of central directory ==== */

typedef struct {
    uint64_t n_entries, cd_size, cd_offset;
} eocd_info;

static int find_eocd(smelt_tz *z, eocd_info *out, smelt_err *e)
{
    if (z->size < 22)
        return SMELT_CORRUPT(e, z->path, 0, NULL, "%llu bytes is too small for a zip archive (a PyTorch .bin is a zip file)",
                             (unsigned long long)z->size);
    uint64_t lo = z->size > 22 + 65535 ? z->size - 22 - 65535 : 0;
    uint64_t pos = z->size - 22;
    for (;;) {
        const uint8_t *q = z->p + pos;
        if (rd32(q) == SIG_EOCD && rd16(q + 20) <= z->size - pos - 22) break;
        if (pos == lo) {
            if (z->size >= 2 && z->p[0] == 0x80 && z->p[1] <= 5)
                return SMELT_ERR(e, SMELT_EUNSUPPORTED, z->path, NULL,
                                 "legacy PyTorch serialization (a bare pickle, torch < 1.6 or "
                                 "_use_new_zipfile_serialization=False) is not supported; re-save it with torch.save "
                                 "from torch >= 1.6 or as safetensors");
            return SMELT_CORRUPT(e, z->path, SMELT_NO_OFFSET, NULL,
                                 "no end-of-central-directory record: not a zip archive, or truncated");
        }
        pos--;
    }
    const uint8_t *q = z->p + pos;
    uint16_t disk = rd16(q + 4), cd_disk = rd16(q + 6);
    uint64_t n_disk = rd16(q + 8), n = rd16(q + 10);
    uint64_t cd_size = rd32(q + 12), cd_off = rd32(q + 16);
    int z64 = n == 0xffff || n_disk == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu;
    if (pos >= 20 && rd32(z->p + pos - 20) == SIG_LOC64) {
        const uint8_t *l = z->p + pos - 20;
        uint64_t off64 = rd64(l + 8);
        if (rd32(l + 16) > 1 || rd32(l + 4) != 0)
            return SMELT_ERR_AT(e, SMELT_EUNSUPPORTED, z->path, pos - 20, NULL, "multi-disk (split) zip archives are not supported");
        if (!in_file(z, off64, 56) || off64 > pos - 20)
            return SMELT_CORRUPT(e, z->path, pos - 20, NULL, "zip64 end-of-central-directory offset %llu is outside the file",
                                 (unsigned long long)off64);
        const uint8_t *r = z->p + off64;
        if (rd32(r) != SIG_EOCD64)
            return SMELT_CORRUPT(e, z->path, off64, NULL, "expected a zip64 end-of-central-directory record (signature 0x%08x), found 0x%08x",
                                 SIG_EOCD64, rd32(r));
        if (rd32(r + 16) != 0 || rd32(r + 20) != 0)
            return SMELT_ERR_AT(e, SMELT_EUNSUPPORTED, z->path, off64, NULL, "multi-disk (split) zip archives are not supported");
        n_disk = rd64(r + 24);
        n = rd64(r + 32);
        cd_size = rd64(r + 40);
        cd_off = rd64(r + 48);
        pos = off64; /* the central directory ends before the zip64 record */
    } else if (z64) {
        return SMELT_CORRUPT(e, z->path, pos, NULL, "end-of-central-directory record asks for zip64 values but there is no zip64 locator");
    } else if (disk != 0 || cd_disk != 0) {
        return SMELT_ERR_AT(e, SMELT_EUNSUPPORTED, z->path, pos, NULL, "multi-disk (split) zip archives are not supported");
    }
    if (n_disk != n)
        return SMELT_ERR_AT(e, SMELT_EUNSUPPORTED, z->path, pos, NULL, "multi-disk (split) zip archives are not supported");
    uint64_t cd_end;
    if (!smelt_add_u64(cd_off, cd_size, &cd_end) || cd_end > pos)
        return SMELT_CORRUPT(e, z->path, pos, NULL, "central directory [%llu, +%llu) runs past its end record at %llu",
                             (unsigned long long)cd_off, (unsigned long long)cd_size, (unsigned long long)pos);
    /* each record takes at least 46 bytes */
    if (n > cd_size / 46)
        return SMELT_CORRUPT(e, z->path, pos, NULL, "%llu entries cannot fit in a %llu-byte central directory",
                             (unsigned long long)n, (unsigned long long)cd_size);
    out->n_entries = n;
    out->cd_size = cd_size;
    out->cd_offset = cd_off;
    return 0;
}

/* ==== central directory ==== */

/* zip64 extended information: the fields whose 32-bit slot is all ones, in order */
static int read_zip64_extra(smelt_tz *z, const uint8_t *x, uint32_t xlen, uint64_t at, const char *name, uint64_t *usize,
                            uint64_t *csize, uint64_t *hoff, smelt_err *e)
{
    int need_u = *usize == 0xffffffffu, need_c = *csize == 0xffffffffu, need_o = *hoff == 0xffffffffu;
    if (!need_u && !need_c && !need_o) return 0;
    uint32_t i = 0;
    while (i + 4 <= xlen) {
        uint16_t id = rd16(x + i), len = rd16(x + i + 2);
        if ((uint32_t)len > xlen - i - 4)
            return SMELT_CORRUPT(e, z->path, at + i, name, "extra field 0x%04x of %u bytes runs past the extra data", id, len);
        if (id == 0x0001) {
            const uint8_t *f = x + i + 4;
            uint32_t k = 0, want = 8u * (uint32_t)(need_u + need_c + need_o);
            if (len < want)
                return SMELT_CORRUPT(e, z->path, at + i, name, "zip64 extra field has %u bytes, needs %u", len, want);
            if (need_u) *usize = rd64(f + k), k += 8;
            if (need_c) *csize = rd64(f + k), k += 8;
            if (need_o) *hoff = rd64(f + k);
            return 0;
        }
        i += 4u + len;
    }
    return SMELT_CORRUPT(e, z->path, at, name, "sizes or offset are 0xffffffff but there is no zip64 extra field");
}

static int read_entry(smelt_tz *z, uint64_t off, uint64_t cd_end, smelt_tz_entry *t, smelt_err *e)
{
    if (off + 46 > cd_end)
        return SMELT_CORRUPT(e, z->path, off, NULL, "central directory record runs past the end of the directory");
    const uint8_t *c = z->p + off;
    if (rd32(c) != SIG_CENTRAL)
        return SMELT_CORRUPT(e, z->path, off, NULL, "expected a central directory record (signature 0x%08x), found 0x%08x",
                             SIG_CENTRAL, rd32(c));
    uint16_t flags = rd16(c + 8), method = rd16(c + 10);
    uint32_t crc = rd32(c + 16);
    uint64_t csize = rd32(c + 20), usize = rd32(c + 24);
    uint32_t nlen = rd16(c + 28), xlen = rd16(c + 30), clen = rd16(c + 32);
    uint16_t disk = rd16(c + 34);
    uint64_t hoff = rd32(c + 42);
    if (off + 46 + nlen + xlen + clen > cd_end)
        return SMELT_CORRUPT(e, z->path, off, NULL, "central directory record (name %u, extra %u, comment %u bytes) runs past the end of the directory",
                             nlen, xlen, clen);
    if (nlen == 0) return SMELT_CORRUPT(e, z->path, off, NULL, "entry with an empty name");
    char *name = malloc(nlen + 1u);
    if (!name) return SMELT_NOMEM(e, "entry name");
    memcpy(name, c + 46, nlen);
    name[nlen] = 0;
    t->name = name;
    if (strlen(name) != nlen) return SMELT_CORRUPT(e, z->path, off + 46, NULL, "entry name contains a NUL byte");
    int rc = read_zip64_extra(z, c + 46 + nlen, xlen, off + 46 + nlen, name, &usize, &csize, &hoff, e);
    if (rc) return rc;
    if (disk != 0 && disk != 0xffff)
        return SMELT_ERR_AT(e, SMELT_EUNSUPPORTED, z->path, off, name, "entry on disk %u: split archives are not supported", disk);
    if (flags & 0x41)
        return SMELT_ERR_AT(e, SMELT_EUNSUPPORTED, z->path, off, name, "entry is encrypted");
    if (method != SMELT_TZ_STORED && method != SMELT_TZ_DEFLATED)
        return SMELT_ERR_AT(e, SMELT_EUNSUPPORTED, z->path, off, name,
                            "compression method %u is not supported (only stored and deflate)", method);
    if (method == SMELT_TZ_STORED && csize != usize)
        return SMELT_CORRUPT(e, z->path, off, name, "stored entry has compressed size %llu but size %llu",
                             (unsigned long long)csize, (unsigned long long)usize);
    /* local header */
    if (!in_file(z, hoff, 30) || hoff + 30 > z->size)
        return SMELT_CORRUPT(e, z->path, off, name, "local header offset %llu is outside the file", (unsigned long long)hoff);
    const uint8_t *l = z->p + hoff;
    if (rd32(l) != SIG_LOCAL)
        return SMELT_CORRUPT(e, z->path, hoff, name, "expected a local file header (signature 0x%08x), found 0x%08x", SIG_LOCAL,
                             rd32(l));
    uint32_t lnlen = rd16(l + 26), lxlen = rd16(l + 28);
    if (rd16(l + 8) != method)
        return SMELT_CORRUPT(e, z->path, hoff, name, "local header says method %u, central directory %u", rd16(l + 8), method);
    if (lnlen != nlen || !in_file(z, hoff + 30, nlen) || memcmp(l + 30, name, nlen) != 0)
        return SMELT_CORRUPT(e, z->path, hoff, name, "local header names a different entry");
    uint64_t data = hoff + 30 + lnlen + lxlen, dend;
    if (!smelt_add_u64(data, csize, &dend) || dend > z->size)
        return SMELT_CORRUPT(e, z->path, hoff, name, "data [%llu, +%llu) runs past the end of the file (%llu bytes): truncated archive",
                             (unsigned long long)data, (unsigned long long)csize, (unsigned long long)z->size);
    t->method = method;
    t->flags = flags;
    t->crc32 = crc;
    t->comp_size = csize;
    t->size = usize;
    t->header_offset = hoff;
    t->data_offset = data;
    t->cd_offset = off;
    return 0;
}

static int index_archive(smelt_tz *z, smelt_err *e)
{
    eocd_info ei = {0, 0, 0};
    int rc = find_eocd(z, &ei, e);
    if (rc) return rc;
    z->ent = calloc((size_t)ei.n_entries + 1, sizeof *z->ent);
    z->verified = calloc((size_t)ei.n_entries + 1, 1);
    if (!z->ent || !z->verified || smelt_names_init(&z->index, (size_t)ei.n_entries))
        return SMELT_NOMEM(e, "zip directory");
    uint64_t off = ei.cd_offset, cd_end = ei.cd_offset + ei.cd_size;
    for (uint64_t i = 0; i < ei.n_entries; i++) {
        smelt_tz_entry *t = &z->ent[i];
        rc = read_entry(z, off, cd_end, t, e);
        z->n = i + 1; /* so close() frees the name */
        if (rc) return rc;
        if (t->data_offset + t->comp_size > ei.cd_offset)
            return SMELT_CORRUPT(e, z->path, t->header_offset, t->name, "data overlaps the central directory at %llu",
                                 (unsigned long long)ei.cd_offset);
        long prev = smelt_names_add(&z->index, t->name, (size_t)i);
        if (prev == SMELT_NAMES_NOMEM) return SMELT_NOMEM(e, "zip directory");
        if (prev != SMELT_NAMES_ADDED) return SMELT_CORRUPT(e, z->path, off, t->name, "entry name appears twice in the archive");
        const uint8_t *c = z->p + off;
        off += 46u + rd16(c + 28) + rd16(c + 30) + rd16(c + 32);
    }
    return 0;
}

static int open_common(smelt_tz *z, smelt_tz **out, smelt_err *e)
{
    int rc = index_archive(z, e);
    if (rc) {
        smelt_tz_close(z);
        return rc;
    }
    *out = z;
    return 0;
}

int smelt_tz_open(const char *path, smelt_tz **out, smelt_err *e)
{
    *out = NULL;
    smelt_tz *z = calloc(1, sizeof *z);
    if (!z) return SMELT_NOMEM(e, "zip archive");
    int rc = smelt_map_open(&z->map, path, e);
    z->path = strdup(path);
    if (rc || !z->path) {
        smelt_tz_close(z);
        return rc ? rc : SMELT_NOMEM(e, "path");
    }
    z->p = z->map.data;
    z->size = z->map.size;
    return open_common(z, out, e);
}

int smelt_tz_open_mem(const void *buf, size_t size, const char *name, smelt_tz **out, smelt_err *e)
{
    *out = NULL;
    smelt_tz *z = calloc(1, sizeof *z);
    if (!z) return SMELT_NOMEM(e, "zip archive");
    z->path = strdup(name ? name : "(memory)");
    if (!z->path) {
        free(z);
        return SMELT_NOMEM(e, "path");
    }
    z->p = buf;
    z->size = size;
    return open_common(z, out, e);
}

void smelt_tz_close(smelt_tz *z)
{
    if (!z) return;
    for (uint64_t i = 0; i < z->n; i++) free((char *)z->ent[i].name);
    free(z->ent);
    free(z->verified);
    smelt_names_free(&z->index);
    smelt_map_close(&z->map);
    free(z->path);
    free(z);
}

const char *smelt_tz_path(const smelt_tz *z) { return z->path; }
uint64_t smelt_tz_n_entries(const smelt_tz *z) { return z->n; }
const smelt_tz_entry *smelt_tz_entry_at(const smelt_tz *z, uint64_t i) { return i < z->n ? &z->ent[i] : NULL; }

int64_t smelt_tz_find(const smelt_tz *z, const char *name) { return smelt_names_find(&z->index, name); }

/* ==== data ==== */

static uint32_t crc_of(const uint8_t *p, uint64_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

static int inflate_into(smelt_tz *z, const smelt_tz_entry *t, uint8_t *dst, smelt_err *e)
{
    z_stream s;
    memset(&s, 0, sizeof s);
    if (inflateInit2(&s, -MAX_WBITS) != Z_OK) return SMELT_NOMEM(e, "zlib stream");
    const uint8_t *src = z->p + t->data_offset;
    uint64_t in_left = t->comp_size, out_left = t->size;
    s.next_out = dst;
    int zr = Z_OK;
    while (zr == Z_OK) {
        if (s.avail_in == 0 && in_left) {
            s.next_in = (Bytef *)src;
            s.avail_in = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            src += s.avail_in;
            in_left -= s.avail_in;
        }
        if (s.avail_out == 0) {
            s.avail_out = out_left > (1u << 30) ? (1u << 30) : (uInt)out_left;
            out_left -= s.avail_out;
        }
        uInt before_in = s.avail_in, before_out = s.avail_out;
        zr = inflate(&s, Z_NO_FLUSH);
        if (zr == Z_BUF_ERROR && before_in == s.avail_in && before_out == s.avail_out) break;
        if (zr == Z_BUF_ERROR) zr = Z_OK;
    }
    uint64_t produced = (uint64_t)s.total_out;
    const char *msg = s.msg;
    inflateEnd(&s);
    if (zr != Z_STREAM_END) {
        if (produced >= t->size && (zr == Z_OK || zr == Z_BUF_ERROR))
            return SMELT_CORRUPT(e, z->path, t->data_offset, t->name, "deflated data is longer than the declared size %llu",
                                 (unsigned long long)t->size);
        return SMELT_CORRUPT(e, z->path, t->data_offset, t->name, "deflated data is corrupt or truncated (zlib: %s) after %llu of %llu bytes",
                             msg ? msg : (zr == Z_BUF_ERROR ? "unexpected end of data" : "error"),
                             (unsigned long long)produced, (unsigned long long)t->size);
    }
    if (produced != t->size)
        return SMELT_CORRUPT(e, z->path, t->data_offset, t->name, "inflated to %llu bytes, the directory says %llu",
                             (unsigned long long)produced, (unsigned long long)t->size);
    return 0;
}

static int check_crc(smelt_tz *z, uint64_t i, const uint8_t *data, smelt_err *e)
{
    const smelt_tz_entry *t = &z->ent[i];
    if (z->verified[i]) return 0;
    uint32_t c = crc_of(data, t->size);
    if (c != t->crc32)
        return SMELT_CORRUPT(e, z->path, t->data_offset, t->name, "CRC-32 mismatch: the directory says %08x, the data gives %08x",
                             t->crc32, c);
    z->verified[i] = 1;
    return 0;
}

int smelt_tz_read(smelt_tz *z, uint64_t i, const void **data, smelt_scratch *scratch, smelt_err *e)
{
    *data = NULL;
    if (i >= z->n) return SMELT_ERR(e, SMELT_EINTERNAL, z->path, NULL, "entry index out of range");
    const smelt_tz_entry *t = &z->ent[i];
    const uint8_t *d;
    if (t->method == SMELT_TZ_STORED) {
        d = z->p + t->data_offset;
    } else {
        if (t->size > SIZE_MAX) return SMELT_NOMEM(e, "inflated entry");
        uint8_t *buf = smelt_scratch_get(scratch, (size_t)t->size);
        if (!buf) return SMELT_NOMEM(e, "inflated entry");
        int rc = inflate_into(z, t, buf, e);
        if (rc) return rc;
        d = buf;
        z->verified[i] = 0; /* the inflated copy is checked each time it is produced */
    }
    int rc = check_crc(z, i, d, e);
    if (rc) return rc;
    *data = d;
    return 0;
}

int smelt_tz_read_alloc(smelt_tz *z, uint64_t i, uint64_t max_bytes, uint8_t **out, size_t *len, smelt_err *e)
{
    *out = NULL;
    if (len) *len = 0;
    if (i >= z->n) return SMELT_ERR(e, SMELT_EINTERNAL, z->path, NULL, "entry index out of range");
    const smelt_tz_entry *t = &z->ent[i];
    if (t->size > max_bytes)
        return SMELT_ERR_AT(e, SMELT_EUNSUPPORTED, z->path, t->header_offset, t->name,
                            "entry of %llu bytes exceeds the %llu-byte limit for this kind of record",
                            (unsigned long long)t->size, (unsigned long long)max_bytes);
    smelt_scratch sc = {0};
    const void *d;
    int rc = smelt_tz_read(z, i, &d, &sc, e);
    if (rc) {
        smelt_scratch_free(&sc);
        return rc;
    }
    uint8_t *b = malloc((size_t)t->size + 1);
    if (!b) {
        smelt_scratch_free(&sc);
        return SMELT_NOMEM(e, t->name);
    }
    if (t->size) memcpy(b, d, (size_t)t->size);
    b[t->size] = 0;
    smelt_scratch_free(&sc);
    *out = b;
    if (len) *len = (size_t)t->size;
    return 0;
}

int smelt_tz_verify_all(smelt_tz *z, smelt_err *e)
{
    smelt_scratch sc = {0};
    int rc = 0;
    for (uint64_t i = 0; i < z->n && !rc; i++) {
        const void *d;
        rc = smelt_tz_read(z, i, &d, &sc, e);
        smelt_tz_release(z, i);
    }
    smelt_scratch_free(&sc);
    return rc;
}

void smelt_tz_release(const smelt_tz *z, uint64_t i)
{
    if (i >= z->n || !z->map.data) return;
    smelt_map_release(&z->map, z->ent[i].data_offset, z->ent[i].comp_size);
}
