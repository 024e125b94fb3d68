/* adapter.c — see adapter.h. */
#include "adapter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "formats/base/half.h"
#include "formats/safetensors.h"

int ta_write_st(const char *path, const ta_tensor *t, size_t n)
{
    enum { CHUNK = 1 << 20 }; /* values per write */
    smelt_err e;
    smelt_st_writer *w = smelt_st_writer_new();
    uint8_t *buf = malloc((size_t)CHUNK * 4);
    if (!w || !buf) {
        smelt_st_writer_free(w);
        free(buf);
        return -1;
    }
    uint32_t s = 7; /* the pseudo-random values of tensors without data */
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) rc = smelt_st_writer_add(w, t[i].name, t[i].dt, t[i].nd, t[i].shape, &e);
    if (!rc) rc = smelt_st_writer_begin(w, path, &e);
    const char *next;
    while (!rc && (next = smelt_st_writer_next(w))) {
        size_t k = 0;
        while (k < n && strcmp(t[k].name, next)) k++;
        uint64_t nel = 1;
        for (uint32_t d = 0; d < t[k].nd; d++) nel *= t[k].shape[d];
        size_t es = smelt_dtype_size(t[k].dt);
        for (uint64_t j0 = 0; j0 < nel && !rc; j0 += CHUNK) {
            uint64_t m = nel - j0 < CHUNK ? nel - j0 : CHUNK;
            for (uint64_t j = 0; j < m; j++) {
                float v;
                if (t[k].data) v = t[k].data[j0 + j];
                else {
                    s = s * 1664525u + 1013904223u;
                    v = ((float)(s >> 8) * 0x1p-24f - 0.5f) * 0.1f;
                }
                if (t[k].dt == SMELT_DT_F32) memcpy(buf + j * 4, &v, 4);
                else {
                    uint16_t h = t[k].dt == SMELT_DT_F16 ? smelt_f32_to_f16(v) : smelt_f32_to_bf16(v);
                    memcpy(buf + j * 2, &h, 2);
                }
            }
            rc = smelt_st_writer_write(w, buf, (size_t)m * es, &e);
        }
    }
    if (!rc) rc = smelt_st_writer_commit(w, &e);
    smelt_st_writer_free(w);
    free(buf);
    return rc;
}

int ta_write_text(const char *dir, const char *name, const char *text)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

static int write_dir(const char *dir, const char *cfg_name, const char *cfg, const char *st_name, const ta_tensor *t,
                     size_t n)
{
    mkdir(dir, 0755);
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, st_name);
    if (ta_write_text(dir, cfg_name, cfg)) return -1;
    return ta_write_st(p, t, n);
}

int ta_write_adapter(const char *dir, const char *config_json, const ta_tensor *t, size_t n)
{
    return write_dir(dir, "adapter_config.json", config_json, "adapter_model.safetensors", t, n);
}

int ta_write_base(const char *dir, const char *config_json, const ta_tensor *t, size_t n)
{
    return write_dir(dir, "config.json", config_json, "model.safetensors", t, n);
}
