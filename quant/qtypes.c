/* qtypes.c — the traits table: plain float types and Q8_0 for now; the legacy and
 * k-quant families join it from their own files. */
#include "qtypes.h"

#include <string.h>

#include "formats/base/half.h"

static void deq_f32(const void *src, float *dst, size_t n) { memcpy(dst, src, n * 4); }
static void deq_f16(const void *src, float *dst, size_t n) { smelt_row_f16_to_f32(src, dst, n); }
static void deq_bf16(const void *src, float *dst, size_t n) { smelt_row_bf16_to_f32(src, dst, n); }

static void q_f32(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    (void)imx;
    memcpy(dst, src, (size_t)(n_rows * row_len) * 4);
}

static void q_f16(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    (void)imx;
    smelt_row_f32_to_f16(src, dst, (size_t)(n_rows * row_len), SMELT_F16_OVERFLOW_INF);
}

static void q_bf16(const float *src, void *dst, int64_t n_rows, int64_t row_len, const float *imx)
{
    (void)imx;
    smelt_row_f32_to_bf16(src, dst, (size_t)(n_rows * row_len));
}

/* Q8_0: blocks of 32 — f16 scale d, then 32 int8 quants; x = d * q. */
static void deq_q8_0(const void *src, float *dst, size_t n)
{
    const uint8_t *b = src;
    for (size_t i = 0; i < n / 32; i++, b += 34) {
        uint16_t h;
        memcpy(&h, b, 2);
        float d = smelt_f16_to_f32(h);
        for (int j = 0; j < 32; j++) dst[i * 32 + j] = d * (float)(int8_t)b[2 + j];
    }
}

static const smelt_qtype_ops k_ops[] = {
    {SMELT_TYPE_F32, deq_f32, q_f32, NULL, NULL, SMELT_TYPE_F32, false},
    {SMELT_TYPE_F16, deq_f16, q_f16, NULL, NULL, SMELT_TYPE_F16, false},
    {SMELT_TYPE_BF16, deq_bf16, q_bf16, NULL, NULL, SMELT_TYPE_BF16, false},
    {SMELT_TYPE_Q8_0, deq_q8_0, NULL, NULL, NULL, SMELT_TYPE_Q8_0, false},
};

const smelt_qtype_ops *smelt_q_ops(int type)
{
    for (size_t i = 0; i < sizeof k_ops / sizeof k_ops[0]; i++)
        if (k_ops[i].type == type) return &k_ops[i];
    return NULL;
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

bool smelt_q_can_quantize(int type)
{
    const smelt_qtype_ops *o = smelt_q_ops(type);
    return o && o->quantize;
}

bool smelt_q_requires_imatrix(int type)
{
    const smelt_qtype_ops *o = smelt_q_ops(type);
    return o && o->needs_imatrix;
}

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
    j->o->quantize(j->src + r0 * j->row_len, j->dst + (uint64_t)r0 * j->row_bytes, nr, j->row_len, j->imx);
}

int smelt_q_quantize_rows(int type, const float *src, void *dst, int64_t n_rows, int64_t row_len,
                          const float *imatrix, smelt_pool *pool, smelt_err *e)
{
    const smelt_qtype_ops *o = smelt_q_ops(type);
    if (!o || !o->quantize)
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, NULL, NULL, "smelt cannot quantize to %s", smelt_type_name(type));
    uint64_t rb;
    if (smelt_type_row_bytes(type, (uint64_t)row_len, &rb, e)) return SMELT_EMISMATCH;
    qjob j = {o, src, dst, n_rows, row_len, 0, rb, imatrix};
    /* about 64k elements per task keeps threads busy without tiny tasks */
    int64_t per = row_len > 0 ? (65536 + row_len - 1) / row_len : 1;
    if (per < 1) per = 1;
    j.rows_per_task = per;
    size_t tasks = (size_t)((n_rows + per - 1) / per);
    smelt_pool_run(pool, tasks, q_task, &j);
    return 0;
}
