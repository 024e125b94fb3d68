/* manifest.c — hash manifest lines and the manifest of a GGUF model (manifest.h). */
#include "manifest.h"

#include <inttypes.h>

#include "base/file.h"
#include "base/hash.h"
#include "gguf.h"

void smelt_manifest_line(smelt_strbuf *b, uint64_t xxh64, const char *label, const char *tensor)
{
    if (tensor) smelt_strbuf_printf(b, "%-8s  %016" PRIx64 "  %s:%s\n", "xxh64", xxh64, label, tensor);
    else smelt_strbuf_printf(b, "%-8s  %016" PRIx64 "  %s\n", "xxh64", xxh64, label);
}

int smelt_manifest_write_gguf(const char *gguf_path, const char *manifest_path, smelt_err *e)
{
    smelt_gguf *g;
    int rc = smelt_gguf_open(gguf_path, 0, &g, e);
    if (rc) return rc;
    smelt_strbuf text = {0};
    smelt_xxh64_state *model = smelt_xxh64_new();
    for (uint64_t i = 0; model && i < smelt_gguf_n_tensors(g); i++) {
        const smelt_gguf_tensor *t = smelt_gguf_tensor_at(g, i);
        smelt_xxh64_update(model, t->data, (size_t)t->nbytes);
        smelt_manifest_line(&text, smelt_xxh64(t->data, (size_t)t->nbytes), smelt_gguf_path(smelt_gguf_shard(g, t->shard)),
                            t->name);
        smelt_gguf_release_tensor(g, t);
    }
    if (model) smelt_manifest_line(&text, smelt_xxh64_digest(model), gguf_path, NULL);
    if (!model || text.oom) rc = SMELT_NOMEM(e, "manifest");
    else rc = smelt_outfile_write_all(manifest_path, text.text, text.len, e);
    smelt_strbuf_free(&text);
    smelt_xxh64_free(model);
    smelt_gguf_close(g);
    return rc;
}
