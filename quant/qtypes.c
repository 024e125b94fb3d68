/* qtypes.c — the traits table: the plain float types defined here, the legacy, k-quant
 * and i-quant families joined from their own files into one table indexed by type id, one
 * table per kernel set (portable, AVX2). Includes quant/ and formats/ headers. */
#include "qtypes.h"

#include <pthread.h>
#include <string.h>

#include "formats/base/cpu.h"
#include "formats/base/half.h"
#include "iquant/iquant_int.h"
#include "kquant/kquant.h"
#include "legacy/legacy.h"
#include "quant_int.h"

/* ==== plain float types ==== */

static void deq_f32(const void *src, float *dst, size_t n) { memcpy(dst, src, n * 4); }
static void deq_f16(const void *src, float *dst, size_t n) { smelt_row_f16_to_f32(src, dst, n); }
static void deq_bf16(const void *src, float *dst, size_t n) { smelt_row_bf16_to_f32(src, dst, n); }

static void enc_f32(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    (void)imx;
    memcpy(dst, src, (size_t)(n_rows * row_len) * 4);
}

static void enc_f16(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    (void)imx;
    smelt_row_f32_to_f16(src, dst, (size_t)(n_rows * row_len), SMELT_F16_OVERFLOW_INF);
}

static void enc_bf16(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    (void)imx;
    smelt_row_f32_to_bf16(src, dst, (size_t)(n_rows * row_len));
}

static void ref_f32(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }
static void ref_f16(const float *src, void *dst, int64_t n)
{
    smelt_row_f32_to_f16(src, dst, (size_t)n, SMELT_F16_OVERFLOW_INF);
}
static void ref_bf16(const float *src, void *dst, int64_t n) { smelt_row_f32_to_bf16(src, dst, (size_t)n); }

static const smelt_qtype_ops k_plain[] = {
    {.type = SMELT_TYPE_F32, .dequantize = deq_f32, .quantize = enc_f32, .quantize_ref = ref_f32},
    {.type = SMELT_TYPE_F16, .dequantize = deq_f16, .quantize = enc_f16, .quantize_ref = ref_f16},
    {.type = SMELT_TYPE_BF16, .dequantize = deq_bf16, .quantize = enc_bf16, .quantize_ref = ref_bf16},
};
static const smelt_qfamily k_plain_family = {k_plain, sizeof k_plain / sizeof k_plain[0], NULL};

/* ==== the joined table ==== */

/* Every family with portable kernels, then per other kernel set the families that
 * override some of them. */
static const smelt_qfamily *const k_portable[] = {&k_plain_family, &smelt_legacy_family, &smelt_kquant_family,
                                                  &smelt_iquant_family, &smelt_ternary_family, &smelt_mxfp_family};
static const smelt_qfamily *const k_avx2[] = {&smelt_legacy_family_avx2, &smelt_kquant_family_avx2};
#define COUNT(a) (sizeof(a) / sizeof(a)[0])
static const struct {
    const smelt_qfamily *const *fam;
    size_t n;
} k_sets[SMELT_ISA_COUNT] = {
    [SMELT_ISA_PORTABLE] = {k_portable, COUNT(k_portable)},
    [SMELT_ISA_AVX2] = {k_avx2, COUNT(k_avx2)},
};

/* Types with ops, in table order; no type appears twice, so SMELT_TYPE_COUNT bounds it. */
static smelt_qtype_ops g_tab[SMELT_ISA_COUNT][SMELT_TYPE_COUNT];
static bool g_has[SMELT_TYPE_COUNT];
static int g_ids[SMELT_TYPE_COUNT];
static size_t g_count;
static int g_isa;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void build(void)
{
    for (size_t f = 0; f < k_sets[SMELT_ISA_PORTABLE].n; f++) {
        const smelt_qfamily *fam = k_sets[SMELT_ISA_PORTABLE].fam[f];
        for (size_t i = 0; i < fam->n; i++) {
            const smelt_qtype_ops *o = smelt_qfamily_at(fam, i);
            int t = o->type;
            if (t < 0 || t >= SMELT_TYPE_COUNT || g_has[t]) continue;
            g_has[t] = true;
            g_ids[g_count++] = t;
            for (int isa = 0; isa < SMELT_ISA_COUNT; isa++) g_tab[isa][t] = *o;
        }
    }
    for (int isa = 1; isa < SMELT_ISA_COUNT; isa++)
        for (size_t f = 0; f < k_sets[isa].n; f++) {
            const smelt_qfamily *fam = k_sets[isa].fam[f];
            for (size_t i = 0; i < fam->n; i++) {
                const smelt_qtype_ops *o = smelt_qfamily_at(fam, i);
                if (o->type < 0 || o->type >= SMELT_TYPE_COUNT || !g_has[o->type]) continue;
                smelt_qtype_ops *d = &g_tab[isa][o->type];
                /* function pointers only: the traits themselves are the portable ones */
                if (o->dequantize) d->dequantize = o->dequantize;
                if (o->quantize) d->quantize = o->quantize;
                if (o->quantize_ref) d->quantize_ref = o->quantize_ref;
                if (o->quantize_err) d->quantize_err = o->quantize_err;
            }
        }
    g_isa = smelt_cpu_isa(-1);
}

static void init(void) { pthread_once(&g_once, build); }

size_t smelt_q_n_types(void)
{
    init();
    return g_count;
}

int smelt_q_type_at(size_t i)
{
    init();
    return i < g_count ? g_ids[i] : -1;
}

const smelt_qtype_ops *smelt_q_ops_isa(int type, int isa)
{
    init();
    if (type < 0 || type >= SMELT_TYPE_COUNT || !g_has[type] || isa < 0 || isa >= SMELT_ISA_COUNT) return NULL;
    if (smelt_cpu_isa(isa) != isa) return NULL;
    return &g_tab[isa][type];
}

const smelt_qtype_ops *smelt_q_ops(int type) { return smelt_q_ops_isa(type, smelt_q_isa()); }

int smelt_q_isa(void)
{
    init();
    return g_isa;
}

int smelt_q_dequantize_row(int type, const void *src, float *dst, size_t n)
{
    const smelt_qtype_ops *o = smelt_q_ops(type);
    if (!o || !o->dequantize) return -1;
    o->dequantize(src, dst, n);
    return 0;
}

bool smelt_q_can_dequantize(int type)
{
    const smelt_qtype_ops *o = smelt_q_ops(type);
    return o && o->dequantize;
}

bool smelt_q_can_quantize(int type) { return smelt_qtype_encodes(smelt_q_ops(type)); }

bool smelt_qtype_encodes(const smelt_qtype_ops *o) { return o && (o->quantize || o->rows_encoder); }

bool smelt_qtype_has_error_models(const smelt_qtype_ops *o) { return o && (o->quantize_err || o->rows_encoder); }

bool smelt_qtype_slow_encoder(const smelt_qtype_ops *o) { return o && o->encode_cost >= SMELT_QTYPE_SLOW_ENCODER; }

void smelt_qtype_quantize(const smelt_qtype_ops *o, const float *src, void *dst, int64_t n_rows, int64_t row_len,
                          const float *imatrix, const smelt_qerr *m)
{
    if (m && m->ref && o->quantize_ref) {
        const smelt_type_info *ti = smelt_type_get(o->type);
        const size_t row_bytes = (size_t)row_len / ti->blck * ti->bytes;
        for (int64_t r = 0; r < n_rows; r++) o->quantize_ref(src + r * row_len, (uint8_t *)dst + r * row_bytes, row_len);
    } else if (o->rows_encoder) iq4_quantize_rows(o->rows_encoder, src, dst, n_rows, row_len, imatrix, m);
    else if (m && o->quantize_err) o->quantize_err(src, dst, n_rows, row_len, imatrix, m);
    else o->quantize(src, dst, n_rows, row_len, imatrix);
}

bool smelt_q_requires_imatrix(int type)
{
    const smelt_qtype_ops *o = smelt_q_ops(type);
    return o && o->needs_imatrix;
}

/* ==== threaded row quantization ==== */

typedef struct {
    const smelt_qtype_ops *o;
    const float *src;
    uint8_t *dst;
    int64_t n_rows, row_len, rows_per_task;
    uint64_t row_bytes;
    const float *imx;
} qjob;

static void q_task(void *ctx, size_t task, int thread)
{
    (void)thread;
    qjob *j = ctx;
    int64_t r0 = (int64_t)task * j->rows_per_task;
    int64_t nr = j->n_rows - r0 < j->rows_per_task ? j->n_rows - r0 : j->rows_per_task;
    smelt_qtype_quantize(j->o, j->src + r0 * j->row_len, j->dst + (uint64_t)r0 * j->row_bytes, nr, j->row_len,
                         j->imx, NULL);
}

int smelt_q_quantize_rows(int type, const float *src, void *dst, int64_t n_rows, int64_t row_len,
                          const float *imatrix, smelt_pool *pool, smelt_err *e)
{
    const smelt_qtype_ops *o = smelt_q_ops(type);
    if (!smelt_qtype_encodes(o))
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, NULL, NULL, "smelt cannot quantize to %s", smelt_type_name(type));
    uint64_t rb;
    const smelt_type_info *ti = smelt_type_get(type);
    if (row_len <= 0 || n_rows < 0 || (uint64_t)row_len % ti->blck)
        return SMELT_ERR(e, SMELT_EMISMATCH, NULL, NULL,
                         "a row of %lld elements cannot be quantized to %s: rows must be a positive multiple of "
                         "its block size %u",
                         (long long)row_len, ti->name, ti->blck);
    if (smelt_type_row_bytes(type, (uint64_t)row_len, &rb, e)) return e ? e->code : SMELT_EFORMAT;
    if (n_rows == 0) return 0;
    qjob j = {o, src, dst, n_rows, row_len, 0, rb, imatrix};
    /* about 64k elements per task keeps threads busy without tiny tasks */
    int64_t per = row_len > 0 ? (65536 + row_len - 1) / row_len : 1;
    if (per < 1) per = 1;
    j.rows_per_task = per;
    size_t tasks = (size_t)((n_rows + per - 1) / per);
    smelt_pool_run(pool, tasks, q_task, &j);
    return 0;
}

/* ==== error models ==== */

/* Per block type, {p, c, a, ref, unbias} of smelt_qerr for tensors without an imatrix entry,
 * with one, and for the token embedding; a block type not listed (and a {0} entry) uses the
 * plain squared error. A model is here only where it beat the plain error on every
 * validation text (docs/quantize.md, "Error models": the rule and the tables that decided
 * each row); Q8_0's reference blocks are the one exception, kept because they make smelt's
 * Q8_0 byte-identical to llama-quantize's. */
static const struct {
    int type;
    smelt_qerr noimatrix, imatrix, embedding;
} k_tuned[] = {
    {SMELT_TYPE_Q4_1, {0}, {0, 0, 0, false, true}, {0}},
    {SMELT_TYPE_Q8_0, {0, 0, 0, true}, {0, 0, 0, true}, {0, 0, 0, true}},
    {SMELT_TYPE_Q2_K, {2, 0.25f, 0, false, true}, {2, 0.25f, 0, false, true}, {2, 0.25f, 0, false, true}},
    {SMELT_TYPE_Q3_K, {1, 1, 0, false, true}, {2, 1, 1, false, true}, {1, 1, 0, false, true}},
    /* llama.cpp's own weighting of these encoders (imatrix * sqrt(mean(x^2) + x^2)), rows unbiased */
    {SMELT_TYPE_IQ2_XXS, {0}, {1, 1, 0, false, true}, {0}},
    {SMELT_TYPE_IQ2_XS, {0}, {1, 1, 0, false, true}, {0}},
    {SMELT_TYPE_IQ2_S, {0}, {1, 1, 0, false, true}, {0}},
    {SMELT_TYPE_IQ1_S, {0}, {1, 1, 0, false, true}, {0}},
    {SMELT_TYPE_IQ1_M, {0}, {1, 1, 0, false, true}, {0}},
};

const smelt_qerr *smelt_q_tuned_err(int type, smelt_qerr_role role)
{
    for (size_t i = 0; i < sizeof k_tuned / sizeof k_tuned[0]; i++)
        if (k_tuned[i].type == type) {
            const smelt_qerr *m = role == SMELT_QERR_IMATRIX     ? &k_tuned[i].imatrix
                                  : role == SMELT_QERR_EMBEDDING ? &k_tuned[i].embedding
                                                                 : &k_tuned[i].noimatrix;
            return m->p == 0 && m->a == 0 && !m->ref && !m->unbias ? NULL : m;
        }
    return NULL;
}
