/* test_torchbin.c — PyTorch .bin checkpoints as tensor sources: a real adapter file
 * against its safetensors twin, sharded directories with an index (through the HF
 * directory reader too), and damaged checkpoints with their exact messages. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/hfdir.h"
#include "formats/safetensors.h"
#include "formats/torchbin.h"
#include "tests/common/testutil.h"
#include "tests/common/torchsave.h"

static void same_tensors(const smelt_tsrc *a, const smelt_stset *b)
{
    smelt_scratch sc = {0};
    smelt_err e;
    cr_assert_eq(smelt_tsrc_count(a), smelt_stset_n_tensors(b));
    for (uint64_t i = 0; i < smelt_tsrc_count(a); i++) {
        const smelt_tinfo *t = smelt_tsrc_info(a, i);
        const smelt_st_tensor *x = smelt_stset_find(b, t->name);
        cr_assert(x, "%s missing from safetensors", t->name);
        cr_expect_eq(t->dtype, x->dtype, "%s", t->name);
        cr_expect_eq(t->n_dims, x->n_dims, "%s", t->name);
        for (uint32_t d = 0; d < t->n_dims; d++) cr_expect_eq(t->shape[d], x->shape[d], "%s", t->name);
        cr_expect_eq(t->nbytes, x->end - x->begin, "%s", t->name);
        const void *p;
        cr_assert_eq(smelt_tsrc_read(a, i, &p, &sc, &e), 0, "%s", e.msg);
        cr_expect_eq(memcmp(p, x->data, t->nbytes), 0, "%s bytes differ", t->name);
        smelt_tsrc_release(a, i);
    }
    smelt_scratch_free(&sc);
}

Test(torchbin, real_adapter_matches_its_safetensors_twin)
{
    char p[4096], q[4096];
    tu_path(p, sizeof p, "samples/tiny-mixtral-zh-lora-bin/adapter_model.bin");
    tu_path(q, sizeof q, "samples/tiny-mixtral-zh-lora/adapter_model.safetensors");
    smelt_tsrc s;
    smelt_err e;
    cr_assert_eq(smelt_torchbin_open_file(p, &s, &e), 0, "%s", e.msg);
    smelt_stset *st;
    cr_assert_eq(smelt_stset_open(q, &st, &e), 0, "%s", e.msg);
    same_tensors(&s, st);
    cr_expect_str_eq(smelt_tsrc_info(&s, 0)->name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
                     "pickle order is kept");
    smelt_stset_close(st);
    smelt_tsrc_close(&s);
}

static char g_dir[512];

static void make_bin_copy(int sharded)
{
    char src[4096];
    tu_path(src, sizeof src, "samples/tiny-mixtral");
    cr_assert_eq(tu_mkdtemp(g_dir, sizeof g_dir), 0);
    cr_assert_eq(ts_bin_dir(src, g_dir, sharded), 0);
}

Test(torchbin, sharded_directory_through_hfdir)
{
    make_bin_copy(1);
    smelt_hf *h;
    smelt_err e;
    cr_assert_eq(smelt_hf_open(g_dir, &h, &e), 0, "%s", e.msg);
    cr_expect_eq(smelt_hf_weights_kind(h), SMELT_HF_TORCH_BIN);
    char src[4096];
    tu_path(src, sizeof src, "samples/tiny-mixtral");
    smelt_stset *st;
    cr_assert_eq(smelt_stset_open(src, &st, &e), 0);
    same_tensors(smelt_hf_tensors(h), st);
    /* shards in name order, each in pickle order */
    const char *f0 = smelt_tsrc_info(smelt_hf_tensors(h), 0)->file;
    cr_expect(strstr(f0, "pytorch_model-00001-of-00002.bin") != NULL, "%s", f0);
    smelt_stset_close(st);
    smelt_hf_close(h);
    tu_rmtree(g_dir);
}

Test(torchbin, single_file_directory)
{
    make_bin_copy(0);
    smelt_tsrc s;
    smelt_err e;
    cr_assert_eq(smelt_torchbin_open_dir(g_dir, &s, &e), 0, "%s", e.msg);
    cr_expect_eq(smelt_tsrc_count(&s), 79);
    cr_expect_geq(smelt_tsrc_find(&s, "model.embed_tokens.weight"), 0);
    smelt_tsrc_close(&s);
    tu_rmtree(g_dir);
}

static void expect_dir_err(int code, const char *msg)
{
    smelt_tsrc s;
    smelt_err e;
    smelt_err_clear(&e);
    int rc = smelt_torchbin_open_dir(g_dir, &s, &e);
    char line[1200];
    smelt_err_format(&e, line, sizeof line);
    cr_expect_eq(rc, code, "rc %d: %s", rc, line);
    cr_expect_str_eq(line, msg);
    if (!rc) smelt_tsrc_close(&s);
}

Test(torchbin, missing_shard_and_index_mismatches)
{
    make_bin_copy(1);
    char p[4096], q[4096], msg[8192];
    snprintf(p, sizeof p, "%s/pytorch_model-00002-of-00002.bin", g_dir);
    snprintf(q, sizeof q, "%s/moved.bin", g_dir);
    cr_assert_eq(rename(p, q), 0);
    snprintf(msg, sizeof msg,
             "%s/pytorch_model.bin.index.json: 'pytorch_model-00002-of-00002.bin': shard listed in weight_map is missing "
             "(expected at %s)",
             g_dir, p);
    expect_dir_err(SMELT_EFORMAT, msg);
    rename(q, p);

    /* an index entry for a tensor no shard holds */
    char ip[4096];
    snprintf(ip, sizeof ip, "%s/pytorch_model.bin.index.json", g_dir);
    size_t len;
    char *idx = (char *)tu_read(ip, &len);
    char *k = strstr(idx, "\"model.norm.weight\"");
    cr_assert(k);
    memcpy(k + 1, "model.NORM", 10);
    tu_write(ip, idx, len);
    snprintf(msg, sizeof msg, "%s: 'model.NORM.weight': tensor listed in weight_map is absent from shard pytorch_model-00002-of-00002.bin", ip);
    expect_dir_err(SMELT_EFORMAT, msg);
    memcpy(k + 1, "model.norm", 10);
    /* the index names the wrong shard */
    char *v = strstr(k, "00002-of");
    cr_assert(v);
    v[4] = '1';
    tu_write(ip, idx, len);
    snprintf(msg, sizeof msg, "%s: 'model.norm.weight': weight_map says pytorch_model-00001-of-00002.bin but the tensor is in pytorch_model-00002-of-00002.bin", ip);
    expect_dir_err(SMELT_EFORMAT, msg);
    free(idx);
    tu_rmtree(g_dir);
}

static void expect_file_err(const char *path, int code, const char *msg)
{
    smelt_tsrc s;
    smelt_err e;
    smelt_err_clear(&e);
    int rc = smelt_torchbin_open_file(path, &s, &e);
    char line[1200];
    smelt_err_format(&e, line, sizeof line);
    cr_expect_eq(rc, code, "rc %d: %s", rc, line);
    cr_expect_str_eq(line, msg);
    if (!rc) smelt_tsrc_close(&s);
}

Test(torchbin, damaged_files)
{
    cr_assert_eq(tu_mkdtemp(g_dir, sizeof g_dir), 0);
    float a[6] = {1, 2, 3, 4, 5, 6};
    ts_tensor t[2] = {{"w", SMELT_DT_F32, 2, {2, 3}, a}, {"b", SMELT_DT_F32, 1, {2}, a}};
    tb_buf z = {0};
    ts_save_mem(&z, "archive", t, 2);
    char p[4096], msg[8192];
    snprintf(p, sizeof p, "%s/m.bin", g_dir);

    /* truncated: cut in the middle of the tensor data */
    tu_write(p, z.p, z.len / 2);
    snprintf(msg, sizeof msg, "%s: no end-of-central-directory record: not a zip archive, or truncated", p);
    expect_file_err(p, SMELT_EFORMAT, msg);

    /* a storage record whose size disagrees with the pickle */
    tb_buf y = {0};
    ts_entry ent[3] = {{"archive/data.pkl", NULL, 0, 0}, {"archive/data/0", a, 24, 0}, {"archive/data/1", a, 4, 0}};
    tb_buf pk = {0};
    ts_pickle(&pk, t, 2);
    ent[0].data = pk.p;
    ent[0].len = pk.len;
    ts_zip(&y, ent, 3, 0);
    tu_write(p, y.p, y.len);
    long l2 = ts_local_offset(&y, "archive/data/1");
    snprintf(msg, sizeof msg,
             "%s: 'archive/data/1' @ byte %ld (0x%lx): storage record holds 4 bytes but the pickle declares 2 F32 elements (8 bytes)", p,
             l2, l2);
    expect_file_err(p, SMELT_EFORMAT, msg);
    tb_free(&y);

    /* a missing storage record */
    ts_zip(&y, ent, 2, 0);
    tu_write(p, y.p, y.len);
    snprintf(msg, sizeof msg, "%s: 'b': its storage record 'archive/data/1' is missing from the archive", p);
    expect_file_err(p, SMELT_EFORMAT, msg);
    tb_free(&y);

    /* a forbidden opcode in data.pkl */
    static const char evil[] = "\x80\x02" "cposix\nsystem\nX\x02\x00\x00\x00idtR.";
    ent[0].data = evil;
    ent[0].len = sizeof evil - 1;
    ts_zip(&y, ent, 1, 0);
    tu_write(p, y.p, y.len);
    snprintf(msg, sizeof msg,
             "%s: 'archive/data.pkl' @ byte 2 (0x2): GLOBAL 'posix system' is not allowed: a state dict may only name "
             "collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, "
             "torch._utils._rebuild_parameter_with_state and torch.<Type>Storage (loading this pickle with torch.load would "
             "run arbitrary code)",
             p);
    expect_file_err(p, SMELT_EFORMAT, msg);
    tb_free(&y);

    /* big-endian checkpoints */
    ts_entry be[2] = {{"archive/byteorder", "big", 3, 0}, {"archive/data.pkl", pk.p, pk.len, 0}};
    ts_zip(&y, be, 2, 0);
    tu_write(p, y.p, y.len);
    snprintf(msg, sizeof msg, "%s: 'archive/byteorder': only little-endian checkpoints are supported", p);
    expect_file_err(p, SMELT_EUNSUPPORTED, msg);
    tb_free(&y);

    /* not inside a folder */
    ts_entry flat[1] = {{"data.pkl", pk.p, pk.len, 0}};
    ts_zip(&y, flat, 1, 0);
    tu_write(p, y.p, y.len);
    snprintf(msg, sizeof msg, "%s: 'data.pkl': not a torch.save archive: records are not inside a top-level folder", p);
    expect_file_err(p, SMELT_EFORMAT, msg);
    tb_free(&y);

    /* a flipped bit in tensor data is caught when the tensor is read */
    long d0 = ts_local_offset(&z, "archive/data/0");
    size_t data0 = (size_t)d0 + 30 + strlen("archive/data/0") + (size_t)(z.p[d0 + 28] | (z.p[d0 + 29] << 8));
    z.p[data0 + 5] ^= 0x40;
    tu_write(p, z.p, z.len);
    smelt_tsrc s;
    smelt_err e;
    cr_assert_eq(smelt_torchbin_open_file(p, &s, &e), 0, "%s", e.msg);
    smelt_scratch sc = {0};
    const void *d;
    cr_expect_eq(smelt_tsrc_read(&s, 0, &d, &sc, &e), SMELT_EFORMAT);
    cr_expect(strstr(e.msg, "CRC-32 mismatch") != NULL, "%s", e.msg);
    cr_expect_str_eq(e.object, "archive/data/0");
    smelt_scratch_free(&sc);
    smelt_tsrc_close(&s);

    tb_free(&pk);
    tb_free(&z);
    tu_rmtree(g_dir);
}

Test(torchbin, no_weights_at_all)
{
    cr_assert_eq(tu_mkdtemp(g_dir, sizeof g_dir), 0);
    char msg[8192];
    snprintf(msg, sizeof msg,
             "%s: no weights: expected model.safetensors, model.safetensors.index.json, pytorch_model.bin or "
             "pytorch_model.bin.index.json",
             g_dir);
    expect_dir_err(SMELT_EIO, msg);
    tu_rmtree(g_dir);
}
