/* hfdir.c — HF model directories. Safetensors weights via safetensors.c; PyTorch .bin
 * weights via torchzip.c. */
#include "hfdir.h"

#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include "base/file.h"
#include "fp8src.h"
#include "safetensors.h"
#include "torchbin.h"

struct smelt_hf {
    char *dir;
    char *cfg_path;
    json_t *config;
    smelt_hf_weights kind;
    smelt_stset *st;
    smelt_tsrc src;
};

/* A copy of JSON text with every integer literal of more than 18 digits outside strings
 * followed by ".0"; NULL on ENOMEM. */
static char *widen_big_ints(const char *t, size_t len, size_t *out_len)
{
    size_t cap = len + 1, o = 0;
    for (size_t i = 0; i < len; i++) cap += t[i] == ':' || t[i] == ',' || t[i] == '[' ? 2 : 0;
    char *w = malloc(cap);
    if (!w) return NULL;
    bool in_str = false;
    for (size_t i = 0; i < len;) {
        char c = t[i];
        if (in_str) {
            w[o++] = c;
            if (c == '\\' && i + 1 < len) w[o++] = t[++i];
            else if (c == '"') in_str = false;
            i++;
            continue;
        }
        if (c == '"') in_str = true;
        if (c == '-' || (c >= '0' && c <= '9')) {
            size_t j = i + (c == '-');
            while (j < len && t[j] >= '0' && t[j] <= '9') j++;
            bool is_int = j >= len || (t[j] != '.' && t[j] != 'e' && t[j] != 'E');
            size_t digits = j - i - (c == '-');
            memcpy(w + o, t + i, j - i);
            o += j - i;
            if (is_int && digits > 18 && o + 2 < cap) {
                w[o++] = '.';
                w[o++] = '0';
            }
            i = j;
            continue;
        }
        w[o++] = c;
        i++;
    }
    *out_len = o;
    return w;
}

int smelt_json_load(const char *path, json_t **out, smelt_err *e)
{
    *out = NULL;
    char *text;
    size_t len;
    int rc = smelt_read_file(path, 64u << 20, &text, &len, e);
    if (rc) return rc;
    json_error_t je;
    json_t *j = json_loadb(text, len, 0, &je);
    if (!j && strstr(je.text, "too big integer")) {
        /* Python reads integers of any size (Llama 3's model_max_length is 1e30): such a
         * literal becomes a real here, every other value keeps its type */
        char *wide = widen_big_ints(text, len, &len);
        if (wide) {
            json_t *j2 = json_loadb(wide, len, 0, &je);
            free(wide);
            j = j2;
        }
    }
    free(text);
    if (!j)
        return SMELT_ERR_AT(e, SMELT_EFORMAT, path, (uint64_t)(je.position > 0 ? je.position : 0), NULL,
                            "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
    *out = j;
    return 0;
}

int smelt_hf_open(const char *dir, smelt_hf **out, smelt_err *e)
{
    *out = NULL;
    if (!smelt_is_dir(dir)) return SMELT_ERR(e, SMELT_EIO, dir, NULL, "not a directory");
    smelt_hf *h = calloc(1, sizeof *h);
    if (!h) return SMELT_NOMEM(e, "model directory");
    h->dir = strdup(dir);
    char p[4096];
    int rc = 0;
    if (!smelt_path_join(p, sizeof p, dir, "config.json") || !smelt_nondir_exists(p)) {
        rc = SMELT_ERR(e, SMELT_EIO, dir, NULL, "no config.json: not a Hugging Face model directory");
        goto fail;
    }
    h->cfg_path = strdup(p);
    if ((rc = smelt_json_load(p, &h->config, e))) goto fail;
    if (!json_is_object(h->config)) {
        rc = SMELT_ERR(e, SMELT_EFORMAT, p, NULL, "config.json is not a JSON object");
        goto fail;
    }
    char a[4096], b[4096];
    /* a FIFO or device under one of these names is refused when opened, not taken as absent */
    int have_st = (smelt_path_join(a, sizeof a, dir, "model.safetensors.index.json") && smelt_nondir_exists(a)) ||
                  (smelt_path_join(b, sizeof b, dir, "model.safetensors") && smelt_nondir_exists(b));
    if (have_st) {
        h->kind = SMELT_HF_SAFETENSORS;
        if ((rc = smelt_stset_open(dir, &h->st, e))) goto fail;
        if ((rc = smelt_tsrc_open_stset(&h->src, h->st, e))) goto fail;
    } else {
        h->kind = SMELT_HF_TORCH_BIN;
        if ((rc = smelt_torchbin_open_dir(dir, &h->src, e))) goto fail;
    }
    smelt_fp8_cfg fp8;
    if ((rc = smelt_fp8_cfg_read(h->config, h->cfg_path, &fp8, e))) goto fail;
    if ((rc = smelt_tsrc_wrap_fp8(&h->src, &fp8, e))) goto fail;
    *out = h;
    return 0;
fail:
    smelt_hf_close(h);
    return rc;
}

void smelt_hf_close(smelt_hf *h)
{
    if (!h) return;
    smelt_tsrc_close(&h->src);
    smelt_stset_close(h->st);
    json_decref(h->config);
    free(h->cfg_path);
    free(h->dir);
    free(h);
}

const char *smelt_hf_dir(const smelt_hf *h) { return h->dir; }
smelt_hf_weights smelt_hf_weights_kind(const smelt_hf *h) { return h->kind; }
json_t *smelt_hf_config(const smelt_hf *h) { return h->config; }
const smelt_tsrc *smelt_hf_tensors(const smelt_hf *h) { return &h->src; }

const char *smelt_hf_file(const smelt_hf *h, const char *name, char *buf, size_t n)
{
    if (!smelt_path_join(buf, n, h->dir, name) || !smelt_file_exists(buf)) return NULL;
    return buf;
}

static json_t *cfg_get(const smelt_hf *h, const char *key)
{
    json_t *v = json_object_get(h->config, key);
    return json_is_null(v) ? NULL : v;
}

int smelt_hf_cfg_int(const smelt_hf *h, const char *key, int64_t *out, smelt_err *e)
{
    json_t *v = cfg_get(h, key);
    if (!v) return SMELT_ERR(e, SMELT_EFORMAT, h->cfg_path, key, "required key is missing");
    if (!json_is_integer(v))
        return SMELT_ERR(e, SMELT_EFORMAT, h->cfg_path, key, "expected an integer");
    *out = json_integer_value(v);
    return 0;
}

int smelt_hf_cfg_float(const smelt_hf *h, const char *key, double *out, smelt_err *e)
{
    json_t *v = cfg_get(h, key);
    if (!v) return SMELT_ERR(e, SMELT_EFORMAT, h->cfg_path, key, "required key is missing");
    if (!json_is_number(v)) return SMELT_ERR(e, SMELT_EFORMAT, h->cfg_path, key, "expected a number");
    *out = json_number_value(v);
    return 0;
}

int smelt_hf_cfg_str(const smelt_hf *h, const char *key, const char **out, smelt_err *e)
{
    json_t *v = cfg_get(h, key);
    if (!v) return SMELT_ERR(e, SMELT_EFORMAT, h->cfg_path, key, "required key is missing");
    if (!json_is_string(v)) return SMELT_ERR(e, SMELT_EFORMAT, h->cfg_path, key, "expected a string");
    *out = json_string_value(v);
    return 0;
}

int smelt_hf_cfg_int_opt(const smelt_hf *h, const char *key, int64_t *out, smelt_err *e)
{
    return cfg_get(h, key) ? smelt_hf_cfg_int(h, key, out, e) : 0;
}

int smelt_hf_cfg_float_opt(const smelt_hf *h, const char *key, double *out, smelt_err *e)
{
    return cfg_get(h, key) ? smelt_hf_cfg_float(h, key, out, e) : 0;
}
