/* fp8src.c — the block-scaled FP8 tensor source (see fp8src.h). */
#include "fp8src.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/half.h"

#define SCALE_SUFFIX "_scale_inv"

static const char *k_expected = "{\"quant_method\": \"fp8\", \"fmt\": \"e4m3\", \"weight_block_size\": [128, 128]}";

int smelt_fp8_cfg_read(const json_t *config, const char *cfg_path, smelt_fp8_cfg *out, smelt_err *e)
{
    memset(out, 0, sizeof *out);
    json_t *qc = json_object_get(config, "quantization_config");
    if (!qc || json_is_null(qc)) return 0;
    if (!json_is_object(qc)) return SMELT_ERR(e, SMELT_EFORMAT, cfg_path, "quantization_config", "expected an object");
    json_t *m = json_object_get(qc, "quant_method");
    if (!json_is_string(m))
        return SMELT_ERR(e, SMELT_EFORMAT, cfg_path, "quantization_config.quant_method", "expected a string (e.g. \"fp8\")");
    if (strcmp(json_string_value(m), "fp8") != 0)
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, cfg_path, "quantization_config.quant_method",
                         "'%s' is not supported: smelt reads unquantized checkpoints and block-scaled fp8 (%s)",
                         json_string_value(m), k_expected);
    json_t *fmt = json_object_get(qc, "fmt");
    if (fmt && !json_is_null(fmt) && (!json_is_string(fmt) || strcmp(json_string_value(fmt), "e4m3") != 0))
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, cfg_path, "quantization_config.fmt",
                         "'%s' is not supported: only e4m3 weights have block scales (%s)",
                         json_is_string(fmt) ? json_string_value(fmt) : "(not a string)", k_expected);
    json_t *bs = json_object_get(qc, "weight_block_size");
    if (!bs || json_is_null(bs))
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, cfg_path, "quantization_config.weight_block_size",
                         "missing: per-tensor and per-channel fp8 scales are not supported (%s)", k_expected);
    json_t *b0 = json_array_get(bs, 0), *b1 = json_array_get(bs, 1);
    if (!json_is_array(bs) || json_array_size(bs) != 2 || !json_is_integer(b0) || !json_is_integer(b1) ||
        json_integer_value(b0) <= 0 || json_integer_value(b1) <= 0)
        return SMELT_ERR(e, SMELT_EFORMAT, cfg_path, "quantization_config.weight_block_size",
                         "expected two positive integers, e.g. [128, 128]");
    if (json_integer_value(b0) != 128 || json_integer_value(b1) != 128)
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, cfg_path, "quantization_config.weight_block_size",
                         "[%lld, %lld] is not supported: only 128 × 128 blocks (the layout of DeepSeek-V3 and the Qwen3 "
                         "FP8 releases)",
                         (long long)json_integer_value(b0), (long long)json_integer_value(b1));
    out->on = 1;
    out->block_rows = 128;
    out->block_cols = 128;
    return 0;
}

/* ==== the wrapper ==== */

typedef struct {
    smelt_tsrc inner;
    uint32_t br, bc;
    uint64_t n;          /* tensors shown: the inner ones but the scales */
    uint64_t *in_of;     /* shown index → inner index */
    int64_t *scale_of;   /* shown index → inner index of its scales, or -1 */
    int64_t *shown_of;   /* inner index → shown index, or -1 for a scale */
    smelt_tinfo *info;
    smelt_scratch wsc, ssc; /* the inner reads of a weight and of its scales */
    float *scales;          /* the scales of the tensor being read, as f32 */
    size_t scales_cap;
    float lut[256];         /* E4M3 byte → f32 */
} fp8_src;

static int ends_with(const char *s, const char *suf)
{
    size_t l = strlen(s), k = strlen(suf);
    return l >= k && !strcmp(s + l - k, suf);
}

static uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

static uint64_t f_count(void *self) { return ((fp8_src *)self)->n; }

static const smelt_tinfo *f_info(void *self, uint64_t i)
{
    fp8_src *s = self;
    return i < s->n ? &s->info[i] : NULL;
}

static int64_t f_find(void *self, const char *name)
{
    fp8_src *s = self;
    int64_t k = smelt_tsrc_find(&s->inner, name);
    return k < 0 ? -1 : s->shown_of[k];
}

static int f_read(void *self, uint64_t i, const void **data, smelt_scratch *sc, smelt_err *e)
{
    fp8_src *s = self;
    if (i >= s->n) return SMELT_ERR(e, SMELT_EINTERNAL, NULL, NULL, "tensor index out of range");
    if (s->scale_of[i] < 0) return smelt_tsrc_read(&s->inner, s->in_of[i], data, sc, e);
    const smelt_tinfo *wt = smelt_tsrc_info(&s->inner, s->in_of[i]);
    const smelt_tinfo *st = smelt_tsrc_info(&s->inner, (uint64_t)s->scale_of[i]);
    if (st->nelements > s->scales_cap) {
        float *p = realloc(s->scales, (size_t)st->nelements * sizeof *p);
        if (!p) return SMELT_NOMEM(e, "fp8 block scales");
        s->scales = p;
        s->scales_cap = (size_t)st->nelements;
    }
    const void *sd, *wd;
    int rc = smelt_tsrc_read(&s->inner, (uint64_t)s->scale_of[i], &sd, &s->ssc, e);
    if (rc) return rc;
    smelt_dtype_to_f32(st->dtype, sd, s->scales, (size_t)st->nelements);
    smelt_tsrc_release(&s->inner, (uint64_t)s->scale_of[i]);
    float *out = smelt_scratch_get(sc, (size_t)s->info[i].nbytes ? (size_t)s->info[i].nbytes : 1);
    if (!out) return SMELT_NOMEM(e, "dequantized fp8 tensor");
    if ((rc = smelt_tsrc_read(&s->inner, s->in_of[i], &wd, &s->wsc, e))) return rc;
    const uint8_t *q = wd;
    uint64_t rows = wt->shape[0], cols = wt->shape[1], sc_cols = ceil_div(cols, s->bc);
    for (uint64_t r = 0; r < rows; r++) {
        const float *srow = s->scales + (r / s->br) * sc_cols;
        for (uint64_t b = 0; b < sc_cols; b++) {
            uint64_t c0 = b * s->bc, c1 = c0 + s->bc < cols ? c0 + s->bc : cols;
            const uint8_t *qr = q + r * cols;
            float *orow = out + r * cols, f = srow[b];
            for (uint64_t c = c0; c < c1; c++) orow[c] = s->lut[qr[c]] * f;
        }
    }
    smelt_tsrc_release(&s->inner, s->in_of[i]);
    *data = out;
    return 0;
}

static void f_release(void *self, uint64_t i)
{
    fp8_src *s = self;
    if (i < s->n && s->scale_of[i] < 0) smelt_tsrc_release(&s->inner, s->in_of[i]);
}

static void f_free(fp8_src *s)
{
    free(s->in_of);
    free(s->scale_of);
    free(s->shown_of);
    free(s->info);
    free(s->scales);
    smelt_scratch_free(&s->wsc);
    smelt_scratch_free(&s->ssc);
    free(s);
}

static void f_close(void *self)
{
    fp8_src *s = self;
    smelt_tsrc_close(&s->inner);
    f_free(s);
}

static const smelt_tsrc_vt fp8_vt = {f_count, f_info, f_find, f_read, f_release, f_close};

static int is_f8(smelt_dtype d) { return d == SMELT_DT_F8_E4M3 || d == SMELT_DT_F8_E5M2; }

/* Check the scale tensor k against its weight; fills *w with the weight's inner index. */
static int check_pair(const smelt_tsrc *in, uint64_t k, const smelt_fp8_cfg *cfg, int64_t *w, smelt_err *e)
{
    const smelt_tinfo *st = smelt_tsrc_info(in, k);
    char wname[1024];
    size_t l = strlen(st->name) - strlen(SCALE_SUFFIX);
    if (l >= sizeof wname) return SMELT_ERR(e, SMELT_EFORMAT, st->file, st->name, "tensor name too long");
    memcpy(wname, st->name, l);
    wname[l] = 0;
    if (!cfg->on)
        return SMELT_ERR(e, SMELT_EFORMAT, st->file, st->name,
                         "block scales, but config.json has no quantization_config (expected %s)", k_expected);
    *w = smelt_tsrc_find(in, wname);
    if (*w < 0)
        return SMELT_ERR(e, SMELT_EFORMAT, st->file, st->name, "block scales of '%s', which the checkpoint does not have", wname);
    const smelt_tinfo *wt = smelt_tsrc_info(in, (uint64_t)*w);
    if (wt->dtype == SMELT_DT_F8_E5M2)
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, wt->file, wt->name,
                         "F8_E5M2 weights with block scales are not supported (expected F8_E4M3)");
    if (wt->dtype != SMELT_DT_F8_E4M3)
        return SMELT_ERR(e, SMELT_EFORMAT, wt->file, wt->name, "has block scales '%s' but is %s (expected F8_E4M3)", st->name,
                         smelt_dtype_name(wt->dtype));
    if (wt->n_dims != 2)
        return SMELT_ERR(e, SMELT_EUNSUPPORTED, wt->file, wt->name,
                         "block scales on a %u-dimensional weight (expected a 2-D matrix)", wt->n_dims);
    if (st->dtype != SMELT_DT_F32 && st->dtype != SMELT_DT_BF16 && st->dtype != SMELT_DT_F16)
        return SMELT_ERR(e, SMELT_EFORMAT, st->file, st->name, "block scales of dtype %s (expected F32, BF16 or F16)",
                         smelt_dtype_name(st->dtype));
    uint64_t er = ceil_div(wt->shape[0], cfg->block_rows), ec = ceil_div(wt->shape[1], cfg->block_cols);
    if (st->n_dims != 2 || st->shape[0] != er || st->shape[1] != ec) {
        char got[96] = "[";
        size_t u = 1;
        for (uint32_t d = 0; d < st->n_dims && u < sizeof got; d++)
            u += (size_t)snprintf(got + u, sizeof got - u, "%s%llu", d ? ", " : "", (unsigned long long)st->shape[d]);
        if (u < sizeof got) snprintf(got + u, sizeof got - u, "]");
        return SMELT_ERR(e, SMELT_EFORMAT, st->file, st->name,
                         "block scales of shape %s do not fit weight '%s' [%llu, %llu] in %u × %u blocks (expected [%llu, %llu])",
                         got, wt->name, (unsigned long long)wt->shape[0], (unsigned long long)wt->shape[1], cfg->block_rows,
                         cfg->block_cols, (unsigned long long)er, (unsigned long long)ec);
    }
    return 0;
}

int smelt_tsrc_wrap_fp8(smelt_tsrc *src, const smelt_fp8_cfg *cfg, smelt_err *e)
{
    uint64_t n = smelt_tsrc_count(src);
    int any = cfg->on;
    for (uint64_t k = 0; k < n && !any; k++) any = ends_with(smelt_tsrc_info(src, k)->name, SCALE_SUFFIX);
    if (!any) return 0;
    fp8_src *s = calloc(1, sizeof *s);
    if (!s) return SMELT_NOMEM(e, "fp8 tensor source");
    s->in_of = calloc((size_t)n + 1, sizeof *s->in_of);
    s->scale_of = calloc((size_t)n + 1, sizeof *s->scale_of);
    s->shown_of = calloc((size_t)n + 1, sizeof *s->shown_of);
    s->info = calloc((size_t)n + 1, sizeof *s->info);
    if (!s->in_of || !s->scale_of || !s->shown_of || !s->info) {
        f_free(s);
        return SMELT_NOMEM(e, "fp8 tensor source");
    }
    int64_t *scale_for = s->shown_of; /* first pass: inner weight index → its scales (reused below) */
    for (uint64_t k = 0; k < n; k++) scale_for[k] = -1;
    int rc = 0;
    for (uint64_t k = 0; k < n && !rc; k++) {
        const smelt_tinfo *t = smelt_tsrc_info(src, k);
        if (ends_with(t->name, ".weight_scale") || ends_with(t->name, ".input_scale"))
            rc = SMELT_ERR(e, SMELT_EUNSUPPORTED, t->file, t->name,
                           "a per-tensor fp8 scale: only block scales ('….weight_scale_inv', %s) are supported", k_expected);
        if (rc || !ends_with(t->name, SCALE_SUFFIX)) continue;
        int64_t w;
        if (!(rc = check_pair(src, k, cfg, &w, e))) scale_for[w] = (int64_t)k;
    }
    for (uint64_t k = 0; k < n && !rc; k++) {
        const smelt_tinfo *t = smelt_tsrc_info(src, k);
        if (is_f8(t->dtype) && scale_for[k] < 0)
            rc = SMELT_ERR(e, SMELT_EFORMAT, t->file, t->name,
                           "%s weight without block scales (expected a tensor '%s%s' of [%llu, %llu] block scales)",
                           smelt_dtype_name(t->dtype), t->name, SCALE_SUFFIX,
                           (unsigned long long)ceil_div(t->n_dims ? t->shape[0] : 1, cfg->block_rows),
                           (unsigned long long)ceil_div(t->n_dims > 1 ? t->shape[1] : 1, cfg->block_cols));
    }
    if (rc) {
        f_free(s);
        return rc;
    }
    for (uint64_t k = 0; k < n; k++) {
        const smelt_tinfo *t = smelt_tsrc_info(src, k);
        if (ends_with(t->name, SCALE_SUFFIX)) continue;
        s->in_of[s->n] = k;
        s->scale_of[s->n] = scale_for[k];
        s->info[s->n] = *t;
        if (scale_for[k] >= 0) {
            s->info[s->n].dtype = SMELT_DT_F32;
            s->info[s->n].nbytes = t->nelements * sizeof(float);
            s->info[s->n].block_scaled = 1;
        }
        s->n++;
    }
    for (uint64_t k = 0; k < n; k++) s->shown_of[k] = -1;
    for (uint64_t i = 0; i < s->n; i++) s->shown_of[s->in_of[i]] = (int64_t)i;
    for (int b = 0; b < 256; b++) s->lut[b] = smelt_f8e4m3_to_f32((uint8_t)b);
    s->br = cfg->block_rows;
    s->bc = cfg->block_cols;
    s->inner = *src;
    src->vt = &fp8_vt;
    src->self = s;
    return 0;
}
