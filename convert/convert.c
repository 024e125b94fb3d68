/* convert.c — streaming a plan into a GGUF file: one output tensor at a time, each made
 * of row runs of mapped source tensors (permuted for Q/K, stacked for experts), converted
 * in bounded chunks over the thread pool. Includes convert/, formats/, quant/. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert/convert_int.h"
#include "formats/base/file.h"
#include "formats/base/finite.h"
#include "formats/base/half.h"
#include "formats/base/pool.h"
#include "formats/gguf.h"
#include "quant/qtypes.h"

#define CHUNK_ELEMS (1u << 20) /* values converted per step: 4 MB of f32 */
#define DIRECT_SLICE (256u << 10) /* bytes checked for NaN/Inf, then written, per step of a copy */

static smelt_gguf_writer *make_writer(const smelt_convert_plan *p, bool split, smelt_err *e)
{
    smelt_gguf_writer *w = smelt_gguf_writer_new();
    if (!w) {
        SMELT_NOMEM(e, "GGUF writer");
        return NULL;
    }
    /* gguf-py leaves a file without tensors unpadded after its header */
    smelt_gguf_writer_set_pad_empty(w, false);
    if (split) smelt_gguf_writer_set_split(w, p->opts.split_max_bytes, p->opts.split_max_tensors);
    if (p->opts.guard) smelt_gguf_writer_set_guard(w, p->opts.guard);
    int rc = smelt_kvs_apply(&p->kv, w, e);
    for (size_t i = 0; i < p->n && !rc; i++)
        rc = smelt_gguf_writer_add_tensor(w, p->t[i].name, p->t[i].n_dims, p->t[i].ne, p->t[i].type, e);
    if (rc) {
        smelt_gguf_writer_free(w);
        return NULL;
    }
    return w;
}

uint64_t smelt_convert_plan_file_size(const smelt_convert_plan *p)
{
    smelt_err e;
    smelt_gguf_writer *w = make_writer(p, p->opts.split, &e);
    uint64_t n = w ? smelt_gguf_writer_file_size(w) : 0;
    smelt_gguf_writer_free(w);
    return n;
}

/* ==== row conversion ==== */

typedef struct {
    const smelt_cv_tensor *t;
    const smelt_cv_part *part;
    const uint8_t *src;     /* the part's source tensor bytes */
    smelt_dtype dt;
    uint64_t first;         /* first output row of this chunk, within the part */
    uint64_t tensor_row0;   /* output row index (within the tensor) of the part's first row */
    uint64_t rows;          /* rows in this chunk */
    uint64_t rows_per_task;
    float *f32;
    uint8_t *out;
    uint64_t out_row_bytes;
    uint64_t *overflow;     /* per task */
    uint64_t *nonfinite;    /* per task: NaN/±Inf among the values read */
    const smelt_qtype_ops *q8;
} chunk_job;

/* Source row (within the source tensor) for output row r of the tensor. */
static uint64_t source_row(const smelt_cv_tensor *t, const smelt_cv_part *part, uint64_t tensor_row, uint64_t part_row)
{
    if (!t->perm_heads) return part->row0 + part_row;
    /* llama.cpp's permute(): per head, [2, hd/2] → [hd/2, 2] on the rows
     *   out row h*hd + 2i + s  ←  in row h*hd + s*(hd/2) + i */
    uint64_t R = part->nrows, hd = R / (uint64_t)t->perm_heads;
    uint64_t h = tensor_row / hd, r = tensor_row % hd;
    return part->row0 + h * hd + (r % 2) * (hd / 2) + r / 2;
}

static void run_rows(void *ctx, size_t task, int thread)
{
    (void)thread;
    chunk_job *j = ctx;
    const smelt_cv_tensor *t = j->t;
    uint64_t r0 = task * j->rows_per_task, r1 = r0 + j->rows_per_task;
    if (r1 > j->rows) r1 = j->rows;
    size_t es = smelt_dtype_size(j->dt);
    uint64_t L = t->row_len, over = 0, nf = 0;
    int direct = (j->dt == SMELT_DT_F32 && t->type == SMELT_TYPE_F32) || (j->dt == SMELT_DT_F16 && t->type == SMELT_TYPE_F16);
    for (uint64_t r = r0; r < r1; r++) {
        uint64_t pr = j->first + r;
        uint64_t sr = source_row(t, j->part, j->tensor_row0 + pr, pr);
        const uint8_t *in = j->src + sr * L * es;
        uint8_t *out = j->out + r * j->out_row_bytes;
        if (direct) {
            memcpy(out, in, (size_t)(L * es));
            nf += smelt_nonfinite_count(j->dt == SMELT_DT_F32 ? SMELT_FIN_F32 : SMELT_FIN_F16, in, L);
            continue;
        }
        float *f = j->f32 + r * L;
        smelt_dtype_to_f32(j->dt, in, f, (size_t)L);
        nf += smelt_nonfinite_f32(f, L);
        switch (t->type) {
        case SMELT_TYPE_F32: memcpy(out, f, (size_t)L * 4); break;
        case SMELT_TYPE_F16: over += smelt_row_f32_to_f16(f, (uint16_t *)(void *)out, (size_t)L, SMELT_F16_OVERFLOW_INF); break;
        case SMELT_TYPE_BF16: smelt_row_f32_to_bf16(f, (uint16_t *)(void *)out, (size_t)L); break;
        default: break; /* Q8_0: after the loop */
        }
    }
    if (t->type == SMELT_TYPE_Q8_0 && r1 > r0) {
        if (j->q8 && j->q8->quantize_ref) {
            for (uint64_t r = r0; r < r1; r++) j->q8->quantize_ref(j->f32 + r * L, j->out + r * j->out_row_bytes, (int64_t)L);
        } else {
            smelt_err e;
            smelt_q_quantize_rows(SMELT_TYPE_Q8_0, j->f32 + r0 * L, j->out + r0 * j->out_row_bytes, (int64_t)(r1 - r0), (int64_t)L,
                                  NULL, NULL, &e); /* availability was checked when planning */
        }
    }
    j->overflow[task] = over;
    j->nonfinite[task] = nf;
}

typedef struct {
    smelt_pool *pool;
    int threads;
    float *f32;
    uint8_t *out;
    uint64_t *overflow;
    uint64_t *nonfinite;
    smelt_scratch scratch;
} workspace;

/* The refusal of a part holding NaN/±Inf: the first one in the source tensor's own order
 * (rows [row0, row0 + nrows) of it), found again by converting the rows to f32 as the
 * writer does. */
static int refuse_nonfinite(workspace *ws, const smelt_tinfo *ti, const uint8_t *data, const smelt_cv_part *part,
                            uint64_t L, smelt_err *e)
{
    size_t es = smelt_dtype_size(ti->dtype);
    uint64_t n = part->nrows * L, step = L > CHUNK_ELEMS ? L : CHUNK_ELEMS;
    const uint8_t *base = data + part->row0 * L * es;
    for (uint64_t i0 = 0; i0 < n; i0 += step) {
        uint64_t m = n - i0 < step ? n - i0 : step;
        smelt_dtype_to_f32(ti->dtype, base + i0 * es, ws->f32, (size_t)m);
        double v;
        uint64_t k = smelt_nonfinite_first(SMELT_FIN_F32, ws->f32, m, &v);
        if (k == m) continue;
        double orig = v;
        if (ti->dtype == SMELT_DT_F64) memcpy(&orig, base + (i0 + k) * 8, 8);
        return SMELT_ERR_NONFINITE(e, ti->file ? ti->file : "weights", ti->name, NULL, part->row0 * L + i0 + k, v,
                                   isfinite(orig) ? " (an F64 value beyond the f32 range)" : NULL);
    }
    return SMELT_ERR(e, SMELT_EINTERNAL, ti->file, ti->name, "non-finite values counted but not found again");
}

static int write_part(smelt_convert_plan *p, smelt_gguf_writer *w, workspace *ws, const smelt_cv_tensor *t, const smelt_cv_part *part,
                      uint64_t tensor_row0, uint64_t *overflow, uint64_t *nonfinite, smelt_err *e)
{
    const smelt_tinfo *ti = smelt_tsrc_info(p->src, part->src);
    const void *data;
    int rc = smelt_tsrc_read(p->src, part->src, &data, &ws->scratch, e);
    if (rc) return rc;
    uint64_t L = t->row_len, orb;
    smelt_type_row_bytes(t->type, L, &orb, e);
    size_t es = smelt_dtype_size(ti->dtype);
    int direct = ((ti->dtype == SMELT_DT_F32 && t->type == SMELT_TYPE_F32) || (ti->dtype == SMELT_DT_F16 && t->type == SMELT_TYPE_F16));
    if (direct && !t->perm_heads) {
        /* same format, same order: straight from the mapping */
        const uint8_t *src = (const uint8_t *)data + part->row0 * L * es;
        uint64_t n = part->nrows * L, slice = DIRECT_SLICE / es; /* checked, then written while in cache */
        for (uint64_t i = 0; i < n && !rc; i += slice) {
            uint64_t m = n - i < slice ? n - i : slice;
            uint64_t nf = smelt_nonfinite_count(ti->dtype == SMELT_DT_F32 ? SMELT_FIN_F32 : SMELT_FIN_F16, src + i * es, m);
            *nonfinite += nf;
            if (nf && !p->opts.allow_nonfinite) rc = refuse_nonfinite(ws, ti, data, part, L, e);
            else rc = smelt_gguf_writer_write(w, src + i * es, (size_t)(m * es), e);
        }
        smelt_tsrc_release(p->src, part->src);
        return rc;
    }
    uint64_t per_chunk = L >= CHUNK_ELEMS ? 1 : CHUNK_ELEMS / L;
    chunk_job j = {t, part, data, ti->dtype, 0, tensor_row0, 0, 0, ws->f32, ws->out, orb, ws->overflow, ws->nonfinite,
                   smelt_q_ops(SMELT_TYPE_Q8_0)};
    for (uint64_t first = 0; first < part->nrows && !rc; first += per_chunk) {
        uint64_t rows = part->nrows - first < per_chunk ? part->nrows - first : per_chunk;
        j.first = first;
        j.rows = rows;
        uint64_t tasks = (uint64_t)ws->threads;
        if (tasks > rows) tasks = rows;
        if (rows * L < 65536) tasks = 1; /* not worth waking threads */
        j.rows_per_task = (rows + tasks - 1) / tasks;
        tasks = (rows + j.rows_per_task - 1) / j.rows_per_task;
        smelt_pool_run(ws->pool, (size_t)tasks, run_rows, &j);
        uint64_t nf = 0;
        for (uint64_t k = 0; k < tasks; k++) {
            *overflow += ws->overflow[k];
            nf += ws->nonfinite[k];
        }
        *nonfinite += nf;
        if (nf && !p->opts.allow_nonfinite) {
            rc = refuse_nonfinite(ws, ti, data, part, L, e);
            break;
        }
        rc = smelt_gguf_writer_write(w, ws->out, (size_t)(rows * orb), e);
    }
    smelt_tsrc_release(p->src, part->src);
    return rc;
}

static int alloc_workspace(const smelt_convert_plan *p, workspace *ws, smelt_err *e)
{
    memset(ws, 0, sizeof *ws);
    uint64_t max_row = 1;
    for (size_t i = 0; i < p->n; i++)
        if (p->t[i].row_len > max_row) max_row = p->t[i].row_len;
    uint64_t elems = max_row > CHUNK_ELEMS ? max_row : CHUNK_ELEMS;
    ws->threads = p->opts.n_threads > 0 ? p->opts.n_threads : smelt_cpu_count();
    if (ws->threads > 256) ws->threads = 256;
    ws->pool = ws->threads > 1 ? smelt_pool_new(ws->threads) : NULL;
    if (ws->threads > 1 && !ws->pool) ws->threads = 1;
    ws->f32 = malloc((size_t)elems * sizeof(float));
    ws->out = malloc((size_t)elems * sizeof(float));
    ws->overflow = calloc((size_t)ws->threads + 1, sizeof *ws->overflow);
    ws->nonfinite = calloc((size_t)ws->threads + 1, sizeof *ws->nonfinite);
    if (!ws->f32 || !ws->out || !ws->overflow || !ws->nonfinite) return SMELT_NOMEM(e, "conversion buffers");
    return 0;
}

static void free_workspace(workspace *ws)
{
    smelt_pool_free(ws->pool);
    free(ws->f32);
    free(ws->out);
    free(ws->overflow);
    free(ws->nonfinite);
    smelt_scratch_free(&ws->scratch);
}

int smelt_convert_plan_write(smelt_convert_plan *p, const char *out_path, smelt_convert_result *res, smelt_err *e)
{
    double t0 = smelt_now();
    smelt_convert_result r;
    memset(&r, 0, sizeof r);
    workspace ws;
    int rc = alloc_workspace(p, &ws, e);
    smelt_gguf_writer *w = rc ? NULL : make_writer(p, p->opts.split, e);
    if (!rc && !w) rc = e->code ? e->code : SMELT_ENOMEM;
    if (!rc) rc = smelt_fs_check_space(out_path, smelt_gguf_writer_file_size(w), 0, e);
    if (!rc) rc = smelt_gguf_writer_begin(w, out_path, e);
    uint64_t bytes = 0;
    for (size_t i = 0; i < p->n && !rc; i++) {
        const smelt_cv_tensor *t = &p->t[i];
        uint64_t over = 0, row0 = 0, nf = 0;
        if (t->data) rc = smelt_gguf_writer_write(w, t->data, (size_t)t->nbytes, e);
        for (size_t k = 0; k < t->n_parts && !rc; k++) {
            rc = write_part(p, w, &ws, t, &t->parts[k], row0, &over, &nf, e);
            row0 += t->parts[k].nrows;
        }
        if (rc) {
            /* a refused value (here or by a merging source) is named by its source already */
            if (!smelt_err_is_nonfinite(e)) smelt_err_prefix(e, "while writing %s", t->name);
            break;
        }
        if (nf) { /* only with allow_nonfinite */
            r.nonfinite += nf;
            r.nonfinite_tensors++;
            smelt_note(&p->opts.notes, "%s: %llu NaN/Inf value%s in the input, written unchanged (--allow-nonfinite)", t->name,
                       (unsigned long long)nf, nf == 1 ? "" : "s");
        }
        if (over) {
            r.f16_overflow += over;
            r.f16_overflow_tensors++;
            smelt_note(&p->opts.notes, "%s: %llu values beyond the f16 range (±65504) became ±inf", t->name, (unsigned long long)over);
        }
        bytes += t->nbytes;
        smelt_progress_step(&p->opts.progress, i + 1, p->n, bytes, t->name);
    }
    if (!rc) {
        r.bytes = smelt_gguf_writer_file_size(w);
        r.n_files = smelt_gguf_writer_n_files(w);
        rc = smelt_gguf_writer_commit(w, e);
    }
    smelt_gguf_writer_free(w); /* aborts (removes the temporary file) when not committed */
    free_workspace(&ws);
    r.n_tensors = p->n;
    r.seconds = smelt_now() - t0;
    if (res) *res = r;
    return rc;
}

/* ==== one pass into the quantizer ==== */

/* The plan as the quantizer's model source: the file's header as metadata, and rows of a
 * tensor converted on request, exactly as plan_write converts them. */
typedef struct {
    smelt_convert_plan *p;
    workspace ws;
    const smelt_qtype_ops *q8;
    bool have;             /* a source tensor is held (a merged one is computed once) */
    uint64_t cur;          /* which */
    const void *data;
    uint64_t over_t, over; /* f16 overflow of the tensor read last, noted when it changes */
    smelt_convert_result r;
} onepass;

static void onepass_drop(onepass *o)
{
    if (o->have) smelt_tsrc_release(o->p->src, o->cur);
    o->have = false;
}

static void onepass_note_overflow(onepass *o)
{
    if (!o->over) return;
    o->r.f16_overflow += o->over;
    o->r.f16_overflow_tensors++;
    smelt_note(&o->p->opts.notes, "%s: %llu values beyond the f16 range (±65504) became ±inf", o->p->t[o->over_t].name,
               (unsigned long long)o->over);
    o->over = 0;
}

static int onepass_rows(void *user, uint64_t i, uint64_t row0, uint64_t nrows, void *dst, smelt_err *e)
{
    onepass *o = user;
    smelt_convert_plan *p = o->p;
    workspace *ws = &o->ws;
    if (i >= p->n) return SMELT_ERR(e, SMELT_EINTERNAL, NULL, NULL, "tensor %llu of %zu", (unsigned long long)i, p->n);
    const smelt_cv_tensor *t = &p->t[i];
    if (i != o->over_t) onepass_note_overflow(o);
    o->over_t = i;
    /* a GGUF row (ne[0] values) is k rows of the parts (1-D tensors have rows of one value) */
    uint64_t L = t->row_len, k = L && t->ne[0] % L == 0 ? t->ne[0] / L : 0, orb;
    if (!k) return SMELT_ERR(e, SMELT_EINTERNAL, NULL, t->name, "rows of %llu values in a tensor of rows of %llu",
                             (unsigned long long)L, (unsigned long long)t->ne[0]);
    int rc = smelt_type_row_bytes(t->type, L, &orb, e);
    if (rc) return rc;
    uint64_t a = row0 * k, b = (row0 + nrows) * k, s = 0;
    uint64_t per_chunk = L >= CHUNK_ELEMS ? 1 : CHUNK_ELEMS / L;
    for (size_t pi = 0; pi < t->n_parts && !rc; s += t->parts[pi++].nrows) {
        const smelt_cv_part *part = &t->parts[pi];
        uint64_t lo = a > s ? a : s, hi = b < s + part->nrows ? b : s + part->nrows;
        if (lo >= hi) continue;
        if (!o->have || o->cur != part->src) {
            onepass_drop(o);
            if ((rc = smelt_tsrc_read(p->src, part->src, &o->data, &ws->scratch, e))) break;
            o->have = true;
            o->cur = part->src;
        }
        const smelt_tinfo *ti = smelt_tsrc_info(p->src, part->src);
        chunk_job j = {t, part, o->data, ti->dtype, 0, s, 0, 0, ws->f32, NULL, orb, ws->overflow, ws->nonfinite, o->q8};
        for (uint64_t first = lo - s; first < hi - s; first += j.rows) {
            j.first = first;
            j.rows = hi - s - first < per_chunk ? hi - s - first : per_chunk;
            j.out = (uint8_t *)dst + (s + first - a) * orb;
            uint64_t tasks = (uint64_t)ws->threads;
            if (tasks > j.rows) tasks = j.rows;
            if (j.rows * L < 65536) tasks = 1;
            j.rows_per_task = (j.rows + tasks - 1) / tasks;
            tasks = (j.rows + j.rows_per_task - 1) / j.rows_per_task;
            smelt_pool_run(ws->pool, (size_t)tasks, run_rows, &j);
            uint64_t nf = 0;
            for (uint64_t q = 0; q < tasks; q++) {
                o->over += ws->overflow[q];
                nf += ws->nonfinite[q];
            }
            o->r.nonfinite += nf;
            if (nf && !p->opts.allow_nonfinite) {
                rc = refuse_nonfinite(ws, ti, o->data, part, L, e);
                break;
            }
        }
    }
    return rc;
}

int smelt_convert_plan_quantize(smelt_convert_plan *p, const smelt_quantize_opts *qo, const char *in_name, const char *out_path,
                                const smelt_progress *progress, smelt_convert_result *res, smelt_err *e)
{
    double t0 = smelt_now();
    onepass o;
    memset(&o, 0, sizeof o);
    o.p = p;
    o.q8 = smelt_q_ops(SMELT_TYPE_Q8_0);
    uint8_t *head = NULL;
    size_t head_n = 0;
    smelt_gguf *meta = NULL;
    int rc = alloc_workspace(p, &o.ws, e);
    smelt_gguf_writer *w = rc ? NULL : make_writer(p, false, e);
    if (!rc && !w) rc = e->code ? e->code : SMELT_ENOMEM;
    if (!rc) rc = smelt_gguf_writer_header(w, &head, &head_n, e);
    smelt_gguf_writer_free(w);
    if (!rc) rc = smelt_gguf_open_mem(head, head_n, in_name, SMELT_GGUF_META_ONLY, &meta, e);
    if (!rc && smelt_gguf_n_tensors(meta) != p->n)
        rc = SMELT_ERR(e, SMELT_EINTERNAL, in_name, NULL, "the plan's header lists %llu tensors, the plan %zu",
                       (unsigned long long)smelt_gguf_n_tensors(meta), p->n);
    if (!rc) {
        smelt_quantize_source src = {meta, onepass_rows, &o, p->opts.guard};
        smelt_quantize_opts q = *qo;
        q.source = &src;
        rc = smelt_quantize_run(&q, in_name, out_path, progress, e);
    }
    onepass_drop(&o);
    onepass_note_overflow(&o);
    smelt_gguf_close(meta);
    free(head);
    free_workspace(&o.ws);
    o.r.n_tensors = p->n;
    o.r.seconds = smelt_now() - t0;
    if (res) *res = o.r;
    return rc;
}

int smelt_convert_run(const smelt_tsrc *weights, json_t *config, const char *config_path, const char *tok_dir,
                      const smelt_convert_opts *opts, const char *out_path, smelt_convert_result *res, smelt_err *e)
{
    smelt_convert_plan *p;
    int rc = smelt_convert_plan_new(weights, config, config_path, tok_dir, opts, &p, e);
    if (rc) return rc;
    if (opts->quantize) rc = smelt_convert_plan_quantize(p, opts->quantize, tok_dir, out_path, opts->quantize_progress, res, e);
    else rc = smelt_convert_plan_write(p, out_path, res, e);
    smelt_convert_plan_free(p);
    return rc;
}
