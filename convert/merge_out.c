/* merge_out.c — the merged model written as a Hugging Face directory: shards in the base's
 * layout, index json, config.json edited in place (vocab_size, "smelt_merge" record),
 * tokenizer and other small files, a per-tensor xxh64 manifest. Built in a hidden
 * directory beside the target and renamed into place. Includes formats/, convert/merge.h. */
#include "merge.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/base/file.h"
#include "formats/base/guard.h"
#include "formats/base/hash.h"
#include "formats/base/strbuf.h"
#include "formats/manifest.h"
#include "formats/safetensors.h"

/* ==== small helpers ==== */

static void rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char p[4096];
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (!smelt_path_join(p, sizeof p, dir, de->d_name)) continue;
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) rmtree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static bool ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

static int copy_file(const char *src, const char *dst, smelt_err *e)
{
    smelt_map m;
    int rc = smelt_map_open(&m, src, e);
    if (rc) return rc;
    smelt_outfile *o;
    if (!(rc = smelt_outfile_open(&o, dst, e))) {
        if (m.size) rc = smelt_outfile_write(o, m.data, (size_t)m.size, e);
        if (rc) smelt_outfile_abort(o);
        else rc = smelt_outfile_commit(o, e);
    }
    smelt_map_close(&m);
    return rc;
}

/* ==== config.json surgery (keeps the base's formatting byte for byte) ==== */

static const char *skip_ws(const char *s)
{
    while (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t') s++;
    return s;
}

static const char *skip_string(const char *s)
{
    for (s++; *s && *s != '"'; s++)
        if (*s == '\\' && s[1]) s++;
    return *s ? s + 1 : s;
}

static const char *skip_value(const char *s)
{
    s = skip_ws(s);
    if (*s == '"') return skip_string(s);
    if (*s == '{' || *s == '[') {
        int depth = 0;
        for (; *s; s++) {
            if (*s == '"') {
                s = skip_string(s) - 1;
                continue;
            }
            if (*s == '{' || *s == '[') depth++;
            if (*s == '}' || *s == ']') {
                if (--depth == 0) return s + 1;
            }
        }
        return s;
    }
    while (*s && *s != ',' && *s != '}' && *s != ']' && *s != ' ' && *s != '\n' && *s != '\r' && *s != '\t') s++;
    return s;
}

/* Span of the value of a top-level key: [*vs, *ve); the key's opening quote at *ks. */
static bool find_top_key(const char *text, const char *key, const char **ks, const char **vs, const char **ve)
{
    const char *s = skip_ws(text);
    if (*s != '{') return false;
    s++;
    size_t kl = strlen(key);
    for (;;) {
        s = skip_ws(s);
        if (*s != '"') return false;
        const char *k0 = s, *k1 = skip_string(s);
        s = skip_ws(k1);
        if (*s != ':') return false;
        const char *v0 = skip_ws(s + 1), *v1 = skip_value(v0);
        if ((size_t)(k1 - k0) == kl + 2 && !memcmp(k0 + 1, key, kl)) {
            *ks = k0;
            *vs = v0;
            *ve = v1;
            return true;
        }
        s = skip_ws(v1);
        if (*s != ',') return false;
        s++;
    }
}

static char *splice(const char *text, const char *a, const char *b, const char *ins)
{
    size_t pre = (size_t)(a - text), il = strlen(ins), post = strlen(b);
    char *out = malloc(pre + il + post + 1);
    if (!out) return NULL;
    memcpy(out, text, pre);
    memcpy(out + pre, ins, il);
    memcpy(out + pre + il, b, post + 1);
    return out;
}

/* Indent every line after the first by `ind` spaces. */
static char *indent_json(const char *s, int ind)
{
    size_t nl = 0;
    for (const char *p = s; *p; p++) nl += *p == '\n';
    char *out = malloc(strlen(s) + nl * (size_t)ind + 1), *o = out;
    if (!out) return NULL;
    for (const char *p = s; *p; p++) {
        *o++ = *p;
        if (*p == '\n')
            for (int i = 0; i < ind; i++) *o++ = ' ';
    }
    *o = 0;
    return out;
}

static int build_config(const smelt_hf *base, smelt_merge *m, const smelt_merge_adapter *ads, size_t n,
                        const char *base_hash, const char *tool, char **out, smelt_err *e)
{
    char path[4096];
    const char *cfg_path = smelt_path_join(path, sizeof path, smelt_hf_dir(base), "config.json");
    char *text;
    size_t len;
    int rc = smelt_read_file(cfg_path, 64u << 20, &text, &len, e);
    if (rc) return rc;
    const smelt_merge_report *r = smelt_merge_get_report(m);
    const char *ks, *vs, *ve;
    if (r->vocab_new >= 0) {
        char num[32];
        snprintf(num, sizeof num, "%" PRId64, r->vocab_new);
        if (find_top_key(text, "vocab_size", &ks, &vs, &ve)) {
            char *t2 = splice(text, vs, ve, num);
            free(text);
            if (!t2) return SMELT_NOMEM(e, "config.json");
            text = t2;
        } else {
            free(text);
            return SMELT_ERR(e, SMELT_EUNSUPPORTED, cfg_path, "vocab_size",
                             "the merge resizes the vocabulary to %" PRId64 " but config.json has no top-level "
                             "vocab_size to update",
                             r->vocab_new);
        }
    }
    /* a block-scaled fp8 base is written dequantized (fp8src.h): its quantization_config
     * no longer describes the weights */
    bool scaled = false;
    for (uint64_t k = 0; k < smelt_tsrc_count(smelt_hf_tensors(base)); k++)
        scaled |= smelt_tsrc_info(smelt_hf_tensors(base), k)->block_scaled != 0;
    if (scaled && find_top_key(text, "quantization_config", &ks, &vs, &ve)) {
        const char *a = ks, *z = skip_ws(ve);
        if (*z == ',') {
            z = skip_ws(z + 1); /* up to the next key, whose indentation stays */
        } else {
            z = ve; /* the last key: from the comma before it */
            while (a > text && a[-1] != ',') a--;
            if (a > text) a--;
        }
        char *t2 = splice(text, a, z, "");
        free(text);
        if (!t2) return SMELT_NOMEM(e, "config.json");
        text = t2;
    }
    /* the record: earlier adapters kept, new ones appended */
    json_t *rec = json_object(), *arr = json_array();
    json_t *old = json_object_get(smelt_hf_config(base), "smelt_merge");
    json_t *old_ads = old ? json_object_get(old, "adapters") : NULL;
    size_t i;
    json_t *v;
    json_array_foreach(old_ads, i, v) json_array_append(arr, v);
    for (size_t a = 0; a < n; a++) {
        json_t *o = json_object();
        json_object_set_new(o, "path", json_string(smelt_peft_dir(ads[a].peft)));
        json_object_set_new(o, "xxh64", json_string(smelt_peft_hash(ads[a].peft)));
        json_object_set_new(o, "weight", json_real(ads[a].weight));
        json_object_set_new(o, "base_model_name_or_path", json_string(smelt_peft_base_name(ads[a].peft)));
        json_array_append_new(arr, o);
    }
    json_object_set_new(rec, "tool", json_string(tool ? tool : "smelt-merge"));
    json_t *b = json_object();
    json_object_set_new(b, "path", json_string(smelt_hf_dir(base)));
    json_object_set_new(b, "xxh64", json_string(base_hash));
    json_object_set_new(rec, "base", b);
    if (old && json_object_get(old, "base")) json_object_set(rec, "original_base", json_object_get(old, "original_base") ? json_object_get(old, "original_base") : json_object_get(old, "base"));
    json_object_set_new(rec, "adapters", arr);
    char *js = json_dumps(rec, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(rec);
    char *ind = js ? indent_json(js, 2) : NULL;
    free(js);
    if (!ind) {
        free(text);
        return SMELT_NOMEM(e, "config.json");
    }
    char *t2 = NULL;
    if (find_top_key(text, "smelt_merge", &ks, &vs, &ve)) {
        t2 = splice(text, vs, ve, ind);
    } else {
        const char *end = text + strlen(text);
        while (end > text && end[-1] != '}') end--;
        const char *close = end - 1, *last = close;
        while (last > text && (last[-1] == ' ' || last[-1] == '\n' || last[-1] == '\r' || last[-1] == '\t')) last--;
        if (close < text || *close != '}') {
            free(ind);
            free(text);
            return SMELT_ERR(e, SMELT_EFORMAT, cfg_path, NULL, "config.json is not a JSON object");
        }
        bool empty = last > text && last[-1] == '{';
        size_t need = strlen(ind) + 32;
        char *ins = malloc(need);
        if (ins) {
            snprintf(ins, need, "%s\n  \"smelt_merge\": %s\n", empty ? "" : ",", ind);
            t2 = splice(text, last, close, ins);
            free(ins);
        }
    }
    free(ind);
    free(text);
    if (!t2) return SMELT_NOMEM(e, "config.json");
    json_error_t je;
    json_t *check = json_loads(t2, 0, &je);
    if (!check) {
        free(t2);
        return SMELT_ERR(e, SMELT_EINTERNAL, cfg_path, NULL, "edited config.json does not parse: %s", je.text);
    }
    json_decref(check);
    *out = t2;
    return 0;
}

/* ==== files copied from the base / the adapter ==== */

static const char *const TOKENIZER_FILES[] = {"tokenizer.model",         "tokenizer.json", "tokenizer_config.json",
                                              "special_tokens_map.json", "added_tokens.json", "vocab.json",
                                              "merges.txt",              "chat_template.jinja", "chat_template.json"};

static bool is_tokenizer_file(const char *n)
{
    for (size_t i = 0; i < sizeof TOKENIZER_FILES / sizeof *TOKENIZER_FILES; i++)
        if (!strcmp(n, TOKENIZER_FILES[i])) return true;
    return false;
}

static bool is_weights_file(const char *n)
{
    static const char *const ext[] = {".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf",
                                      ".onnx", ".index.json"};
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++)
        if (ends_with(n, ext[i])) return true;
    return !strcmp(n, "config.json");
}

static int copy_small_files(const smelt_hf *base, const smelt_merge_adapter *ads, size_t n, const char *tmp,
                            smelt_err *e)
{
    const char *tok_dir = NULL;
    char p[4096], q[4096];
    for (size_t a = 0; a < n && !tok_dir; a++) {
        const char *d = smelt_peft_dir(ads[a].peft);
        if ((smelt_path_join(p, sizeof p, d, "tokenizer.model") && smelt_file_exists(p)) ||
            (smelt_path_join(p, sizeof p, d, "tokenizer.json") && smelt_file_exists(p)))
            tok_dir = d;
    }
    int rc = 0;
    DIR *dd = opendir(smelt_hf_dir(base));
    if (!dd) return SMELT_ERR(e, SMELT_EIO, smelt_hf_dir(base), NULL, "cannot list the directory: %s", strerror(errno));
    struct dirent *de;
    while (!rc && (de = readdir(dd))) {
        const char *nm = de->d_name;
        if (nm[0] == '.' || is_weights_file(nm) || (tok_dir && is_tokenizer_file(nm))) continue;
        if (!smelt_path_join(p, sizeof p, smelt_hf_dir(base), nm) || !smelt_path_join(q, sizeof q, tmp, nm)) continue;
        struct stat st;
        if (stat(p, &st) || !S_ISREG(st.st_mode)) continue;
        rc = copy_file(p, q, e);
    }
    closedir(dd);
    for (size_t i = 0; !rc && tok_dir && i < sizeof TOKENIZER_FILES / sizeof *TOKENIZER_FILES; i++) {
        if (!smelt_path_join(p, sizeof p, tok_dir, TOKENIZER_FILES[i]) || !smelt_file_exists(p)) continue;
        if (smelt_path_join(q, sizeof q, tmp, TOKENIZER_FILES[i])) rc = copy_file(p, q, e);
    }
    return rc;
}

/* ==== shards ==== */

typedef struct {
    char *name;     /* output file name */
    uint64_t *idx;  /* tensors of the merged source */
    size_t n;
    const smelt_st *meta_from; /* base shard whose __metadata__ is copied, or NULL */
} shard;

static void free_shards(shard *s, size_t n)
{
    for (size_t i = 0; s && i < n; i++) {
        free(s[i].name);
        free(s[i].idx);
    }
    free(s);
}

static char *out_shard_name(const char *base_file)
{
    const char *b = base_name(base_file);
    if (ends_with(b, ".safetensors")) return strdup(b);
    /* pytorch_model-00001-of-00002.bin → model-00001-of-00002.safetensors */
    const char *s = !strncmp(b, "pytorch_", 8) ? b + 8 : b;
    size_t l = strlen(s);
    if (ends_with(s, ".bin")) l -= 4;
    char *out = malloc(l + 13);
    if (out) snprintf(out, l + 13, "%.*s.safetensors", (int)l, s);
    return out;
}

static int plan_shards(const smelt_tsrc *src, const smelt_stset *bst, uint64_t max_size, shard **out, size_t *nout,
                       smelt_err *e)
{
    uint64_t n = smelt_tsrc_count(src);
    shard *sh = NULL;
    size_t ns = 0;
    if (max_size) {
        uint64_t *sizes = malloc((n + 1) * sizeof *sizes);
        size_t *of = malloc((n + 1) * sizeof *of);
        if (!sizes || !of) {
            free(sizes);
            free(of);
            return SMELT_NOMEM(e, "shard plan");
        }
        for (uint64_t i = 0; i < n; i++) sizes[i] = smelt_tsrc_info(src, i)->nbytes;
        ns = smelt_st_plan_shards(sizes, (size_t)n, max_size, of);
        sh = calloc(ns + 1, sizeof *sh);
        for (size_t k = 0; sh && k < ns; k++) {
            char nm[64];
            if (ns == 1) snprintf(nm, sizeof nm, "model.safetensors");
            else smelt_st_shard_name(nm, sizeof nm, "model", k, ns);
            sh[k].name = strdup(nm);
            sh[k].idx = malloc((n + 1) * sizeof *sh[k].idx);
            if (!sh[k].name || !sh[k].idx) break;
        }
        for (uint64_t i = 0; sh && i < n; i++) sh[of[i]].idx[sh[of[i]].n++] = i;
        free(sizes);
        free(of);
        if (!sh) return SMELT_NOMEM(e, "shard plan");
    } else {
        for (uint64_t i = 0; i < n; i++) {
            const smelt_tinfo *t = smelt_tsrc_info(src, i);
            const char *f = t->file ? t->file : "model.safetensors";
            size_t k = 0;
            char *nm = out_shard_name(f);
            if (!nm) {
                free_shards(sh, ns);
                return SMELT_NOMEM(e, "shard plan");
            }
            while (k < ns && strcmp(sh[k].name, nm)) k++;
            if (k == ns) {
                shard *ns2 = realloc(sh, (ns + 1) * sizeof *ns2);
                if (!ns2) {
                    free(nm);
                    free_shards(sh, ns);
                    return SMELT_NOMEM(e, "shard plan");
                }
                sh = ns2;
                memset(&sh[ns], 0, sizeof sh[ns]);
                sh[ns].name = nm;
                sh[ns].idx = malloc((n + 1) * sizeof *sh[ns].idx);
                if (!sh[ns].idx) {
                    free_shards(sh, ns + 1);
                    return SMELT_NOMEM(e, "shard plan");
                }
                if (bst)
                    for (size_t fi = 0; fi < smelt_stset_n_files(bst); fi++)
                        if (!strcmp(base_name(smelt_st_path(smelt_stset_file(bst, fi))), nm))
                            sh[ns].meta_from = smelt_stset_file(bst, fi);
                ns++;
            } else {
                free(nm);
            }
            sh[k].idx[sh[k].n++] = i;
        }
    }
    *out = sh;
    *nout = ns;
    return 0;
}

/* ==== the writer ==== */

typedef struct {
    char *file, *name;
    uint64_t hash;
} mline;

static int hash_base_tensor(const smelt_tsrc *base, uint64_t i, smelt_scratch *sc, uint64_t *out, smelt_err *e)
{
    const void *d;
    int rc = smelt_tsrc_read(base, i, &d, sc, e);
    if (rc) return rc;
    *out = smelt_xxh64(d, (size_t)smelt_tsrc_info(base, i)->nbytes);
    smelt_tsrc_release(base, i);
    return 0;
}

static uint64_t combine_base_hash(const smelt_tsrc *base, const uint64_t *th)
{
    smelt_xxh64_state *st = smelt_xxh64_new();
    if (!st) return 0;
    for (uint64_t i = 0; i < smelt_tsrc_count(base); i++) {
        const smelt_tinfo *t = smelt_tsrc_info(base, i);
        smelt_xxh64_update(st, t->name, strlen(t->name) + 1);
        const char *dn = smelt_dtype_name(t->dtype);
        smelt_xxh64_update(st, dn, strlen(dn) + 1);
        smelt_xxh64_update(st, t->shape, t->n_dims * sizeof t->shape[0]);
        smelt_xxh64_update(st, &th[i], sizeof th[i]);
    }
    uint64_t h = smelt_xxh64_digest(st);
    smelt_xxh64_free(st);
    return h;
}

int smelt_merge_base_hash(const smelt_tsrc *base, char *buf, smelt_err *e)
{
    uint64_t n = smelt_tsrc_count(base);
    uint64_t *th = calloc(n + 1, sizeof *th);
    if (!th) return SMELT_NOMEM(e, "base hash");
    smelt_scratch sc = {0};
    int rc = 0;
    for (uint64_t i = 0; i < n && !rc; i++) rc = hash_base_tensor(base, i, &sc, &th[i], e);
    smelt_scratch_free(&sc);
    if (!rc) snprintf(buf, 17, "%016" PRIx64, combine_base_hash(base, th));
    free(th);
    return rc;
}

static int write_shards(smelt_merge *m, shard *sh, size_t ns, const char *tmp, mline *lines, uint64_t *base_th,
                        smelt_xxh64_state *model, const smelt_progress *prog, smelt_err *e)
{
    const smelt_tsrc *src = smelt_merge_source(m);
    smelt_scratch sc = {0}, bsc = {0};
    uint64_t total = smelt_tsrc_count(src), done = 0, bytes = 0;
    size_t nl = 0;
    int rc = 0;
    for (size_t k = 0; k < ns && !rc; k++) {
        smelt_st_writer *w = smelt_st_writer_new();
        if (!w) {
            rc = SMELT_NOMEM(e, "safetensors writer");
            break;
        }
        if (sh[k].meta_from) {
            size_t nmeta;
            const char *const *md = smelt_st_metadata(sh[k].meta_from, &nmeta);
            for (size_t i = 0; i < nmeta && !rc; i++) rc = smelt_st_writer_set_metadata(w, md[2 * i], md[2 * i + 1], e);
        }
        for (size_t i = 0; i < sh[k].n && !rc; i++) {
            const smelt_tinfo *t = smelt_tsrc_info(src, sh[k].idx[i]);
            rc = smelt_st_writer_add(w, t->name, t->dtype, t->n_dims, t->shape, e);
        }
        char path[4096];
        if (!rc && !smelt_path_join(path, sizeof path, tmp, sh[k].name))
            rc = SMELT_ERR(e, SMELT_EUSAGE, tmp, NULL, "path too long");
        if (!rc) rc = smelt_st_writer_begin(w, path, e);
        const char *next;
        while (!rc && (next = smelt_st_writer_next(w))) {
            int64_t i = smelt_tsrc_find(src, next);
            const smelt_tinfo *t = smelt_tsrc_info(src, (uint64_t)i);
            const void *d;
            if ((rc = smelt_tsrc_read(src, (uint64_t)i, &d, &sc, e))) break;
            uint64_t h = smelt_xxh64(d, (size_t)t->nbytes);
            smelt_xxh64_update(model, d, (size_t)t->nbytes);
            rc = smelt_st_writer_write(w, d, (size_t)t->nbytes, e);
            smelt_tsrc_release(src, (uint64_t)i);
            if (rc) break;
            /* the base's own bytes, for the base fingerprint */
            if (smelt_merge_changed(m, (uint64_t)i)) {
                if ((rc = hash_base_tensor(smelt_merge_base(m), (uint64_t)i, &bsc, &base_th[i], e))) break;
            } else {
                base_th[i] = h;
            }
            lines[nl].file = sh[k].name;
            lines[nl].name = (char *)t->name;
            lines[nl].hash = h;
            nl++;
            done++;
            bytes += t->nbytes;
            smelt_progress_step(prog, done, total, bytes, t->name);
        }
        if (!rc) rc = smelt_st_writer_commit(w, e);
        smelt_st_writer_free(w);
    }
    smelt_scratch_free(&sc);
    smelt_scratch_free(&bsc);
    return rc;
}

/* ==== which outputs may be written ==== */

/* Would a merge from this base and these adapters write a file called `name`? */
static bool merge_writes(const smelt_hf *base, const smelt_merge_adapter *ads, size_t n, const char *name)
{
    if (!strcmp(name, "config.json") || !strcmp(name, "model.safetensors.index.json") || ends_with(name, ".safetensors"))
        return true;
    char p[4096];
    if (smelt_path_join(p, sizeof p, smelt_hf_dir(base), name) && smelt_file_exists(p) && !is_weights_file(name))
        return true;
    for (size_t a = 0; a < n; a++)
        if (is_tokenizer_file(name) && smelt_path_join(p, sizeof p, smelt_peft_dir(ads[a].peft), name) &&
            smelt_file_exists(p))
            return true;
    return false;
}

/* --force replaces `dir` only when it is an earlier merge's output: a config.json with a
 * "smelt_merge" record, and only regular files a merge writes. */
static int check_replaceable(const smelt_hf *base, const smelt_merge_adapter *ads, size_t n, const char *dir,
                             smelt_err *e)
{
    static const char *const why = "--force replaces only a directory that smelt-merge wrote";
    char p[4096];
    json_t *cfg = NULL;
    smelt_err ignored;
    if (!smelt_path_join(p, sizeof p, dir, "config.json") || smelt_json_load(p, &cfg, &ignored) ||
        !json_is_object(cfg) || !json_object_get(cfg, "smelt_merge")) {
        json_decref(cfg);
        return SMELT_ERR(e, SMELT_EUSAGE, dir, NULL,
                         "output directory exists and is not a smelt-merge output (no config.json with a "
                         "\"smelt_merge\" record); %s: remove it yourself or choose another directory", why);
    }
    json_decref(cfg);
    DIR *d = opendir(dir);
    if (!d) return SMELT_ERR(e, SMELT_EIO, dir, NULL, "cannot list the directory: %s", strerror(errno));
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d))) {
        const char *nm = de->d_name;
        if (!strcmp(nm, ".") || !strcmp(nm, "..")) continue;
        struct stat st;
        bool regular = smelt_path_join(p, sizeof p, dir, nm) && lstat(p, &st) == 0 && S_ISREG(st.st_mode);
        if (!regular || !merge_writes(base, ads, n, nm))
            rc = SMELT_ERR(e, SMELT_EUSAGE, dir, nm,
                           "output directory holds '%s', which smelt-merge does not write; %s: remove it yourself "
                           "or choose another directory",
                           nm, why);
    }
    closedir(d);
    return rc;
}

smelt_guard *smelt_merge_guard_new(const smelt_hf *base, const smelt_merge_adapter *ads, size_t n, smelt_err *e)
{
    smelt_guard *g = smelt_guard_new();
    if (!g) {
        SMELT_NOMEM(e, "the list of inputs");
        return NULL;
    }
    int rc = smelt_guard_add(g, smelt_hf_dir(base), "the base model", smelt_guard_reads_model_dir, e);
    for (size_t a = 0; a < n && !rc; a++)
        rc = smelt_guard_add(g, smelt_peft_dir(ads[a].peft), "an adapter", smelt_guard_reads_model_dir, e);
    if (rc) {
        smelt_guard_free(g);
        return NULL;
    }
    return g;
}

int smelt_merge_check_outputs(const smelt_hf *base, const smelt_merge_adapter *ads, size_t n, const char *out_dir,
                              const char *gguf, bool force, smelt_err *e)
{
    smelt_guard *g = smelt_merge_guard_new(base, ads, n, e);
    if (!g) return e->code ? e->code : SMELT_ENOMEM;
    int rc = 0;
    char mp[4200];
    if (!rc && out_dir) {
        rc = smelt_guard_check_dir(g, out_dir, e);
        size_t dl = strlen(out_dir);
        while (dl > 1 && out_dir[dl - 1] == '/') dl--;
        snprintf(mp, sizeof mp, "%.*s.xxh64", (int)dl, out_dir);
        if (!rc) rc = smelt_guard_check_file(g, mp, e);
        struct stat st;
        if (!rc && stat(out_dir, &st) == 0) {
            if (!S_ISDIR(st.st_mode)) rc = SMELT_ERR(e, SMELT_EUSAGE, out_dir, NULL, "exists and is not a directory");
            else if (!force) rc = SMELT_ERR(e, SMELT_EUSAGE, out_dir, NULL, "output directory exists (use --force to replace it)");
            else rc = check_replaceable(base, ads, n, out_dir, e);
        }
    }
    if (!rc && gguf) {
        rc = smelt_guard_check_file(g, gguf, e);
        snprintf(mp, sizeof mp, "%s.xxh64", gguf);
        if (!rc) rc = smelt_guard_check_file(g, mp, e);
    }
    smelt_guard_free(g);
    return rc;
}

int smelt_merge_write_hf(smelt_merge *m, const smelt_hf *base, const smelt_merge_adapter *ads, size_t n,
                         const char *out_dir, const smelt_merge_write_opts *wo, const smelt_progress *prog,
                         smelt_err *e)
{
    smelt_merge_write_opts defo = {0};
    if (!wo) wo = &defo;
    char dir[4096];
    size_t dl = strlen(out_dir);
    while (dl > 1 && out_dir[dl - 1] == '/') dl--;
    if (dl == 0 || dl >= sizeof dir - 64) return SMELT_ERR(e, SMELT_EUSAGE, out_dir, NULL, "bad output directory name");
    memcpy(dir, out_dir, dl);
    dir[dl] = 0;
    int grc = smelt_merge_check_outputs(base, ads, n, dir, NULL, wo->force, e);
    if (grc) return grc;
    struct stat st;
    bool exists = stat(dir, &st) == 0;
    char parent[4096], tmp[8300], old[8300];
    snprintf(parent, sizeof parent, "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash == parent) parent[1] = 0;
    else if (slash) *slash = 0;
    else snprintf(parent, sizeof parent, ".");
    int trc = smelt_tmpdir_create(dir, tmp, sizeof tmp, e); /* .LEAF.smelt-tmp-PID-XXXXXX beside dir */
    if (trc) return trc;
    mode_t um = umask(0);
    umask(um);
    chmod(tmp, 0777 & ~um); /* mkdtemp makes it 0700; the result is an ordinary directory */

    const smelt_tsrc *src = smelt_merge_source(m);
    uint64_t nt = smelt_tsrc_count(src);
    smelt_stset *bst = NULL;
    shard *sh = NULL;
    size_t ns = 0;
    mline *lines = calloc(nt + 1, sizeof *lines);
    uint64_t *base_th = calloc(nt + 1, sizeof *base_th);
    smelt_xxh64_state *model = smelt_xxh64_new();
    char *cfg = NULL;
    int rc = 0;
    if (!lines || !base_th || !model) {
        rc = SMELT_NOMEM(e, "manifest");
        goto fail;
    }
    if (smelt_hf_weights_kind(base) == SMELT_HF_SAFETENSORS && (rc = smelt_stset_open(smelt_hf_dir(base), &bst, e)))
        goto fail;
    if ((rc = plan_shards(src, bst, wo->max_shard_size, &sh, &ns, e))) goto fail;
    uint64_t need = 0; /* the tensor data; headers, config and tokenizer files are small */
    for (uint64_t i = 0; i < nt; i++) need += smelt_tsrc_info(src, i)->nbytes;
    if ((rc = smelt_fs_check_space(dir, need, 0, e))) goto fail;
    if ((rc = write_shards(m, sh, ns, tmp, lines, base_th, model, prog, e))) goto fail;
    bool had_index = bst ? smelt_stset_index_path(bst) != NULL : ns > 1;
    if (ns > 1 || had_index) {
        const char **names = malloc((nt + 1) * sizeof *names), **files = malloc((nt + 1) * sizeof *files);
        uint64_t total = 0;
        if (!names || !files) {
            free(names);
            free(files);
            rc = SMELT_NOMEM(e, "index");
            goto fail;
        }
        for (uint64_t i = 0; i < nt; i++) {
            names[i] = lines[i].name;
            files[i] = lines[i].file;
            total += smelt_tsrc_info(src, smelt_tsrc_find(src, lines[i].name))->nbytes;
        }
        char ip[4096];
        smelt_path_join(ip, sizeof ip, tmp, "model.safetensors.index.json");
        rc = smelt_st_write_index(ip, total, names, files, (size_t)nt, e);
        free(names);
        free(files);
        if (rc) goto fail;
    }
    char bh[17];
    snprintf(bh, sizeof bh, "%016" PRIx64, combine_base_hash(smelt_merge_base(m), base_th));
    if ((rc = build_config(base, m, ads, n, bh, wo->tool, &cfg, e))) goto fail;
    char cp[4096];
    smelt_path_join(cp, sizeof cp, tmp, "config.json");
    if ((rc = smelt_outfile_write_all(cp, cfg, strlen(cfg), e))) goto fail;
    if ((rc = copy_small_files(base, ads, n, tmp, e))) goto fail;
    /* manifest beside the output, in smelt-verify's (llama-gguf-hash's) format: one line per
     * tensor in file order, then the hash of all tensor data in that order */
    {
        char label[4096];
        snprintf(label, sizeof label, "%s", dir);
        for (char *q = label; *q; q++)
            if (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r') *q = '_';
        smelt_strbuf txt = {0};
        for (uint64_t i = 0; i < nt; i++) smelt_manifest_line(&txt, lines[i].hash, label, lines[i].name);
        smelt_manifest_line(&txt, smelt_xxh64_digest(model), label, NULL);
        if (txt.oom) {
            smelt_strbuf_free(&txt);
            rc = SMELT_NOMEM(e, "manifest");
            goto fail;
        }
        char mp[4200];
        snprintf(mp, sizeof mp, "%s.xxh64", dir);
        rc = smelt_outfile_write_all(mp, txt.text, txt.len, e);
        smelt_strbuf_free(&txt);
        if (rc) goto fail;
    }
    /* into place */
    if (exists) {
        snprintf(old, sizeof old, "%s/.%s.old-XXXXXX", parent, base_name(dir));
        if (!mkdtemp(old) || rmdir(old) || rename(dir, old)) {
            rc = SMELT_ERR(e, SMELT_EIO, dir, NULL, "cannot move the old output aside: %s", strerror(errno));
            goto fail;
        }
    }
    if (rename(tmp, dir)) {
        rc = SMELT_ERR(e, SMELT_EIO, dir, NULL, "cannot rename the finished output into place: %s", strerror(errno));
        if (exists) rename(old, dir);
        goto fail;
    }
    smelt_tmpdir_forget(tmp);
    if (exists) rmtree(old);
    rc = 0;
    goto done;
fail:
    rmtree(tmp);
    smelt_tmpdir_forget(tmp);
done:
    smelt_xxh64_free(model);
    free_shards(sh, ns);
    smelt_stset_close(bst);
    free(lines);
    free(base_th);
    free(cfg);
    return rc;
}
