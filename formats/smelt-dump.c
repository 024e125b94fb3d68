/* smelt-dump — list the metadata and tensors of a GGUF file, a safetensors file, a PyTorch
 * checkpoint or a Hugging Face checkpoint directory; optionally print tensor values. Text
 * or --json. A debugging tool: it shows files that other tools refuse, and says why (the
 * model check's "validation:" line). */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "formats/tool/tool.h"
#include "formats/base/file.h"
#include "formats/base/half.h"
#include "formats/gguf.h"
#include "formats/model_check.h"
#include "formats/safetensors.h"
#include "formats/torchbin.h"
#include "quant/qtypes.h"

static const char *TOOL = "smelt-dump";

static void usage(void)
{
    printf("Usage: smelt-dump [options] FILE|DIR\n"
           "\n"
           "List the metadata and the tensor table of a GGUF file, a .safetensors file, a\n"
           "safetensors index json, a PyTorch checkpoint (.bin, torch.save) or a Hugging Face\n"
           "model directory (sharded or not). For a GGUF, a \"validation:\" line gives the verdict\n"
           "of the model check every smelt tool applies (the file is listed either way).\n"
           "\n"
           "Options:\n"
           "  --json            machine-readable output (one JSON object)\n"
           "  --full            print arrays and long strings in full\n"
           "  --tensor NAME     print the values of tensor NAME (dequantized to f32)\n"
           "  --rows N          with --tensor: number of rows to print (default 4)\n"
           "  --no-tensors      metadata only\n"
           "  -q, --quiet       data only: no header line, column headings or validation line\n"
           "                    (with --tensor: only the value rows)\n"
           "  -h, --help        this help\n"
           "  --version         version\n"
           "\n"
           "GGUF shapes are printed as ggml's ne[] (row length first); safetensors shapes as\n"
           "stored (PyTorch order, outermost first). Exit status: 0 ok, 1 I/O error, 2 usage,\n"
           "3 malformed input, 4 unsupported input.\n");
}

typedef struct {
    smelt_tool t; /* -q, --json, the error tail */
    int full, no_tensors;
    const char *tensor;
    long rows;
} opts;

/* ==== values ==== */

/* Dequantize one row of any type the quant library knows into dst. */
static int row_to_f32(int type, const void *src, float *dst, uint64_t n)
{
    return smelt_q_dequantize_row(type, src, dst, (size_t)n);
}

static void print_rows_text(const char *name, const char *tname, const uint8_t *data, uint64_t row_bytes,
                            uint64_t row_len, uint64_t rows, int type_or_dt, int is_gguf, const opts *o)
{
    float *buf = malloc(sizeof(float) * (size_t)(row_len ? row_len : 1));
    if (!buf) return;
    uint64_t show = (uint64_t)o->rows < rows ? (uint64_t)o->rows : rows;
    uint64_t cols = o->full ? row_len : (row_len < 16 ? row_len : 16);
    if (!o->t.quiet)
        printf("%s (%s): %" PRIu64 " of %" PRIu64 " rows, row length %" PRIu64 "\n", name, tname, show, rows, row_len);
    for (uint64_t r = 0; r < show; r++) {
        const uint8_t *src = data + r * row_bytes;
        int rc = is_gguf ? row_to_f32(type_or_dt, src, buf, row_len)
                         : smelt_dtype_to_f32((smelt_dtype)type_or_dt, src, buf, (size_t)row_len);
        if (rc) {
            printf("  (values of type %s cannot be decoded)\n", tname);
            break;
        }
        printf("  [%" PRIu64 "]", r);
        for (uint64_t c = 0; c < cols; c++) printf(" %.6g", buf[c]);
        if (cols < row_len) printf(" …");
        printf("\n");
    }
    free(buf);
}

static json_t *rows_json(const uint8_t *data, uint64_t row_bytes, uint64_t row_len, uint64_t rows, int type_or_dt,
                         int is_gguf, const opts *o)
{
    json_t *arr = json_array();
    float *buf = malloc(sizeof(float) * (size_t)(row_len ? row_len : 1));
    if (!buf) return arr;
    uint64_t show = (uint64_t)o->rows < rows ? (uint64_t)o->rows : rows;
    for (uint64_t r = 0; r < show; r++) {
        const uint8_t *src = data + r * row_bytes;
        int rc = is_gguf ? row_to_f32(type_or_dt, src, buf, row_len)
                         : smelt_dtype_to_f32((smelt_dtype)type_or_dt, src, buf, (size_t)row_len);
        if (rc) break;
        json_t *row = json_array();
        for (uint64_t c = 0; c < row_len; c++) json_array_append_new(row, json_real(buf[c]));
        json_array_append_new(arr, row);
    }
    free(buf);
    return arr;
}

/* ==== GGUF ==== */

static json_t *kv_value_json(const smelt_gguf_kv *kv, uint64_t i, int et)
{
    switch (et) {
    case SMELT_GGUF_STRING: {
        smelt_str s = kv->type == SMELT_GGUF_ARRAY ? smelt_gguf_arr_str(kv, i) : smelt_gguf_kv_str(kv);
        json_t *j = json_stringn_nocheck(s.p, (size_t)s.n);
        return j ? j : json_null();
    }
    case SMELT_GGUF_BOOL: return json_boolean(smelt_gguf_kv_int(kv, i));
    case SMELT_GGUF_F32:
    case SMELT_GGUF_F64: return json_real(smelt_gguf_kv_num(kv, i));
    case SMELT_GGUF_U64: return json_integer((json_int_t)smelt_gguf_kv_uint(kv, i));
    default: return json_integer(smelt_gguf_kv_int(kv, i));
    }
}

/* The verdict of the model check every tool applies (formats/model_check.h), for a GGUF
 * listed here whatever it holds: "ok (…)", "skipped (why)" or "FAILED: 'KEY': what". */
/* "[4096, 32000]": a shape as the tensor tables print it (cut short to fit n). */
static void format_shape(const uint64_t *dims, uint32_t n_dims, char *buf, size_t n)
{
    snprintf(buf, n, "[");
    for (uint32_t d = 0; d < n_dims; d++) {
        size_t used = strlen(buf);
        snprintf(buf + used, n - used, "%s%" PRIu64, d ? ", " : "", dims[d]);
    }
    size_t used = strlen(buf);
    if (used + 1 < n) snprintf(buf + used, n - used, "]");
}

static void validation(const smelt_gguf *g, char *buf, size_t n)
{
    smelt_err e;
    smelt_err_clear(&e);
    smelt_mc_hparams hp;
    int rc = smelt_mc_check_gguf(g, SMELT_MC_OTHER_ARCH_OK | SMELT_MC_NON_MODEL_OK, &hp, &e);
    if (rc == 0)
        snprintf(buf, n, "ok (a llama model: %u layers, %u heads, %u experts, %llu tokens)", hp.n_layer, hp.n_head, hp.n_expert,
                 (unsigned long long)hp.n_vocab);
    else if (rc > 0) snprintf(buf, n, "skipped (%s)", hp.skipped);
    else {
        char line[1200];
        e.file[0] = 0; /* the file is the one listed */
        smelt_err_format(&e, line, sizeof line);
        snprintf(buf, n, "FAILED: %s", line);
    }
}

static int dump_gguf(const char *path, opts *o)
{
    smelt_err e;
    smelt_err_clear(&e);
    smelt_gguf *g;
    /* a later shard of a split model is listed alone; the first one, with the others */
    int rc = smelt_gguf_open(path, SMELT_GGUF_META_ONLY | SMELT_GGUF_ONE_FILE, &g, &e);
    uint32_t split_no = 0, split_count = 0;
    if (!rc && !smelt_gguf_get_u32(g, SMELT_GGUF_SPLIT_COUNT, &split_count, NULL) && split_count > 1 &&
        !smelt_gguf_get_u32(g, SMELT_GGUF_SPLIT_NO, &split_no, NULL) && split_no == 0) {
        smelt_gguf_close(g);
        rc = smelt_gguf_open(path, SMELT_GGUF_META_ONLY, &g, &e);
    }
    if (rc) return smelt_tool_fail(&o->t, rc, &e);
    uint16_t ns = smelt_gguf_n_shards(g);
    uint64_t nkv = smelt_gguf_n_kv(g), nt = smelt_gguf_n_tensors(g);
    const smelt_gguf_tensor *sel = NULL;
    if (o->tensor && !(sel = smelt_gguf_find_tensor(g, o->tensor))) {
        fprintf(stderr, "%s: error: %s: no tensor named '%s'\n", TOOL, path, o->tensor);
        smelt_gguf_close(g);
        return 2;
    }
    if (o->t.json) {
        json_t *root = json_object();
        json_object_set_new(root, "file", json_string(path));
        json_object_set_new(root, "format", json_string("gguf"));
        json_object_set_new(root, "version", json_integer(smelt_gguf_version(g)));
        json_object_set_new(root, "alignment", json_integer((json_int_t)smelt_gguf_alignment(g)));
        json_object_set_new(root, "data_offset", json_integer((json_int_t)smelt_gguf_data_offset(g)));
        json_object_set_new(root, "file_size", json_integer((json_int_t)smelt_gguf_file_size(g)));
        char verdict[1400];
        validation(g, verdict, sizeof verdict);
        json_object_set_new(root, "validation", json_string(verdict));
        if (ns > 1) {
            json_t *sh = json_array();
            for (uint16_t i = 0; i < ns; i++) {
                const smelt_gguf *f = smelt_gguf_shard(g, i);
                json_t *j = json_object();
                json_object_set_new(j, "file", json_string(smelt_gguf_path(f)));
                json_object_set_new(j, "file_size", json_integer((json_int_t)smelt_gguf_file_size(f)));
                json_object_set_new(j, "data_offset", json_integer((json_int_t)smelt_gguf_data_offset(f)));
                json_array_append_new(sh, j);
            }
            json_object_set_new(root, "shards", sh);
        }
        json_t *md = json_array();
        for (uint64_t i = 0; i < nkv; i++) {
            const smelt_gguf_kv *kv = smelt_gguf_kv_at(g, i);
            json_t *j = json_object();
            json_object_set_new(j, "key", json_string(kv->key));
            json_object_set_new(j, "type", json_string(smelt_gguf_vtype_name(kv->type)));
            if (kv->type == SMELT_GGUF_ARRAY) {
                json_object_set_new(j, "elem_type", json_string(smelt_gguf_vtype_name(kv->arr_type)));
                json_object_set_new(j, "n", json_integer((json_int_t)kv->n));
                uint64_t show = (o->full || kv->n <= 16) ? kv->n : 16;
                json_t *a = json_array();
                for (uint64_t k = 0; k < show; k++) json_array_append_new(a, kv_value_json(kv, k, kv->arr_type));
                json_object_set_new(j, "value", a);
                if (show < kv->n) json_object_set_new(j, "truncated", json_true());
            } else {
                json_object_set_new(j, "value", kv_value_json(kv, 0, kv->type));
            }
            json_array_append_new(md, j);
        }
        json_object_set_new(root, "metadata", md);
        if (!o->no_tensors) {
            json_t *ts = json_array();
            for (uint64_t i = 0; i < nt; i++) {
                const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
                if (sel && t != sel) continue;
                json_t *j = json_object();
                json_object_set_new(j, "name", json_string(t->name));
                json_object_set_new(j, "type", json_string(smelt_type_name(t->type)));
                json_t *sh = json_array();
                for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(sh, json_integer((json_int_t)t->ne[d]));
                json_object_set_new(j, "shape", sh);
                json_object_set_new(j, "bytes", json_integer((json_int_t)t->nbytes));
                json_object_set_new(j, "offset",
                                    json_integer((json_int_t)(smelt_gguf_data_offset(smelt_gguf_shard(g, t->shard)) + t->offset)));
                if (ns > 1) json_object_set_new(j, "shard", json_integer(t->shard));
                if (sel && t->data)
                    json_object_set_new(j, "rows", rows_json(t->data, smelt_gguf_tensor_row_bytes(t), t->ne[0],
                                                             smelt_gguf_tensor_rows(t), t->type, 1, o));
                json_array_append_new(ts, j);
            }
            json_object_set_new(root, "tensors", ts);
        }
        smelt_tool_print_json(&o->t, root, JSON_INDENT(1) | JSON_ENSURE_ASCII);
        json_decref(root);
        smelt_gguf_close(g);
        return 0;
    }
    if (sel) {
        if (!sel->data) {
            fprintf(stderr, "%s: error: %s: tensor '%s' has no data in this file\n", TOOL, path, sel->name);
            smelt_gguf_close(g);
            return 3;
        }
        print_rows_text(sel->name, smelt_type_name(sel->type), sel->data, smelt_gguf_tensor_row_bytes(sel), sel->ne[0],
                        smelt_gguf_tensor_rows(sel), sel->type, 1, o);
        smelt_gguf_close(g);
        return 0;
    }
    if (!o->t.quiet) {
        char verdict[1400];
        validation(g, verdict, sizeof verdict);
        printf("%s: GGUF v%u, %" PRIu64 " KV pairs, %" PRIu64 " tensors, alignment %" PRIu64 ", data at %" PRIu64 "%s\n", path,
               smelt_gguf_version(g), nkv, nt, smelt_gguf_alignment(g), smelt_gguf_data_offset(g),
               nt && !smelt_gguf_tensor_at(g, 0)->data ? " (metadata only: the file holds no tensor data)" : "");
        printf("validation: %s\n", verdict);
        for (uint16_t i = 0; ns > 1 && i < ns; i++) {
            const smelt_gguf *f = smelt_gguf_shard(g, i);
            printf("shard %u of %u: %s, %" PRIu64 " bytes, data at %" PRIu64 "\n", i + 1, ns, smelt_gguf_path(f),
                   smelt_gguf_file_size(f), smelt_gguf_data_offset(f));
        }
        if (split_count > 1 && split_no > 0)
            printf("note: shard %u of %u of a split model, listed alone (give the first shard for the whole model)\n",
                   split_no + 1, split_count);
    }
    size_t cap = 1 << 16;
    char *buf = malloc(cap);
    for (uint64_t i = 0; buf && i < nkv; i++) {
        const smelt_gguf_kv *kv = smelt_gguf_kv_at(g, i);
        size_t need = smelt_gguf_kv_format(kv, buf, cap, o->full ? 0 : 8);
        if (need >= cap) {
            char *nb = realloc(buf, need + 1);
            if (nb) {
                buf = nb;
                cap = need + 1;
                smelt_gguf_kv_format(kv, buf, cap, o->full ? 0 : 8);
            }
        }
        char ty[32];
        if (kv->type == SMELT_GGUF_ARRAY) snprintf(ty, sizeof ty, "[%s]", smelt_gguf_vtype_name(kv->arr_type));
        else snprintf(ty, sizeof ty, "%s", smelt_gguf_vtype_name(kv->type));
        printf("  %5" PRIu64 ": %-8s %-40s = %s\n", i, ty, kv->key, buf);
    }
    free(buf);
    if (!o->no_tensors) {
        if (!o->t.quiet)
            printf("\n  %5s  %-48s %-8s %-28s %12s %12s%s\n", "#", "name", "type", "shape (ne)", "bytes", "offset",
                   ns > 1 ? "  shard" : "");
        for (uint64_t i = 0; i < nt; i++) {
            const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
            char sh[96];
            format_shape(t->ne, t->n_dims, sh, sizeof sh);
            printf("  %5" PRIu64 "  %-48s %-8s %-28s %12" PRIu64 " %12" PRIu64, i, t->name, smelt_type_name(t->type), sh,
                   t->nbytes, smelt_gguf_data_offset(smelt_gguf_shard(g, t->shard)) + t->offset);
            if (ns > 1) printf("  %5u", t->shard + 1);
            printf("\n");
        }
    }
    smelt_gguf_close(g);
    return 0;
}

/* ==== safetensors ==== */

static int dump_st(const char *path, opts *o)
{
    smelt_err e;
    smelt_err_clear(&e);
    smelt_stset *s;
    int rc = smelt_stset_open(path, &s, &e);
    if (rc) return smelt_tool_fail(&o->t, rc, &e);
    uint64_t nt = smelt_stset_n_tensors(s);
    const smelt_st_tensor *sel = NULL;
    if (o->tensor && !(sel = smelt_stset_find(s, o->tensor))) {
        fprintf(stderr, "%s: error: %s: no tensor named '%s'\n", TOOL, path, o->tensor);
        smelt_stset_close(s);
        return 2;
    }
    uint64_t sel_rows = 1, sel_len = 1;
    if (sel) {
        sel_len = sel->n_dims ? sel->shape[sel->n_dims - 1] : 1;
        sel_rows = sel_len ? sel->nelements / sel_len : 0;
    }
    if (o->t.json) {
        json_t *root = json_object();
        json_object_set_new(root, "path", json_string(path));
        json_object_set_new(root, "format", json_string("safetensors"));
        if (smelt_stset_index_path(s)) json_object_set_new(root, "index", json_string(smelt_stset_index_path(s)));
        json_t *files = json_array();
        for (size_t f = 0; f < smelt_stset_n_files(s); f++) {
            const smelt_st *st = smelt_stset_file(s, f);
            json_t *j = json_object();
            json_object_set_new(j, "file", json_string(smelt_st_path(st)));
            json_object_set_new(j, "header_len", json_integer((json_int_t)smelt_st_header_len(st)));
            json_object_set_new(j, "n_tensors", json_integer((json_int_t)smelt_st_n_tensors(st)));
            size_t nm;
            const char *const *m = smelt_st_metadata(st, &nm);
            json_t *md = json_object();
            for (size_t i = 0; i < nm; i++) json_object_set_new(md, m[2 * i], json_string(m[2 * i + 1]));
            json_object_set_new(j, "metadata", md);
            json_array_append_new(files, j);
        }
        json_object_set_new(root, "files", files);
        if (!o->no_tensors) {
            json_t *ts = json_array();
            for (uint64_t i = 0; i < nt; i++) {
                const smelt_st_tensor *t = smelt_stset_tensor_at(s, i);
                if (sel && t != sel) continue;
                json_t *j = json_object();
                json_object_set_new(j, "name", json_string(t->name));
                json_object_set_new(j, "dtype", json_string(smelt_dtype_name(t->dtype)));
                json_t *sh = json_array();
                for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(sh, json_integer((json_int_t)t->shape[d]));
                json_object_set_new(j, "shape", sh);
                json_object_set_new(j, "bytes", json_integer((json_int_t)(t->end - t->begin)));
                json_object_set_new(j, "offset", json_integer((json_int_t)t->file_offset));
                json_object_set_new(j, "file", json_string(t->file));
                if (sel)
                    json_object_set_new(j, "rows", rows_json(t->data, sel_len * smelt_dtype_size(t->dtype), sel_len,
                                                             sel_rows, t->dtype, 0, o));
                json_array_append_new(ts, j);
            }
            json_object_set_new(root, "tensors", ts);
        }
        smelt_tool_print_json(&o->t, root, JSON_INDENT(1) | JSON_ENSURE_ASCII);
        json_decref(root);
        smelt_stset_close(s);
        return 0;
    }
    if (sel) {
        print_rows_text(sel->name, smelt_dtype_name(sel->dtype), sel->data, sel_len * smelt_dtype_size(sel->dtype),
                        sel_len, sel_rows, sel->dtype, 0, o);
        smelt_stset_close(s);
        return 0;
    }
    if (!o->t.quiet) printf("%s: safetensors, %zu file(s), %" PRIu64 " tensors\n", path, smelt_stset_n_files(s), nt);
    for (size_t f = 0; f < smelt_stset_n_files(s); f++) {
        const smelt_st *st = smelt_stset_file(s, f);
        size_t nm;
        const char *const *m = smelt_st_metadata(st, &nm);
        printf("  file %zu: %s (%" PRIu64 " tensors, header %" PRIu64 " bytes)", f, smelt_st_path(st),
               smelt_st_n_tensors(st), smelt_st_header_len(st));
        for (size_t i = 0; i < nm; i++) printf(" %s=%s", m[2 * i], m[2 * i + 1]);
        printf("\n");
    }
    if (!o->no_tensors) {
        if (!o->t.quiet)
            printf("\n  %5s  %-60s %-7s %-20s %12s %12s %s\n", "#", "name", "dtype", "shape", "bytes", "offset", "file");
        for (uint64_t i = 0; i < nt; i++) {
            const smelt_st_tensor *t = smelt_stset_tensor_at(s, i);
            char sh[96];
            format_shape(t->shape, t->n_dims, sh, sizeof sh);
            const char *fb = strrchr(t->file, '/');
            printf("  %5" PRIu64 "  %-60s %-7s %-20s %12" PRIu64 " %12" PRIu64 " %s\n", i, t->name,
                   smelt_dtype_name(t->dtype), sh, t->end - t->begin, t->file_offset, fb ? fb + 1 : t->file);
        }
    }
    smelt_stset_close(s);
    return 0;
}

/* ==== PyTorch checkpoints ==== */

/* A torch.save file: a zip archive, or a bare pickle (the legacy format, which the reader
 * names as such). */
static int is_torch_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char m[4] = {0};
    size_t n = fread(m, 1, 4, f);
    fclose(f);
    return (n == 4 && !memcmp(m, "PK\x03\x04", 4)) || (n >= 2 && m[0] == 0x80 && m[1] <= 5);
}

/* A directory with PyTorch weights and no safetensors; *adapter: a PEFT adapter_model.bin. */
static int is_torch_dir(const char *dir, char *adapter, size_t n)
{
    static const char *const st[] = {"model.safetensors", "model.safetensors.index.json", "adapter_model.safetensors"};
    char p[4096];
    adapter[0] = 0;
    for (size_t i = 0; i < 3; i++)
        if (smelt_path_join(p, sizeof p, dir, st[i]) && smelt_file_exists(p)) return 0;
    if ((smelt_path_join(p, sizeof p, dir, "pytorch_model.bin.index.json") && smelt_file_exists(p)) ||
        (smelt_path_join(p, sizeof p, dir, "pytorch_model.bin") && smelt_file_exists(p)))
        return 1;
    if (smelt_path_join(adapter, n, dir, "adapter_model.bin") && smelt_file_exists(adapter)) return 1;
    adapter[0] = 0;
    return 0;
}

static json_t *shape_json(const smelt_tinfo *t)
{
    json_t *sh = json_array();
    for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(sh, json_integer((json_int_t)t->shape[d]));
    return sh;
}

static int dump_torch(const char *path, const char *adapter, opts *o)
{
    smelt_err e;
    smelt_err_clear(&e);
    smelt_tsrc src;
    memset(&src, 0, sizeof src);
    int rc = !smelt_is_dir(path) ? smelt_torchbin_open_file(path, &src, &e)
             : adapter[0]        ? smelt_torchbin_open_file(adapter, &src, &e)
                                 : smelt_torchbin_open_dir(path, &src, &e);
    if (rc) return smelt_tool_fail(&o->t, rc, &e);
    uint64_t nt = smelt_tsrc_count(&src);
    int64_t sel = -1;
    if (o->tensor && (sel = smelt_tsrc_find(&src, o->tensor)) < 0) {
        fprintf(stderr, "%s: error: %s: no tensor named '%s'\n", TOOL, path, o->tensor);
        smelt_tsrc_close(&src);
        return 2;
    }
    const void *data = NULL;
    smelt_scratch sc = {0};
    uint64_t sel_len = 1, sel_rows = 0;
    if (sel >= 0) {
        const smelt_tinfo *t = smelt_tsrc_info(&src, (uint64_t)sel);
        sel_len = t->n_dims ? t->shape[t->n_dims - 1] : 1;
        sel_rows = sel_len ? t->nelements / sel_len : 0;
        if ((rc = smelt_tsrc_read(&src, (uint64_t)sel, &data, &sc, &e))) {
            smelt_err_print(&e, TOOL, stderr);
            smelt_scratch_free(&sc);
            smelt_tsrc_close(&src);
            return smelt_err_exit_status(rc);
        }
    }
    if (o->t.json) {
        json_t *root = json_object();
        json_object_set_new(root, "path", json_string(path));
        json_object_set_new(root, "format", json_string("pytorch"));
        json_object_set_new(root, "n_tensors", json_integer((json_int_t)nt));
        json_t *ts = json_array();
        for (uint64_t i = 0; i < nt && !o->no_tensors; i++) {
            const smelt_tinfo *t = smelt_tsrc_info(&src, i);
            if (sel >= 0 && (int64_t)i != sel) continue;
            json_t *j = json_object();
            json_object_set_new(j, "name", json_string(t->name));
            json_object_set_new(j, "dtype", json_string(smelt_dtype_name(t->dtype)));
            json_object_set_new(j, "shape", shape_json(t));
            json_object_set_new(j, "bytes", json_integer((json_int_t)t->nbytes));
            if (t->file) json_object_set_new(j, "file", json_string(t->file));
            if (sel >= 0)
                json_object_set_new(j, "rows", rows_json(data, sel_len * smelt_dtype_size(t->dtype), sel_len, sel_rows, t->dtype, 0, o));
            json_array_append_new(ts, j);
        }
        if (!o->no_tensors) json_object_set_new(root, "tensors", ts);
        else json_decref(ts);
        smelt_tool_print_json(&o->t, root, JSON_INDENT(1) | JSON_ENSURE_ASCII);
        json_decref(root);
    } else if (sel >= 0) {
        const smelt_tinfo *t = smelt_tsrc_info(&src, (uint64_t)sel);
        print_rows_text(t->name, smelt_dtype_name(t->dtype), data, sel_len * smelt_dtype_size(t->dtype), sel_len, sel_rows, t->dtype, 0,
                        o);
    } else {
        if (!o->t.quiet) printf("%s: PyTorch checkpoint (torch.save), %" PRIu64 " tensors\n", path, nt);
        if (!o->no_tensors && !o->t.quiet) printf("\n  %5s  %-60s %-7s %-20s %12s %s\n", "#", "name", "dtype", "shape", "bytes", "file");
        for (uint64_t i = 0; i < nt && !o->no_tensors; i++) {
            const smelt_tinfo *t = smelt_tsrc_info(&src, i);
            char sh[96];
            format_shape(t->shape, t->n_dims, sh, sizeof sh);
            const char *fb = t->file ? strrchr(t->file, '/') : NULL;
            printf("  %5" PRIu64 "  %-60s %-7s %-20s %12" PRIu64 " %s\n", i, t->name, smelt_dtype_name(t->dtype), sh, t->nbytes,
                   fb ? fb + 1 : t->file ? t->file : "");
        }
    }
    smelt_scratch_free(&sc);
    smelt_tsrc_close(&src);
    return 0;
}

static int is_gguf_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char m[4] = {0};
    size_t n = fread(m, 1, 4, f);
    fclose(f);
    return n == 4 && (!memcmp(m, "GGUF", 4) || !memcmp(m, "FUGG", 4));
}

int main(int argc, char **argv)
{
    opts o = {0};
    o.rows = 4;
    smelt_tool_init(&o.t, TOOL, usage);
    static const struct option lo[] = {{"full", no_argument, 0, 'f'},          {"tensor", required_argument, 0, 'T'},
                                       {"rows", required_argument, 0, 'r'},    {"no-tensors", no_argument, 0, 'N'},
                                       SMELT_TOOL_OPTIONS,                     {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "hq", lo, NULL)) != -1) {
        int st = smelt_tool_option(&o.t, c, optarg);
        if (st == SMELT_TOOL_OPTION_TAKEN) continue;
        if (st != SMELT_TOOL_OPTION_OTHER) return st;
        switch (c) {
        case 'f': o.full = 1; break;
        case 'T': o.tensor = optarg; break;
        case 'r':
            if (smelt_cli_int(optarg, 0, 1L << 40, &o.rows)) return smelt_cli_usage_error(TOOL, "--rows needs a number");
            break;
        case 'N': o.no_tensors = 1; break;
        }
    }
    if (optind != argc - 1) return smelt_cli_usage_error(TOOL, "expected exactly one FILE or DIR");
    const char *path = argv[optind];
    smelt_tool_start(&o.t, "dumping");
    smelt_err e;
    if (!smelt_is_dir(path) && smelt_check_regular_file(path, &e)) return smelt_tool_fail(&o.t, e.code, &e);
    if (!smelt_is_dir(path) && is_gguf_file(path)) return dump_gguf(path, &o);
    char adapter[4096] = "";
    if (smelt_is_dir(path) ? is_torch_dir(path, adapter, sizeof adapter) : is_torch_file(path)) return dump_torch(path, adapter, &o);
    return dump_st(path, &o);
}
