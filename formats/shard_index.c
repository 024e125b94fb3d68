/* shard_index.c — Hugging Face shard index files (shard_index.h). */
#include "shard_index.h"

#include <stdlib.h>
#include <string.h>

#include "base/file.h"

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

int smelt_shard_index_read(const char *path, smelt_shard_index *out, smelt_err *e)
{
    memset(out, 0, sizeof *out);
    char *text = NULL;
    size_t len = 0;
    int rc = smelt_read_file(path, 256u << 20, &text, &len, e);
    if (rc) return rc;
    json_error_t je;
    out->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!out->root) return SMELT_CORRUPT(e, path, (uint64_t)je.position, NULL, "JSON: %s", je.text);
    out->weight_map = json_object_get(out->root, "weight_map");
    if (!json_is_object(out->weight_map)) {
        smelt_shard_index_free(out);
        return SMELT_CORRUPT(e, path, SMELT_NO_OFFSET, "weight_map", "missing or not an object");
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    size_t cap = json_object_size(out->weight_map) + 1, n = 0;
    const char **names = calloc(cap, sizeof *names);
    out->paths = calloc(cap, sizeof *out->paths);
    if (!names || !out->paths) rc = SMELT_NOMEM(e, "shard list");
    const char *k;
    json_t *v;
    if (!rc) json_object_foreach(out->weight_map, k, v)
        {
            if (!json_is_string(v)) {
                rc = SMELT_CORRUPT(e, path, SMELT_NO_OFFSET, k, "weight_map value is not a file name");
                break;
            }
            const char *fn = json_string_value(v);
            if (!fn[0] || strchr(fn, '/') || !strcmp(fn, "..") || !strcmp(fn, ".")) {
                rc = SMELT_CORRUPT(e, path, SMELT_NO_OFFSET, k, "shard name '%s' must be a plain file name", fn);
                break;
            }
            size_t i;
            for (i = 0; i < n && strcmp(names[i], fn); i++) {}
            if (i == n) names[n++] = fn;
        }
    if (!rc) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && !rc; i++) {
        char p[4096];
        if (!smelt_path_join(p, sizeof p, dir, names[i])) rc = SMELT_ERR(e, SMELT_EUSAGE, path, names[i], "path too long");
        else if (!smelt_nondir_exists(p)) /* a FIFO or device is refused when opened, as what it is */
            rc = SMELT_ERR(e, SMELT_EFORMAT, path, names[i], "shard listed in weight_map is missing (expected at %s)", p);
        else if (!(out->paths[out->n_paths++] = strdup(p))) rc = SMELT_NOMEM(e, "path");
    }
    free(names);
    if (rc) smelt_shard_index_free(out);
    return rc;
}

int smelt_shard_index_check(const smelt_shard_index *ix, const char *path,
                            const char *(*file_of)(void *user, const char *name), void *user, smelt_err *e)
{
    const char *k;
    json_t *v;
    json_object_foreach(ix->weight_map, k, v)
    {
        const char *fn = json_string_value(v), *file = file_of(user, k);
        if (!file) return SMELT_ERR(e, SMELT_EFORMAT, path, k, "tensor listed in weight_map is absent from shard %s", fn);
        const char *base = strrchr(file, '/');
        base = base ? base + 1 : file;
        if (strcmp(base, fn) != 0)
            return SMELT_ERR(e, SMELT_EFORMAT, path, k, "weight_map says %s but the tensor is in %s", fn, base);
    }
    return 0;
}

void smelt_shard_index_free(smelt_shard_index *ix)
{
    json_decref(ix->root);
    for (size_t i = 0; ix->paths && i < ix->n_paths; i++) free(ix->paths[i]);
    free(ix->paths);
    memset(ix, 0, sizeof *ix);
}
