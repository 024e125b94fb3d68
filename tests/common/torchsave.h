/* torchsave.h — a small writer of PyTorch checkpoints for tests: the zip layout and the
 * protocol-2 state-dict pickle that torch.save produces (records under one top-level
 * folder, stored entries with data aligned to 64 bytes, memoized globals), plus the
 * pieces needed to craft malformed variants (raw zip entries, deflate, zip64). */
#ifndef SMELT_TEST_TORCHSAVE_H
#define SMELT_TEST_TORCHSAVE_H

#include <stddef.h>
#include <stdint.h>

#include "formats/dtype.h"
#include "tests/common/bytes.h"

typedef struct {
    const char *name;
    smelt_dtype dt;
    uint32_t n_dims;
    uint64_t shape[8];
    const void *data; /* nelements × element size bytes */
} ts_tensor;

/* The state-dict pickle (protocol 2, OrderedDict root, one storage per tensor, keys "0",
 * "1", …) as torch.save writes it. */
void ts_pickle(tb_buf *out, const ts_tensor *t, size_t n);

typedef struct {
    const char *name;
    const void *data;
    size_t len;
    int deflate;      /* store deflated (method 8) instead of stored */
} ts_entry;

/* A zip archive of the entries; zip64 != 0 writes zip64 extra fields and end records. */
void ts_zip(tb_buf *out, const ts_entry *e, size_t n, int zip64);

/* A complete torch.save file (prefix/data.pkl, prefix/data/N, prefix/version,
 * prefix/byteorder) in memory / on disk. Returns 0 on success. */
void ts_save_mem(tb_buf *out, const char *prefix, const ts_tensor *t, size_t n);
int ts_save(const char *path, const char *prefix, const ts_tensor *t, size_t n);

/* Offsets (in a ts_zip result) of entry i's local header and central record, for tests
 * that corrupt them. Computed by re-scanning the archive; -1 if not found. */
long ts_local_offset(const tb_buf *zip, const char *name);
long ts_central_offset(const tb_buf *zip, const char *name);


/* Write a PyTorch copy of a safetensors HF directory into out_dir (which must exist):
 * one pytorch_model.bin, or (sharded != 0) one pytorch_model-0000i-of-0000N.bin per
 * safetensors shard plus pytorch_model.bin.index.json; every other file (config,
 * tokenizer) is copied. Tensors keep the safetensors data order. Returns 0 on success. */
int ts_bin_dir(const char *st_dir, const char *out_dir, int sharded);
/* Copy one file; 0 on success. */
int ts_copy_file(const char *from, const char *to);
#endif
