/* imatrix.c — GGUF and legacy .dat importance matrices: hardened readers, the
 * count-normalised weights llama-quantize uses, and writers for both formats.
 * Includes base/ and gguf.h only. */
#include "imatrix.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/ckd.h"
#include "base/file.h"
#include "gguf.h"

#define IMX_MAX_NAME 4096 /* longest entry name accepted from a legacy file */

static const char K_TYPE[] = "general.type";
static const char K_DATASETS[] = "imatrix.datasets";
static const char K_CHUNK_COUNT[] = "imatrix.chunk_count";
static const char K_CHUNK_SIZE[] = "imatrix.chunk_size";
static const char SFX_SUMS[] = ".in_sum2";
static const char SFX_COUNTS[] = ".counts";
static const char SFX_EXACT[] = ".in_sum2.exact";

/* ==== in-memory structure ==== */

static void entry_free(smelt_imx_entry *en)
{
    free(en->name);
    free(en->sums);
    free(en->counts);
    free(en->exact);
}

void smelt_imx_free(smelt_imx *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n_entries; i++) entry_free(&m->entries[i]);
    for (size_t i = 0; i < m->n_datasets; i++) free(m->datasets[i]);
    free(m->entries);
    free(m->datasets);
    free(m);
}

smelt_imx *smelt_imx_new(void)
{
    smelt_imx *m = calloc(1, sizeof *m);
    if (m) m->format = SMELT_IMX_GGUF;
    return m;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const smelt_imx_entry *)a)->name, ((const smelt_imx_entry *)b)->name);
}

const smelt_imx_entry *smelt_imx_find(const smelt_imx *m, const char *name)
{
    if (!m || !m->n_entries) return NULL;
    smelt_imx_entry key = {.name = (char *)name};
    return bsearch(&key, m->entries, m->n_entries, sizeof key, cmp_entry);
}

/* Insert keeping the array sorted; takes ownership of *en's buffers on success. */
static int insert_entry(smelt_imx *m, smelt_imx_entry *en, smelt_err *e)
{
    size_t lo = 0, hi = m->n_entries;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(m->entries[mid].name, en->name) < 0) lo = mid + 1;
        else hi = mid;
    }
    smelt_imx_entry *ne = realloc(m->entries, (m->n_entries + 1) * sizeof *ne);
    if (!ne) return SMELT_NOMEM(e, "imatrix entries");
    m->entries = ne;
    memmove(&ne[lo + 1], &ne[lo], (m->n_entries - lo) * sizeof *ne);
    ne[lo] = *en;
    m->n_entries++;
    return 0;
}

int smelt_imx_add_dataset(smelt_imx *m, const char *dataset, smelt_err *e)
{
    char **nd = realloc(m->datasets, (m->n_datasets + 1) * sizeof *nd);
    if (!nd) return SMELT_NOMEM(e, "imatrix datasets");
    m->datasets = nd;
    if (!(nd[m->n_datasets] = strdup(dataset))) return SMELT_NOMEM(e, "imatrix dataset");
    m->n_datasets++;
    return 0;
}

int smelt_imx_add(smelt_imx *m, const char *name, uint64_t n_values, uint64_t n_mat,
                  const float *sums, const int64_t *counts, smelt_err *e)
{
    if (m->format != SMELT_IMX_GGUF)
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, name, "cannot accumulate into a legacy-format imatrix");
    if (!n_mat || !n_values || n_values % n_mat)
        return SMELT_ERR(e, SMELT_EUSAGE, NULL, name, "%" PRIu64 " values do not split into %" PRIu64 " matrices",
                         n_values, n_mat);
    smelt_imx_entry *old = (smelt_imx_entry *)smelt_imx_find(m, name);
    if (old) {
        if (old->n_values != n_values || old->n_mat != n_mat)
            return SMELT_ERR(e, SMELT_EMISMATCH, NULL, name,
                             "has %" PRIu64 " values in %" PRIu64 " matrices, cannot add %" PRIu64 " in %" PRIu64,
                             old->n_values, old->n_mat, n_values, n_mat);
        for (uint64_t i = 0; i < n_values; i++) old->sums[i] += sums[i];
        for (uint64_t j = 0; j < n_mat; j++) old->counts[j] += counts[j];
        return 0;
    }
    smelt_imx_entry en = {0};
    en.name = strdup(name);
    en.sums = malloc(n_values * sizeof(float));
    en.counts = malloc(n_mat * sizeof(int64_t));
    if (!en.name || !en.sums || !en.counts) {
        entry_free(&en);
        return SMELT_NOMEM(e, "imatrix entry");
    }
    en.n_values = n_values;
    en.n_mat = n_mat;
    memcpy(en.sums, sums, n_values * sizeof(float));
    memcpy(en.counts, counts, n_mat * sizeof(int64_t));
    int rc = insert_entry(m, &en, e);
    if (rc) entry_free(&en);
    return rc;
}

/* ==== weights ==== */

int smelt_imx_weights(const smelt_imx *m, const smelt_imx_entry *en, float *out, uint64_t *n_zero,
                      smelt_err *e)
{
    uint64_t zeros = 0;
    if (m->format == SMELT_IMX_LEGACY) {
        int64_t ncall = en->counts[0];
        for (uint64_t i = 0; i < en->n_values; i++)
            out[i] = ncall > 0 ? en->sums[i] / (float)ncall : en->sums[i];
    } else {
        uint64_t per = en->n_values / en->n_mat;
        for (uint64_t j = 0; j < en->n_mat; j++) {
            float c = (float)en->counts[j];
            if (en->counts[j] > 0) {
                for (uint64_t i = 0; i < per; i++) out[j * per + i] = en->sums[j * per + i] / c;
            } else {
                zeros++;
                for (uint64_t i = 0; i < per; i++) out[j * per + i] = 1.0f;
            }
        }
    }
    if (n_zero) *n_zero = zeros;
    for (uint64_t i = 0; i < en->n_values; i++)
        if (!isfinite(out[i]) || out[i] < 0)
            return SMELT_ERR(e, SMELT_EFORMAT, NULL, en->name,
                             "importance weight %" PRIu64 " is %g (expected a finite value >= 0)", i,
                             (double)out[i]);
    return 0;
}

/* ==== GGUF reader ==== */

static bool ends_with(const char *s, const char *sfx, size_t *stem)
{
    size_t n = strlen(s), k = strlen(sfx);
    if (n <= k || memcmp(s + n - k, sfx, k)) return false;
    *stem = n - k;
    return true;
}

static int read_gguf(smelt_imx *m, const void *buf, size_t size, const char *name, smelt_err *e)
{
    smelt_gguf *g;
    int rc = smelt_gguf_open_mem(buf, size, name, 0, &g, e);
    if (rc) return rc;
    uint64_t nt = smelt_gguf_n_tensors(g);
    if (nt < 1) {
        rc = SMELT_ERR(e, SMELT_EFORMAT, name, NULL, "GGUF imatrix has no tensors (expected <weight>.in_sum2 and <weight>.counts pairs)");
        goto out;
    }
    const smelt_gguf_kv *kv = smelt_gguf_get_kv(g, K_DATASETS);
    bool have_ds = kv != NULL;
    if (kv && kv->type == SMELT_GGUF_ARRAY && kv->arr_type == SMELT_GGUF_STRING) {
        for (uint64_t i = 0; i < kv->n; i++) {
            smelt_str s = smelt_gguf_arr_str(kv, i);
            char *d = strndup(s.p, (size_t)s.n);
            if (!d || (rc = smelt_imx_add_dataset(m, d, e))) {
                free(d);
                rc = rc ? rc : SMELT_NOMEM(e, "dataset");
                goto out;
            }
            free(d);
        }
    }
    bool have_cc = smelt_gguf_find_kv(g, K_CHUNK_COUNT) >= 0, have_cs = smelt_gguf_find_kv(g, K_CHUNK_SIZE) >= 0;
    if (have_cc && (rc = smelt_gguf_get_u32(g, K_CHUNK_COUNT, &m->chunk_count, e))) goto out;
    if (have_cs && (rc = smelt_gguf_get_u32(g, K_CHUNK_SIZE, &m->chunk_size, e))) goto out;
    m->has_metadata = have_ds && have_cc && have_cs;

    for (uint64_t i = 0; i < nt; i++) {
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
        size_t stem;
        if (!ends_with(t->name, SFX_SUMS, &stem)) continue;
        char wname[SMELT_GGUF_MAX_NAME + 16];
        snprintf(wname, sizeof wname, "%.*s%s", (int)stem, t->name, SFX_COUNTS);
        const smelt_gguf_tensor *c = smelt_gguf_find_tensor(g, wname);
        wname[stem] = 0;
        if (!c) {
            rc = SMELT_CORRUPT(e, name, t->info_offset, t->name, "has no matching '%s%s' tensor", wname, SFX_COUNTS);
            goto out;
        }
        if (t->type != SMELT_TYPE_F32 || c->type != SMELT_TYPE_F32) {
            const smelt_gguf_tensor *bad = t->type != SMELT_TYPE_F32 ? t : c;
            rc = SMELT_CORRUPT(e, name, bad->info_offset, bad->name, "type is %s, expected f32",
                               smelt_type_name(bad->type));
            goto out;
        }
        uint64_t n_mat = c->nelements, n_vals = t->nelements, prod;
        if (n_mat == 0 || n_vals == 0 || !smelt_mul_u64(t->ne[0], n_mat, &prod) || prod != n_vals) {
            rc = SMELT_CORRUPT(e, name, t->info_offset, t->name,
                               "shape [%" PRIu64 ", %" PRIu64 "] does not fit %" PRIu64 " counts in '%s'",
                               t->ne[0], n_vals / (t->ne[0] ? t->ne[0] : 1), n_mat, c->name);
            goto out;
        }
        smelt_imx_entry en = {0};
        en.name = strdup(wname);
        en.sums = malloc(n_vals * sizeof(float));
        en.counts = malloc(n_mat * sizeof(int64_t));
        en.n_values = n_vals;
        en.n_mat = n_mat;
        if (!en.name || !en.sums || !en.counts) {
            entry_free(&en);
            rc = SMELT_NOMEM(e, "imatrix entry");
            goto out;
        }
        memcpy(en.sums, t->data, n_vals * sizeof(float));
        for (uint64_t j = 0; j < n_mat; j++) {
            float f;
            memcpy(&f, c->data + 4 * j, 4);
            if (!isfinite(f) || f < 0 || f > 9.2e18f) {
                entry_free(&en);
                rc = SMELT_CORRUPT(e, name, smelt_gguf_data_offset(g) + c->offset + 4 * j, c->name,
                                   "count %" PRIu64 " is %g (expected a finite value >= 0)", j, (double)f);
                goto out;
            }
            en.counts[j] = (int64_t)llroundf(f);
        }
        snprintf(wname, sizeof wname, "%.*s%s", (int)stem, t->name, SFX_EXACT);
        const smelt_gguf_tensor *x = smelt_gguf_find_tensor(g, wname);
        wname[stem] = 0;
        if (x && (x->type != SMELT_TYPE_I64 || x->nelements != 2 * n_vals)) {
            entry_free(&en);
            rc = SMELT_CORRUPT(e, name, x->info_offset, x->name,
                               "expected an i64 tensor of %" PRIu64 " elements (2 per value of '%s'), found %s x %" PRIu64,
                               2 * n_vals, t->name, smelt_type_name(x->type), x->nelements);
            goto out;
        }
        if (x) {
            if (!(en.exact = malloc(2 * n_vals * sizeof(uint64_t)))) {
                entry_free(&en);
                rc = SMELT_NOMEM(e, "imatrix entry");
                goto out;
            }
            memcpy(en.exact, x->data, 2 * n_vals * sizeof(uint64_t));
        }
        if ((rc = insert_entry(m, &en, e))) {
            entry_free(&en);
            goto out;
        }
    }
    /* a counts tensor without its sums is as malformed as the reverse */
    for (uint64_t i = 0; i < nt; i++) {
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
        size_t stem;
        if (!ends_with(t->name, SFX_COUNTS, &stem)) continue;
        char wname[SMELT_GGUF_MAX_NAME + 16];
        snprintf(wname, sizeof wname, "%.*s", (int)stem, t->name);
        if (!smelt_imx_find(m, wname)) {
            rc = SMELT_CORRUPT(e, name, t->info_offset, t->name, "has no matching '%s%s' tensor", wname, SFX_SUMS);
            goto out;
        }
    }
    if (!m->n_entries)
        rc = SMELT_ERR(e, SMELT_EFORMAT, name, NULL,
                       "no imatrix entries: none of the %" PRIu64 " tensors is named <weight>%s", nt, SFX_SUMS);
out:
    smelt_gguf_close(g);
    return rc;
}

/* ==== legacy reader ==== */

typedef struct {
    const uint8_t *p;
    size_t size, pos;
    const char *name;
} rd;

static bool rd_i32(rd *r, int32_t *v)
{
    if (r->size - r->pos < 4) return false;
    memcpy(v, r->p + r->pos, 4);
    r->pos += 4;
    return true;
}

static int read_legacy(smelt_imx *m, const void *buf, size_t size, const char *name, smelt_err *e)
{
    rd r = {buf, size, 0, name};
    int32_t n;
    if (!rd_i32(&r, &n))
        return SMELT_CORRUPT(e, name, 0, NULL, "file of %zu bytes is neither a GGUF imatrix nor a legacy imatrix", size);
    if (n < 1)
        return SMELT_CORRUPT(e, name, 0, NULL, "legacy imatrix: entry count %d, expected at least 1", (int)n);
    if ((uint64_t)n > (size - 4) / 17)
        return SMELT_CORRUPT(e, name, 0, NULL, "legacy imatrix: %d entries cannot fit in %zu bytes", n, size);
    for (int32_t i = 0; i < n; i++) {
        size_t at = r.pos;
        int32_t len, ncall, nval;
        if (!rd_i32(&r, &len))
            return SMELT_CORRUPT(e, name, at, NULL, "legacy imatrix: file ends inside entry %d of %d", i + 1, n);
        if (len < 1 || len > IMX_MAX_NAME || (size_t)len > size - r.pos)
            return SMELT_CORRUPT(e, name, at, NULL, "legacy imatrix: entry %d name length %d (expected 1..%d within the file)",
                                 i + 1, len, IMX_MAX_NAME);
        char *nm = strndup((const char *)r.p + r.pos, (size_t)len);
        if (!nm) return SMELT_NOMEM(e, "entry name");
        r.pos += (size_t)len;
        if (strlen(nm) != (size_t)len) {
            free(nm);
            return SMELT_CORRUPT(e, name, at + 4, NULL, "legacy imatrix: entry %d name contains a NUL byte", i + 1);
        }
        at = r.pos;
        if (!rd_i32(&r, &ncall) || !rd_i32(&r, &nval)) {
            int rc = SMELT_CORRUPT(e, name, at, nm, "legacy imatrix: file ends inside the entry header");
            free(nm);
            return rc;
        }
        if (nval < 1 || (size_t)nval > (size - r.pos) / 4) {
            int rc = SMELT_CORRUPT(e, name, at + 4, nm, "legacy imatrix: %d values (expected 1..%zu that fit in the file)",
                                   nval, (size - r.pos) / 4);
            free(nm);
            return rc;
        }
        if (smelt_imx_find(m, nm)) {
            int rc = SMELT_CORRUPT(e, name, at, nm, "legacy imatrix: duplicate entry");
            free(nm);
            return rc;
        }
        smelt_imx_entry en = {nm, (uint64_t)nval, 1, malloc((size_t)nval * 4), malloc(sizeof(int64_t))};
        if (!en.sums || !en.counts) {
            entry_free(&en);
            return SMELT_NOMEM(e, "imatrix entry");
        }
        memcpy(en.sums, r.p + r.pos, (size_t)nval * 4);
        r.pos += (size_t)nval * 4;
        en.counts[0] = ncall;
        int rc = insert_entry(m, &en, e);
        if (rc) {
            entry_free(&en);
            return rc;
        }
    }
    /* optional trailer: chunk count, then the dataset name */
    int32_t cc, len;
    if (rd_i32(&r, &cc)) {
        m->chunk_count = cc > 0 ? (uint32_t)cc : 0;
        size_t at = r.pos;
        if (rd_i32(&r, &len) && len > 0) {
            if ((size_t)len > size - r.pos)
                return SMELT_CORRUPT(e, name, at, NULL, "legacy imatrix: dataset name of %d bytes exceeds the %zu bytes left",
                                     len, size - r.pos);
            char *d = strndup((const char *)r.p + r.pos, (size_t)len);
            if (!d) return SMELT_NOMEM(e, "dataset");
            int rc = smelt_imx_add_dataset(m, d, e);
            free(d);
            if (rc) return rc;
        }
    }
    return 0;
}

int smelt_imx_read_mem(const void *buf, size_t size, const char *name, smelt_imx **out, smelt_err *e)
{
    *out = NULL;
    smelt_imx *m = smelt_imx_new();
    if (!m) return SMELT_NOMEM(e, "imatrix");
    int rc;
    if (size >= 4 && !memcmp(buf, "GGUF", 4)) {
        m->format = SMELT_IMX_GGUF;
        rc = read_gguf(m, buf, size, name, e);
    } else {
        m->format = SMELT_IMX_LEGACY;
        rc = read_legacy(m, buf, size, name, e);
    }
    if (rc) {
        smelt_imx_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int smelt_imx_read(const char *path, smelt_imx **out, smelt_err *e)
{
    *out = NULL;
    smelt_map map;
    int rc = smelt_map_open(&map, path, e);
    if (rc) return rc;
    rc = smelt_imx_read_mem(map.data, (size_t)map.size, path, out, e);
    smelt_map_close(&map);
    return rc;
}

/* ==== writers ==== */

static int64_t max_count(const smelt_imx_entry *en)
{
    int64_t mx = 0;
    for (uint64_t j = 0; j < en->n_mat; j++)
        if (en->counts[j] > mx) mx = en->counts[j];
    return mx;
}

static int write_gguf(const smelt_imx *m, const char *path, smelt_err *e)
{
    bool from_legacy = m->format == SMELT_IMX_LEGACY;
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    if (!w) return SMELT_NOMEM(e, "gguf writer");
    int rc = smelt_gguf_writer_set_str(w, K_TYPE, "imatrix", e);
    if (!rc) rc = smelt_gguf_writer_set_arr_str(w, K_DATASETS, (const char *const *)m->datasets, NULL, m->n_datasets, e);
    if (!rc) rc = smelt_gguf_writer_set_u32(w, K_CHUNK_COUNT, m->chunk_count, e);
    if (!rc) rc = smelt_gguf_writer_set_u32(w, K_CHUNK_SIZE, m->chunk_size, e);
    for (size_t i = 0; !rc && i < m->n_entries; i++) {
        const smelt_imx_entry *en = &m->entries[i];
        char nm[SMELT_GGUF_MAX_NAME + 16];
        const bool exact = m->write_exact && en->exact;
        const char *sfx = exact ? SFX_EXACT : SFX_SUMS;
        if (strlen(en->name) + strlen(sfx) + 1 > SMELT_GGUF_MAX_NAME) {
            rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, path, en->name,
                           "name too long for a GGUF tensor once '%s' is appended (limit %d bytes)", sfx,
                           SMELT_GGUF_MAX_NAME - 1);
            break;
        }
        uint64_t ne_s[2] = {en->n_values / en->n_mat, en->n_mat}, ne_c[2] = {1, en->n_mat};
        uint32_t nd = en->n_mat > 1 ? 2 : 1;
        snprintf(nm, sizeof nm, "%s%s", en->name, SFX_SUMS);
        rc = smelt_gguf_writer_add_tensor(w, nm, nd, ne_s, SMELT_TYPE_F32, e);
        snprintf(nm, sizeof nm, "%s%s", en->name, SFX_COUNTS);
        if (!rc) rc = smelt_gguf_writer_add_tensor(w, nm, nd, ne_c, SMELT_TYPE_F32, e);
        uint64_t ne_x[2] = {2, en->n_values};
        snprintf(nm, sizeof nm, "%s%s", en->name, SFX_EXACT);
        if (!rc && exact) rc = smelt_gguf_writer_add_tensor(w, nm, 2, ne_x, SMELT_TYPE_I64, e);
    }
    if (!rc) rc = smelt_gguf_writer_begin(w, path, e);
    float *tmp = NULL;
    for (size_t i = 0; !rc && i < m->n_entries; i++) {
        const smelt_imx_entry *en = &m->entries[i];
        float *nt = realloc(tmp, en->n_values * sizeof(float));
        if (!nt) {
            rc = SMELT_NOMEM(e, "imatrix row");
            break;
        }
        tmp = nt;
        for (uint64_t j = 0; j < en->n_values; j++)
            tmp[j] = from_legacy ? en->sums[j] * (float)m->chunk_size : en->sums[j];
        rc = smelt_gguf_writer_write(w, tmp, en->n_values * sizeof(float), e);
        for (uint64_t j = 0; !rc && j < en->n_mat; j++) {
            float c = from_legacy ? (float)(en->counts[0] * (int64_t)m->chunk_size) : (float)en->counts[j];
            rc = smelt_gguf_writer_write(w, &c, 4, e);
        }
        if (!rc && m->write_exact && en->exact)
            rc = smelt_gguf_writer_write(w, en->exact, 2 * en->n_values * sizeof(uint64_t), e);
    }
    free(tmp);
    if (!rc) rc = smelt_gguf_writer_commit(w, e);
    smelt_gguf_writer_free(w);
    return rc;
}

static void put_i32(uint8_t **p, int32_t v)
{
    memcpy(*p, &v, 4);
    *p += 4;
}

static int write_legacy(const smelt_imx *m, const char *path, smelt_err *e)
{
    bool from_gguf = m->format == SMELT_IMX_GGUF;
    int32_t n = 0;
    for (size_t i = 0; i < m->n_entries; i++)
        if (!from_gguf || max_count(&m->entries[i]) > 0) n++;
    smelt_outfile *o;
    int rc = smelt_outfile_open(&o, path, e);
    if (rc) return rc;
    rc = smelt_outfile_write(o, &n, 4, e);
    float *tmp = NULL;
    for (size_t i = 0; !rc && i < m->n_entries; i++) {
        const smelt_imx_entry *en = &m->entries[i];
        if (en->n_values > INT32_MAX || strlen(en->name) > INT32_MAX) {
            rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, path, en->name, "too large for the legacy format");
            break;
        }
        int32_t ncall;
        if (from_gguf) {
            int64_t mx = max_count(en);
            if (mx == 0) continue; /* no data: llama-imatrix leaves such entries out */
            ncall = (int32_t)((mx + m->chunk_size - 1) / m->chunk_size);
        } else {
            ncall = (int32_t)en->counts[0];
        }
        float *nt = realloc(tmp, en->n_values * sizeof(float));
        if (!nt) {
            rc = SMELT_NOMEM(e, "imatrix row");
            break;
        }
        tmp = nt;
        uint64_t per = en->n_values / en->n_mat;
        for (uint64_t j = 0; j < en->n_values; j++) {
            if (!from_gguf) {
                tmp[j] = en->sums[j];
                continue;
            }
            float count = (float)en->counts[j / per], value = en->sums[j];
            if (count == 0.0f) value = count = 1.0f;
            tmp[j] = (value / count) * (float)ncall;
        }
        uint8_t hdr[12], *p = hdr;
        int32_t len = (int32_t)strlen(en->name);
        rc = smelt_outfile_write(o, &len, 4, e);
        if (!rc) rc = smelt_outfile_write(o, en->name, (size_t)len, e);
        put_i32(&p, ncall);
        put_i32(&p, (int32_t)en->n_values);
        if (!rc) rc = smelt_outfile_write(o, hdr, 8, e);
        if (!rc) rc = smelt_outfile_write(o, tmp, en->n_values * sizeof(float), e);
    }
    free(tmp);
    if (!rc) {
        const char *ds = m->n_datasets ? m->datasets[m->n_datasets - 1] : "";
        int32_t cc = (int32_t)m->chunk_count, len = (int32_t)strlen(ds);
        rc = smelt_outfile_write(o, &cc, 4, e);
        if (!rc) rc = smelt_outfile_write(o, &len, 4, e);
        if (!rc) rc = smelt_outfile_write(o, ds, (size_t)len, e);
    }
    if (rc) {
        smelt_outfile_abort(o);
        return rc;
    }
    return smelt_outfile_commit(o, e);
}

int smelt_imx_write(const smelt_imx *m, const char *path, int format, smelt_err *e)
{
    if (format != SMELT_IMX_GGUF && format != SMELT_IMX_LEGACY)
        return SMELT_ERR(e, SMELT_EUSAGE, path, NULL, "unknown imatrix format %d", format);
    if (format != m->format && m->chunk_size == 0)
        return SMELT_ERR(e, SMELT_EUSAGE, path, NULL,
                         "converting a %s imatrix to the %s format needs its chunk size (tokens per chunk)",
                         m->format == SMELT_IMX_GGUF ? "GGUF" : "legacy", format == SMELT_IMX_GGUF ? "GGUF" : "legacy");
    return format == SMELT_IMX_GGUF ? write_gguf(m, path, e) : write_legacy(m, path, e);
}

/* ==== combining ==== */

typedef struct {
    const char *name;  /* the first input's entry name (inputs outlive the accumulator) */
    const char *from;  /* the file it first came from */
    uint64_t n_values, n_mat;
    double *sums;      /* raw Σx², n_values */
    int64_t *counts;   /* n_mat */
    uint64_t *exact;   /* 2 x n_values while every input so far had exact sums, else NULL */
} comb_entry;

static void comb_free(comb_entry *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(c[i].sums);
        free(c[i].counts);
        free(c[i].exact);
    }
    free(c);
}

/* A legacy entry has one ncall for all its values (n_mat 1): spread over n_mat matrices. */
static int comb_widen(comb_entry *c, uint64_t n_mat, smelt_err *e)
{
    int64_t *nc = malloc(n_mat * sizeof *nc);
    if (!nc) return SMELT_NOMEM(e, "imatrix counts");
    for (uint64_t j = 0; j < n_mat; j++) nc[j] = c->counts[0];
    free(c->counts);
    c->counts = nc;
    c->n_mat = n_mat;
    return 0;
}

static int comb_add(comb_entry *c, const smelt_imx *m, const smelt_imx_entry *en, uint32_t chunk_size,
                    const char *path, smelt_err *e)
{
    const bool legacy = m->format == SMELT_IMX_LEGACY;
    uint64_t n_mat = en->n_mat;
    if (c->n_values != en->n_values || (c->n_mat != n_mat && c->n_mat != 1 && n_mat != 1))
        return SMELT_ERR(e, SMELT_EMISMATCH, path, en->name,
                         "%" PRIu64 " values in %" PRIu64 " matrices, but %s has %" PRIu64 " in %" PRIu64
                         " (imatrices of different models?)",
                         en->n_values, n_mat, c->from, c->n_values, c->n_mat);
    if (c->exact && (!en->exact || legacy || c->n_mat != n_mat)) {
        free(c->exact);
        c->exact = NULL;
    }
    for (uint64_t j = 0; c->exact && j < en->n_values; j++)
        if (!smelt_imx_fixed_add(c->exact + 2 * j, en->exact + 2 * j))
            return SMELT_ERR(e, SMELT_EUNSUPPORTED, path, en->name, "sum of squares beyond 2^64");
    if (c->n_mat < n_mat) {
        int rc = comb_widen(c, n_mat, e);
        if (rc) return rc;
    }
    for (uint64_t j = 0; j < en->n_values; j++)
        c->sums[j] += legacy ? (double)en->sums[j] * chunk_size : (double)en->sums[j];
    for (uint64_t j = 0; j < c->n_mat; j++) {
        int64_t k = en->counts[n_mat == 1 ? 0 : j];
        c->counts[j] += legacy ? k * (int64_t)chunk_size : k;
    }
    return 0;
}

static int add_dataset_once(smelt_imx *m, const char *ds, smelt_err *e)
{
    for (size_t i = 0; i < m->n_datasets; i++)
        if (!strcmp(m->datasets[i], ds)) return 0;
    return smelt_imx_add_dataset(m, ds, e);
}

int smelt_imx_combine(smelt_imx *const *in, const char *const *paths, size_t n, uint32_t chunk_size, smelt_imx **out,
                      smelt_err *e)
{
    *out = NULL;
    if (!n) return SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL, "no imatrix to combine");
    const char *cs_from = NULL;
    for (size_t f = 0; f < n; f++) {
        if (in[f]->format != SMELT_IMX_GGUF || !in[f]->chunk_size) continue;
        if (!cs_from) {
            cs_from = paths[f];
            chunk_size = in[f]->chunk_size;
        } else if (in[f]->chunk_size != chunk_size) {
            return SMELT_ERR(e, SMELT_EMISMATCH, paths[f], NULL,
                             "collected over chunks of %u tokens, but %s over chunks of %u: combine imatrices made "
                             "with the same context size",
                             in[f]->chunk_size, cs_from, chunk_size);
        }
    }
    if (!chunk_size) chunk_size = 512;
    comb_entry *acc = NULL;
    size_t n_acc = 0, cap = 0;
    int rc = 0;
    for (size_t f = 0; !rc && f < n; f++) {
        for (size_t i = 0; !rc && i < in[f]->n_entries; i++) {
            const smelt_imx_entry *en = &in[f]->entries[i];
            size_t k = 0;
            while (k < n_acc && strcmp(acc[k].name, en->name)) k++;
            if (k == n_acc) {
                if (n_acc == cap) {
                    size_t nc = cap ? 2 * cap : 64;
                    comb_entry *na = realloc(acc, nc * sizeof *na);
                    if (!na) {
                        rc = SMELT_NOMEM(e, "imatrix entries");
                        break;
                    }
                    acc = na;
                    cap = nc;
                }
                const bool exact = en->exact && in[f]->format == SMELT_IMX_GGUF;
                comb_entry c = {en->name, paths[f], en->n_values, en->n_mat, calloc(en->n_values, sizeof(double)),
                                calloc(en->n_mat, sizeof(int64_t)),
                                exact ? calloc(2 * en->n_values, sizeof(uint64_t)) : NULL};
                acc[n_acc++] = c;
                if (!c.sums || !c.counts || (exact && !c.exact)) {
                    rc = SMELT_NOMEM(e, "an imatrix entry");
                    break;
                }
            }
            rc = comb_add(&acc[k], in[f], en, chunk_size, paths[f], e);
        }
    }
    smelt_imx *m = rc ? NULL : smelt_imx_new();
    if (!rc && !m) rc = SMELT_NOMEM(e, "the imatrix");
    float *tmp = NULL;
    int64_t mx = 0;
    for (size_t k = 0; !rc && k < n_acc; k++) {
        const comb_entry *c = &acc[k];
        float *nt = realloc(tmp, c->n_values * sizeof(float));
        if (!nt) {
            rc = SMELT_NOMEM(e, "imatrix row");
            break;
        }
        tmp = nt;
        for (uint64_t j = 0; j < c->n_values; j++)
            tmp[j] = c->exact ? smelt_imx_fixed_f32(c->exact + 2 * j) : (float)c->sums[j];
        for (uint64_t j = 0; j < c->n_mat; j++)
            if (c->counts[j] > mx) mx = c->counts[j];
        rc = smelt_imx_add(m, c->name, c->n_values, c->n_mat, tmp, c->counts, e);
        if (!rc && c->exact) { /* kept: the combination can be written with them again */
            smelt_imx_entry *en = (smelt_imx_entry *)smelt_imx_find(m, c->name);
            en->exact = acc[k].exact;
            acc[k].exact = NULL;
        }
    }
    free(tmp);
    for (size_t f = 0; !rc && f < n; f++)
        for (size_t i = 0; !rc && i < in[f]->n_datasets; i++) rc = add_dataset_once(m, in[f]->datasets[i], e);
    comb_free(acc, n_acc);
    if (rc) {
        smelt_imx_free(m);
        return rc;
    }
    m->chunk_size = chunk_size;
    m->chunk_count = (uint32_t)(mx / chunk_size);
    m->has_metadata = true;
    *out = m;
    return 0;
}

/* ==== statistics ==== */

/* Block index of "blk.N.…", or -1. */
static int block_of(const char *name)
{
    if (strncmp(name, "blk.", 4)) return -1;
    char *end;
    long b = strtol(name + 4, &end, 10);
    return end != name + 4 && *end == '.' && b >= 0 && b < INT32_MAX ? (int)b : -1;
}

/* The same weight one block earlier ("blk.3.ffn_up.weight" → "blk.2.ffn_up.weight"). */
static const smelt_imx_entry *previous_block(const smelt_imx *m, const smelt_imx_entry *en, int blk)
{
    if (blk <= 0) return NULL;
    const char *rest = strchr(en->name + 4, '.');
    char nm[IMX_MAX_NAME + 32];
    if (strlen(rest) > IMX_MAX_NAME) return NULL;
    snprintf(nm, sizeof nm, "blk.%d%s", blk - 1, rest);
    return smelt_imx_find(m, nm);
}

static double cosine(const float *a, const float *b, uint64_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (uint64_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : NAN;
}

int smelt_imx_stats(const smelt_imx *m, smelt_imx_stat **out, smelt_err *e)
{
    *out = NULL;
    smelt_imx_stat *st = calloc(m->n_entries ? m->n_entries : 1, sizeof *st);
    uint64_t cap = 0;
    for (size_t i = 0; i < m->n_entries; i++)
        if (m->entries[i].n_values > cap) cap = m->entries[i].n_values;
    double *v = malloc((cap ? cap : 1) * sizeof *v);
    if (!st || !v) {
        free(st);
        free(v);
        return SMELT_NOMEM(e, "imatrix statistics");
    }
    for (size_t i = 0; i < m->n_entries; i++) {
        const smelt_imx_entry *en = &m->entries[i];
        smelt_imx_stat *s = &st[i];
        s->name = en->name;
        s->layer = block_of(en->name);
        s->n_mat = en->n_mat;
        const uint64_t per = en->n_values / en->n_mat;
        uint64_t n = 0;
        for (uint64_t k = 0; k < en->n_mat; k++) {
            int64_t c = en->counts[k];
            if (c <= 0) {
                s->n_mat_empty++;
                continue;
            }
            for (uint64_t j = 0; j < per; j++) v[n++] = (double)en->sums[k * per + j] / (double)c;
        }
        s->n_values = n;
        s->cossim = NAN;
        const smelt_imx_entry *prev = previous_block(m, en, s->layer);
        if (prev && prev->n_values == en->n_values) s->cossim = cosine(en->sums, prev->sums, en->n_values);
        if (!n) continue;
        double sum = 0, sum2 = 0, mn = v[0], mxv = v[0];
        uint64_t active = 0;
        for (uint64_t j = 0; j < n; j++) {
            sum += v[j];
            sum2 += v[j] * v[j];
            if (v[j] < mn) mn = v[j];
            if (v[j] > mxv) mxv = v[j];
            active += v[j] > 1e-5;
        }
        const double mean = sum / (double)n, var = sum2 / (double)n - mean * mean, sd = var > 0 ? sqrt(var) : 0;
        double ent = 0;
        uint64_t above = 0;
        for (uint64_t j = 0; j < n; j++) {
            double p = sum > 0 ? v[j] / sum : 0;
            if (p > 0) ent -= p * log2(p);
            above += sd > 0 && (v[j] - mean) / sd > 1;
        }
        s->sum = sum;
        s->min = mn;
        s->max = mxv;
        s->mean = mean;
        s->stddev = sd;
        s->active = (double)active / (double)n;
        s->entropy = ent;
        s->entropy_norm = n > 1 ? ent / log2((double)n) : 0;
        s->z_above_1 = (double)above / (double)n;
    }
    free(v);
    *out = st;
    return 0;
}
