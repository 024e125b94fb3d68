/* target.c — error estimates per candidate type and the size-constrained choice of
 * smelt-quantize --target-bpw / --target-size (target.h). Includes formats/ and quant/ only. */
#include "target.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "formats/ggml_types.h"

/* By size. Types smelt cannot encode yet are skipped where the candidates are used. */
static const int k_types[] = {
    SMELT_TYPE_IQ1_S,  SMELT_TYPE_IQ1_M, SMELT_TYPE_IQ2_XXS, SMELT_TYPE_IQ2_XS, SMELT_TYPE_IQ2_S,
    SMELT_TYPE_Q2_K,   SMELT_TYPE_IQ3_XXS, SMELT_TYPE_Q3_K,  SMELT_TYPE_IQ3_S,  SMELT_TYPE_IQ4_XS,
    SMELT_TYPE_Q4_0,   SMELT_TYPE_Q4_K,  SMELT_TYPE_IQ4_NL,  SMELT_TYPE_Q4_1,   SMELT_TYPE_Q5_0,
    SMELT_TYPE_Q5_K,   SMELT_TYPE_Q5_1,  SMELT_TYPE_Q6_K,    SMELT_TYPE_Q8_0,
};
_Static_assert(sizeof k_types / sizeof k_types[0] <= SMELT_TARGET_MAX_TYPES, "candidate table too long");

size_t smelt_target_n_types(void) { return sizeof k_types / sizeof k_types[0]; }
int smelt_target_type_at(size_t i) { return i < smelt_target_n_types() ? k_types[i] : -1; }

/* ==== classes ==== */

static const struct {
    const char *name;
    double sensitivity;
} k_classes[SMELT_TC_COUNT] = {
    /* KL-divergence per unit of summed relative error when the class alone is quantized
     * (q3_K, the sample model, calib.txt; tests/oracle/target-sensitivity), ffn_down = 1 */
    [SMELT_TC_TOKEN_EMBEDDING] = {"token_embd", 18.3}, [SMELT_TC_OUTPUT] = {"output", 24.1},
    [SMELT_TC_ATTN_Q] = {"attn_q", 1.34},              [SMELT_TC_ATTN_K] = {"attn_k", 1.02},
    [SMELT_TC_ATTN_V] = {"attn_v", 0.92},              [SMELT_TC_ATTN_OUTPUT] = {"attn_output", 0.80},
    [SMELT_TC_FFN_GATE] = {"ffn_gate", 0.41},          [SMELT_TC_FFN_UP] = {"ffn_up", 0.31},
    [SMELT_TC_FFN_DOWN] = {"ffn_down", 1.0},           [SMELT_TC_OTHER] = {"other", 1.0},
};

const char *smelt_target_class_name(smelt_target_class c)
{
    return c < SMELT_TC_COUNT ? k_classes[c].name : "other";
}

int smelt_target_class_find(const char *name)
{
    for (int c = 0; c < SMELT_TC_COUNT; c++)
        if (!strcmp(name, k_classes[c].name)) return c;
    return -1;
}

double smelt_target_default_sensitivity(smelt_target_class c)
{
    return c < SMELT_TC_COUNT ? k_classes[c].sensitivity : 1.0;
}

/* The part of a block tensor's name after "blk.N." starts with `stem` followed by '.' or '_'
 * (ffn_down.weight, ffn_down_exps.weight, ffn_down_shexp.weight). */
static bool stem_is(const char *part, const char *stem)
{
    size_t n = strlen(stem);
    return !strncmp(part, stem, n) && (part[n] == '.' || part[n] == '_');
}

smelt_target_class smelt_target_class_of(const char *tensor)
{
    if (!strcmp(tensor, "token_embd.weight") || !strcmp(tensor, "per_layer_token_embd.weight"))
        return SMELT_TC_TOKEN_EMBEDDING;
    if (!strcmp(tensor, "output.weight")) return SMELT_TC_OUTPUT;
    const char *part = tensor;
    if (!strncmp(tensor, "blk.", 4)) {
        const char *dot = strchr(tensor + 4, '.');
        if (!dot) return SMELT_TC_OTHER;
        part = dot + 1;
    }
    static const struct { const char *stem; smelt_target_class c; } stems[] = {
        {"attn_qkv", SMELT_TC_ATTN_V},       {"attn_q", SMELT_TC_ATTN_Q},     {"attn_k", SMELT_TC_ATTN_K},
        {"attn_v", SMELT_TC_ATTN_V},         {"attn_output", SMELT_TC_ATTN_OUTPUT},
        {"ffn_gate", SMELT_TC_FFN_GATE},     {"ffn_up", SMELT_TC_FFN_UP},     {"ffn_down", SMELT_TC_FFN_DOWN},
    };
    for (size_t i = 0; i < sizeof stems / sizeof stems[0]; i++)
        if (stem_is(part, stems[i].stem)) return stems[i].c;
    return SMELT_TC_OTHER;
}

/* ==== error estimates ==== */

uint64_t smelt_target_sample_step(uint64_t rows)
{
    uint64_t want = rows / 32 > 16 ? rows / 32 : 16;
    return rows <= want ? 1 : (rows + want - 1) / want;
}

/* A type that sees every `every`-th sampled row sees those r with r % every == every / 2
 * (the middle of each stride: the first rows of a tensor are often special tokens). */
static uint64_t rows_seen(uint64_t n_sample, uint64_t every)
{
    return n_sample > every / 2 ? (n_sample - every / 2 - 1) / every + 1 : 0;
}

uint64_t smelt_target_type_every(int type, uint64_t n_sample, uint64_t row_len, uint64_t slow_rows)
{
    enum { MAX_VALUES = 32768 };
    const smelt_qtype_ops *op = smelt_q_ops(type);
    unsigned cost = op ? op->encode_cost : 0;
    if (cost < 2) return 1;
    uint64_t min_rows = cost < SMELT_QTYPE_SLOW_ENCODER ? 16 : slow_rows ? slow_rows : 8;
    uint64_t every = 1;
    while (every * 4 <= cost && rows_seen(n_sample, every * 2) >= min_rows) every *= 2; /* ≈ cost / 2 */
    while (rows_seen(n_sample, every * 2) >= min_rows && rows_seen(n_sample, every) * row_len > MAX_VALUES) every *= 2;
    return every;
}

typedef struct estimate_job {
    const smelt_target_source *s;
    const int *types;
    size_t n_types;
    const smelt_qtype_ops **ops; /* per type; NULL when its block does not divide the rows */
    const smelt_qerr **models;
    uint64_t step, n_sample, rows_per_matrix, row_len;
    const uint64_t *every; /* per type: it sees every every[k]-th sampled row (the slow encoders) */
    size_t max_row_bytes;
    uint64_t *task;   /* sampled row × (n_types + 1) + k: a slow type on one row; k = n_types: the rest */
    float *scratch;   /* per thread: source row, decoded row, weights */
    uint64_t *held;   /* per thread: the sampled row its scratch holds (UINT64_MAX: none) */
    bool *finite;     /* per thread: that row has no NaN/Inf */
    uint8_t *qbuf;    /* per thread: one encoded row */
    double *num, *den; /* per sampled row × type: sum w (x - q)^2; per sampled row: sum w x^2 */
    uint8_t *bad;      /* per sampled row: a NaN/Inf was read */
} estimate_job;

/* Type k's weighted squared error on sampled row r (x, weights w, importances imx). */
static void estimate_type(estimate_job *j, size_t k, uint64_t r, const float *x, const float *w, const float *imx,
                          int thread)
{
    uint64_t n = j->row_len;
    float *y = j->scratch + (size_t)thread * 3 * n + n;
    uint8_t *q = j->qbuf + (size_t)thread * j->max_row_bytes;
    smelt_qtype_quantize(j->ops[k], x, q, 1, (int64_t)n, imx, j->models[k]);
    j->ops[k]->dequantize(q, y, (size_t)n);
    double sum = 0;
    for (uint64_t i = 0; i < n; i++) {
        double d = (double)x[i] - y[i];
        sum += w[i] * d * d;
    }
    j->num[r * j->n_types + k] = sum;
}

/* One task: a slow type on one sampled row, or a row's weights, NaN check and fast types
 * (tasks of one row share the thread's copy of it). */
static void estimate_task(void *ctx, size_t task, int thread)
{
    estimate_job *j = ctx;
    const smelt_target_source *s = j->s;
    uint64_t n = j->row_len, r = j->task[task] / (j->n_types + 1), row = r * j->step;
    size_t kind = j->task[task] % (j->n_types + 1);
    float *x = j->scratch + (size_t)thread * 3 * n, *w = x + 2 * n;
    const float *imx = s->imatrix ? s->imatrix + ((row / j->rows_per_matrix) % s->ne[2]) * n : NULL;
    if (j->held[thread] != r) {
        smelt_q_dequantize_row(s->src_type, s->data + row * s->src_row_bytes, x, (size_t)n);
        bool ok = true;
        for (uint64_t i = 0; i < n; i++) {
            ok = ok && isfinite(x[i]);
            w[i] = imx ? imx[i] : 1.0f;
        }
        j->held[thread] = r;
        j->finite[thread] = ok;
    }
    if (kind < j->n_types) {
        if (j->finite[thread]) estimate_type(j, kind, r, x, w, imx, thread);
        return;
    }
    if (!j->finite[thread]) {
        j->bad[r] = 1;
        return;
    }
    double den = 0;
    for (uint64_t i = 0; i < n; i++) den += (double)w[i] * x[i] * x[i];
    j->den[r] = den;
    for (size_t k = 0; k < j->n_types; k++) {
        if (!j->ops[k]) j->num[r * j->n_types + k] = INFINITY;
        else if (j->every[k] == 1) estimate_type(j, k, r, x, w, imx, thread);
    }
}

int smelt_target_estimate(const smelt_target_source *s, const int *types, size_t n, smelt_pool *pool,
                          double *rel_err, smelt_err *e)
{
    uint64_t row_len = s->ne[0], rows = s->ne[1] * s->ne[2] * s->ne[3];
    if (!row_len || !rows || n > SMELT_TARGET_MAX_TYPES)
        return SMELT_ERR(e, SMELT_EINTERNAL, NULL, s->name, "no rows to estimate errors on");
    estimate_job j = {.s = s, .types = types, .n_types = n, .row_len = row_len, .rows_per_matrix = s->ne[1]};
    const smelt_qtype_ops *ops[SMELT_TARGET_MAX_TYPES];
    const smelt_qerr *models[SMELT_TARGET_MAX_TYPES];
    uint64_t every[SMELT_TARGET_MAX_TYPES];
    j.every = every;
    j.ops = ops;
    j.models = models;
    for (size_t k = 0; k < n; k++) {
        const smelt_type_info *ti = smelt_type_get(types[k]);
        const smelt_qtype_ops *op = smelt_q_ops(types[k]);
        ops[k] = ti && ti->blck && smelt_qtype_encodes(op) && row_len % ti->blck == 0 ? op : NULL;
        models[k] = ops[k] && s->error_model ? s->error_model(s->user, types[k]) : NULL;
        if (ops[k] && row_len / ti->blck * ti->bytes > j.max_row_bytes) j.max_row_bytes = (size_t)(row_len / ti->blck * ti->bytes);
    }
    j.step = smelt_target_sample_step(rows);
    j.n_sample = (rows + j.step - 1) / j.step;
    for (size_t k = 0; k < n; k++) {
        const smelt_qtype_ops *op = smelt_q_ops(types[k]);
        bool coarse = s->coarse && smelt_qtype_slow_encoder(op);
        every[k] = coarse ? j.n_sample : smelt_target_type_every(types[k], j.n_sample, row_len, s->slow_rows);
    }
    size_t nthr = (size_t)(pool ? smelt_pool_threads(pool) : 1);
    if (!nthr) nthr = 1;
    j.task = malloc((size_t)j.n_sample * (n + 1) * sizeof *j.task); /* at most one per row and type, and the rows */
    j.held = malloc(nthr * sizeof *j.held);
    j.finite = malloc(nthr * sizeof *j.finite);
    j.scratch = malloc(nthr * 3 * (size_t)row_len * sizeof *j.scratch);
    j.qbuf = malloc(nthr * (j.max_row_bytes ? j.max_row_bytes : 1));
    j.num = calloc((size_t)j.n_sample * n, sizeof *j.num);
    j.den = calloc((size_t)j.n_sample, sizeof *j.den);
    j.bad = calloc((size_t)j.n_sample, 1);
    int rc = 0;
    if (!j.task || !j.held || !j.finite || !j.scratch || !j.qbuf || !j.num || !j.den || !j.bad) {
        rc = SMELT_NOMEM(e, "error estimates");
        goto out;
    }
    size_t n_tasks = 0;
    for (size_t k = 0; k < n; k++) /* the slow types' tasks first: the longest */
        for (uint64_t r = every[k] / 2; ops[k] && every[k] > 1 && r < j.n_sample; r += every[k])
            j.task[n_tasks++] = r * (n + 1) + k;
    for (uint64_t r = 0; r < j.n_sample; r++) j.task[n_tasks++] = r * (n + 1) + n;
    for (size_t i = 0; i < nthr; i++) j.held[i] = UINT64_MAX;
    if (pool) smelt_pool_run(pool, n_tasks, estimate_task, &j);
    else
        for (size_t t = 0; t < n_tasks; t++) estimate_task(&j, t, 0);
    for (uint64_t r = 0; r < j.n_sample; r++)
        if (j.bad[r]) {
            rc = SMELT_ERR(e, SMELT_EFORMAT, NULL, s->name, "row %llu has NaN/Inf values; a plan cannot be made for it",
                           (unsigned long long)(r * j.step));
            goto out;
        }
    for (size_t k = 0; k < n; k++) {
        double num = 0, den = 0;
        for (uint64_t r = every[k] / 2; r < j.n_sample; r += every[k]) { /* in row order: thread-count independent */
            num += j.num[r * n + k];
            den += j.den[r];
        }
        rel_err[k] = !ops[k] ? INFINITY : den > 0 ? num / den : 0.0;
    }
out:
    free(j.task);
    free(j.held);
    free(j.finite);
    free(j.scratch);
    free(j.qbuf);
    free(j.num);
    free(j.den);
    free(j.bad);
    return rc;
}

/* ==== the choice ==== */

/* Indices of the lower convex hull of an item's (bytes, cost) points, smallest bytes first:
 * costs strictly fall, and each step's saving per byte is less than the one before. */
static size_t lower_hull(const smelt_target_item *it, size_t *hull)
{
    size_t order[SMELT_TARGET_MAX_TYPES], n = 0;
    for (size_t k = 0; k < it->n_cand; k++) {
        if (!isfinite(it->cost[k])) continue;
        size_t p = n++;
        while (p > 0) { /* insertion sort by bytes, then cost, then index */
            size_t q = order[p - 1];
            if (it->bytes[q] < it->bytes[k] || (it->bytes[q] == it->bytes[k] && it->cost[q] <= it->cost[k])) break;
            order[p] = q;
            p--;
        }
        order[p] = k;
    }
    size_t h = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = order[i];
        if (h && it->cost[k] >= it->cost[hull[h - 1]]) continue; /* dominated: more bytes, no less error */
        while (h >= 2) {                                          /* drop a point above the chord */
            size_t a = hull[h - 2], b = hull[h - 1];
            double s_ab = (it->cost[a] - it->cost[b]) / (double)(it->bytes[b] - it->bytes[a]);
            double s_bk = (it->cost[b] - it->cost[k]) / (double)(it->bytes[k] - it->bytes[b]);
            if (s_bk < s_ab) break;
            h--;
        }
        hull[h++] = k;
    }
    return h;
}

int smelt_target_solve(smelt_target_item *items, size_t n, uint64_t budget, uint64_t *total, smelt_err *e)
{
    size_t (*hull)[SMELT_TARGET_MAX_TYPES] = malloc((n ? n : 1) * sizeof *hull);
    size_t *len = calloc(n ? n : 1, sizeof *len), *pos = calloc(n ? n : 1, sizeof *pos);
    int rc = 0;
    if (!hull || !len || !pos) {
        rc = SMELT_NOMEM(e, "plan");
        goto out;
    }
    uint64_t used = 0;
    for (size_t i = 0; i < n; i++) {
        len[i] = lower_hull(&items[i], hull[i]);
        if (!len[i]) {
            rc = SMELT_ERR(e, SMELT_EINTERNAL, NULL, NULL, "item %zu has no usable candidate", i);
            goto out;
        }
        items[i].chosen = hull[i][0];
        used += items[i].bytes[hull[i][0]];
    }
    if (used > budget) {
        rc = SMELT_ERR(e, SMELT_EUSAGE, NULL, NULL,
                       "the budget of %llu bytes is below the smallest plan the candidate types allow (%llu bytes)",
                       (unsigned long long)budget, (unsigned long long)used);
        goto out;
    }
    /* greedy along the hulls: the step saving the most cost per byte that still fits */
    for (;;) {
        size_t best = n;
        double best_gain = 0;
        for (size_t i = 0; i < n; i++) {
            if (pos[i] + 1 >= len[i]) continue;
            size_t a = hull[i][pos[i]], b = hull[i][pos[i] + 1];
            uint64_t db = items[i].bytes[b] - items[i].bytes[a];
            if (db > budget - used) continue;
            double gain = (items[i].cost[a] - items[i].cost[b]) / (double)db;
            if (best == n || gain > best_gain) best = i, best_gain = gain;
        }
        if (best == n) break;
        size_t a = hull[best][pos[best]], b = hull[best][++pos[best]];
        used += items[best].bytes[b] - items[best].bytes[a];
        items[best].chosen = b;
    }
    /* filling: any candidate (hull or not) that lowers the cost and fits, best saving per byte
     * first (a move that frees bytes and lowers the cost counts as the best) */
    for (;;) {
        size_t bi = n, bk = 0;
        double best_gain = 0;
        for (size_t i = 0; i < n; i++) {
            const smelt_target_item *it = &items[i];
            uint64_t cb = it->bytes[it->chosen];
            for (size_t k = 0; k < it->n_cand; k++) {
                double dc = it->cost[it->chosen] - it->cost[k];
                if (!(dc > 0) || !isfinite(it->cost[k])) continue;
                if (it->bytes[k] > cb && it->bytes[k] - cb > budget - used) continue;
                double gain = it->bytes[k] > cb ? dc / (double)(it->bytes[k] - cb) : INFINITY;
                if (bi == n || gain > best_gain) bi = i, bk = k, best_gain = gain;
            }
        }
        if (bi == n) break;
        used = used - items[bi].bytes[items[bi].chosen] + items[bi].bytes[bk];
        items[bi].chosen = bk;
    }
    *total = used;
out:
    free(hull);
    free(len);
    free(pos);
    return rc;
}
