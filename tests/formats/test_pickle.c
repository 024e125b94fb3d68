/* test_pickle.c — the allow-listed state-dict unpickler: what torch.save writes (ours and
 * a real file), protocol-4 framing, dict semantics, and a corpus of refused pickles
 * (forbidden globals and callables, disallowed opcodes, malformed structure) with their
 * exact messages. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "formats/pickle.h"
#include "formats/torchzip.h"
#include "tests/common/testutil.h"
#include "tests/common/torchsave.h"

static int load(const void *p, size_t n, smelt_pk_dict **d, char *line, size_t ln)
{
    smelt_err e;
    smelt_err_clear(&e);
    int rc = smelt_pk_load_state_dict(p, n, "m.bin", "archive/data.pkl", d, &e);
    smelt_err_format(&e, line, ln);
    return rc;
}

Test(pickle, reads_what_torchsave_writes)
{
    float a[6] = {0};
    uint16_t h[4] = {0};
    ts_tensor t[3] = {{"model.layers.0.w", SMELT_DT_F32, 2, {2, 3}, a},
                      {"b", SMELT_DT_BF16, 1, {4}, h},
                      {"c", SMELT_DT_F16, 3, {1, 2, 2}, h}};
    tb_buf b = {0};
    ts_pickle(&b, t, 3);
    smelt_pk_dict *d;
    char line[1200];
    cr_assert_eq(load(b.p, b.len, &d, line, sizeof line), 0, "%s", line);
    cr_assert_eq(smelt_pk_count(d), 3);
    const smelt_pk_tensor *x = smelt_pk_at(d, 0);
    cr_expect_str_eq(x->name, "model.layers.0.w");
    cr_expect_eq(x->dtype, SMELT_DT_F32);
    cr_expect_eq(x->n_dims, 2);
    cr_expect_eq(x->shape[0], 2);
    cr_expect_eq(x->shape[1], 3);
    cr_expect_eq(x->stride[0], 3);
    cr_expect_eq(x->stride[1], 1);
    cr_expect_eq(x->nelements, 6);
    cr_expect_str_eq(x->storage, "0");
    cr_expect_eq(x->storage_numel, 6);
    cr_expect_eq(smelt_pk_at(d, 1)->dtype, SMELT_DT_BF16);
    cr_expect_str_eq(smelt_pk_at(d, 2)->storage, "2");
    cr_expect_eq(smelt_pk_at(d, 2)->n_dims, 3);
    smelt_pk_free(d);
    tb_free(&b);
}

Test(pickle, real_adapter_pickle)
{
    char p[4096];
    tu_path(p, sizeof p, "samples/tiny-mixtral-zh-lora-bin/adapter_model.bin");
    smelt_tz *z;
    smelt_err e;
    cr_assert_eq(smelt_tz_open(p, &z, &e), 0, "%s", e.msg);
    uint8_t *pk;
    size_t n;
    cr_assert_eq(smelt_tz_read_alloc(z, (uint64_t)smelt_tz_find(z, "adapter_model/data.pkl"), 1 << 20, &pk, &n, &e), 0);
    smelt_pk_dict *d;
    char line[1200];
    cr_assert_eq(load(pk, n, &d, line, sizeof line), 0, "%s", line);
    cr_expect_eq(smelt_pk_count(d), 130);
    cr_expect_str_eq(smelt_pk_at(d, 0)->name, "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
    cr_expect_eq(smelt_pk_at(d, 0)->shape[0], 8);
    cr_expect_eq(smelt_pk_at(d, 0)->shape[1], 256);
    cr_expect_str_eq(smelt_pk_at(d, 129)->name, "base_model.model.lm_head.weight");
    cr_expect_eq(smelt_pk_at(d, 129)->dtype, SMELT_DT_BF16);
    smelt_pk_free(d);
    free(pk);
    smelt_tz_close(z);
}

/* Hand-written pickles: a byte string with escapes. */
#define PK(s) s, sizeof(s) - 1

/* one tensor 'w' = FloatStorage '0' of 4 elements, shape (2,2) strides (ST0, ST1) */
#define PERSID "(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x00" "0X\x03\x00\x00\x00" "cpuK\x04tQ"
#define TENSOR(st0, st1) "ctorch._utils\n_rebuild_tensor_v2\n(" PERSID "K\x00(K\x02K\x02t(K" st0 "K" st1 "t\x89}tR"

Test(pickle, protocol4_framing_and_memo)
{
    /* FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE/BINGET, EMPTY_DICT root, SETITEM */
    static const char p[] =
        "\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01w\x94"
        "\x8c\x0ctorch._utils\x8c\x12_rebuild_tensor_v2\x93\x94"
        "((\x8c\x07storage\x8c\x05torch\x8c\x0c" "FloatStorage\x93\x8c\x01" "0\x8c\x03" "cpuK\x04tQ"
        "K\x00(K\x02K\x02t(K\x02K\x01t\x89}tRs"
        "\x8c\x01vh\x02((\x8c\x07storage\x8c\x05torch\x8c\x0c" "FloatStorage\x93\x8c\x01" "1\x8c\x03" "cpuK\x02tQK\x00(K\x02t(K\x01t\x89}tRs.";
    smelt_pk_dict *d;
    char line[1200];
    cr_assert_eq(load(PK(p), &d, line, sizeof line), 0, "%s", line);
    cr_assert_eq(smelt_pk_count(d), 2);
    cr_expect_str_eq(smelt_pk_at(d, 1)->name, "v");
    cr_expect_str_eq(smelt_pk_at(d, 1)->storage, "1");
    cr_expect_eq(smelt_pk_at(d, 1)->shape[0], 2);
    smelt_pk_free(d);
}

Test(pickle, duplicate_keys_keep_first_position_last_value)
{
    static const char p[] = "\x80\x02}(X\x01\x00\x00\x00w" TENSOR("\x02", "\x01") "X\x01\x00\x00\x00vctorch._utils\n_rebuild_tensor_v2\n("
                            "(X\x07\x00\x00\x00storagectorch\nHalfStorage\nX\x01\x00\x00\x00" "1X\x03\x00\x00\x00" "cpuK\x04tQ"
                            "K\x00(K\x04t(K\x01t\x89}tR"
                            "X\x01\x00\x00\x00w" "ctorch._utils\n_rebuild_tensor_v2\n("
                            "(X\x07\x00\x00\x00storagectorch\nBFloat16Storage\nX\x01\x00\x00\x00" "2X\x03\x00\x00\x00" "cpuK\x04tQ"
                            "K\x00(K\x04t(K\x01t\x89}tRu.";
    smelt_pk_dict *d;
    char line[1200];
    cr_assert_eq(load(PK(p), &d, line, sizeof line), 0, "%s", line);
    cr_assert_eq(smelt_pk_count(d), 2);
    cr_expect_str_eq(smelt_pk_at(d, 0)->name, "w");
    cr_expect_eq(smelt_pk_at(d, 0)->dtype, SMELT_DT_BF16);
    cr_expect_str_eq(smelt_pk_at(d, 0)->storage, "2");
    cr_expect_str_eq(smelt_pk_at(d, 1)->name, "v");
    smelt_pk_free(d);
}

typedef struct {
    const char *p;
    size_t n;
    int code;
    const char *msg;
} bad_case;

#define BAD(s, code, msg) {s, sizeof(s) - 1, code, msg}

Test(pickle, refused_pickles)
{
    static const bad_case cases[] = {
        BAD("\x80\x02" "cos\nsystem\n(X\x02\x00\x00\x00idtR.", SMELT_EFORMAT,
            "m.bin: 'archive/data.pkl' @ byte 2 (0x2): GLOBAL 'os system' is not allowed: a state dict may only name "
            "collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, "
            "torch._utils._rebuild_parameter_with_state and torch.<Type>Storage (loading this pickle with torch.load would "
            "run arbitrary code)"),
        BAD("\x80\x04\x8c\x08" "builtins\x8c\x04" "eval\x93.", SMELT_EFORMAT,
            "m.bin: 'archive/data.pkl' @ byte 18 (0x12): STACK_GLOBAL 'builtins eval' is not allowed: a state dict may only name "
            "collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, "
            "torch._utils._rebuild_parameter_with_state and torch.<Type>Storage (loading this pickle with torch.load would "
            "run arbitrary code)"),
        BAD("\x80\x02" "ctorch\nFloatStorage\n)R.", SMELT_EFORMAT,
            "m.bin: 'archive/data.pkl' @ byte 23 (0x17): REDUCE of torch.<Type>Storage is not allowed: a storage class is only "
            "valid inside a persistent id"),
        BAD("\x80\x02X\x02\x00\x00\x00os)R.", SMELT_EFORMAT,
            "m.bin: 'archive/data.pkl' @ byte 10 (0xa): REDUCE of a str is not allowed: only collections.OrderedDict, "
            "torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, torch._utils._rebuild_parameter_with_state and "
            "torch.<Type>Storage may appear"),
        BAD("\x80\x02(ios\nsystem\n.", SMELT_EFORMAT,
            "m.bin: 'archive/data.pkl' @ byte 3 (0x3): opcode INST (0x69) is not allowed in a PyTorch state dict"),
        BAD("\x80\x02(o.", SMELT_EFORMAT, "m.bin: 'archive/data.pkl' @ byte 3 (0x3): opcode OBJ (0x6f) is not allowed in a PyTorch state dict"),
        BAD("\x80\x02" "ccollections\nOrderedDict\n)\x81.", SMELT_EFORMAT,
            "m.bin: 'archive/data.pkl' @ byte 28 (0x1c): opcode NEWOBJ (0x81) is not allowed in a PyTorch state dict"),
        BAD("\x80\x02\x82\x01.", SMELT_EFORMAT, "m.bin: 'archive/data.pkl' @ byte 2 (0x2): opcode EXT1 (0x82) is not allowed in a PyTorch state dict"),
        BAD("\x80\x02I1\n.", SMELT_EFORMAT, "m.bin: 'archive/data.pkl' @ byte 2 (0x2): opcode INT (0x49) is not allowed in a PyTorch state dict"),
        BAD("\x80\x02\xff.", SMELT_EFORMAT, "m.bin: 'archive/data.pkl' @ byte 2 (0x2): unknown pickle opcode 0xff"),
        BAD("\x80\x07}.", SMELT_EFORMAT, "m.bin: 'archive/data.pkl' @ byte 0 (0x0): pickle protocol 7 is not supported (0..5)"),
        BAD("\x80\x02]}b.", SMELT_EFORMAT,
            "m.bin: 'archive/data.pkl' @ byte 4 (0x4): BUILD on a list is not allowed (only the state dict's own attributes)"),
        BAD("\x80\x02(X\x01\x00\x00\x00xtQ.", SMELT_EFORMAT,
            "m.bin: 'archive/data.pkl' @ byte 10 (0xa): persistent id is not ('storage', torch.<Type>Storage, key, location, numel)"),
        BAD("\x80\x02" "ctorch\nComplexFloatStorage\n.", SMELT_EFORMAT,
            "m.bin: 'archive/data.pkl' @ byte 2 (0x2): GLOBAL 'torch ComplexFloatStorage': this storage type is not supported "
            "(float, half, bfloat16, double, integer, bool and float8 storages are)"),
        BAD("\x80\x02}(X\x01\x00\x00\x00w" TENSOR("\x01", "\x02") "u.", SMELT_EUNSUPPORTED,
            "m.bin: 'w': strides (1, 2) are not contiguous (expected (2, 1) for this shape; tensor built at byte 112 of "
            "archive/data.pkl): save the state dict with contiguous tensors (tensor.contiguous())"),
        BAD("\x80\x02}(X\x01\x00\x00\x00w" "ctorch._utils\n_rebuild_tensor_v2\n(" PERSID "K\x02(K\x02K\x02t(K\x02K\x01t\x89}tRu.",
            SMELT_EFORMAT,
            "m.bin: 'w': elements [2, +4) lie outside its storage '0' of 4 elements (tensor built at byte 112 of archive/data.pkl)"),
        BAD("\x80\x02}(X\x01\x00\x00\x00w" "ctorch._utils\n_rebuild_tensor_v2\n(" PERSID "K\x00(K\x02K\x00t(K\x00K\x01t\x89}tRu.",
            SMELT_EFORMAT, "m.bin: 'w': size[1] is 0: a tensor without elements (tensor built at byte 112 of archive/data.pkl)"),
        BAD("\x80\x02}(X\x01\x00\x00\x00wK\x01u.", SMELT_EUNSUPPORTED, "m.bin: 'w': state dict entry is a int, expected a tensor"),
        BAD("\x80\x02]q\x00.", SMELT_EUNSUPPORTED, "m.bin: 'archive/data.pkl': the pickle holds a list, not a state dict (a dict of tensors)"),
        BAD("\x80\x02}(K\x01K\x02u.", SMELT_EUNSUPPORTED, "m.bin: 'archive/data.pkl': state dict key 0 is a int, expected a string"),
        BAD("\x80\x02}h\x05.", SMELT_EFORMAT, "m.bin: 'archive/data.pkl' @ byte 3 (0x3): memo entry 5 was never stored"),
        BAD("\x80\x02}r\xff\xff\xff\x7f.", SMELT_EFORMAT,
            "m.bin: 'archive/data.pkl' @ byte 3 (0x3): memo index 2147483647 is out of range for a 9-byte pickle"),
        BAD("\x80\x02}X\xff\xff\x00\x00" "ab.", SMELT_EFORMAT,
            "m.bin: 'archive/data.pkl' @ byte 3 (0x3): truncated pickle: BINUNICODE of 65535 bytes, 3 remain"),
        BAD("\x80\x02}}", SMELT_EFORMAT, "m.bin: 'archive/data.pkl' @ byte 4 (0x4): truncated pickle: no STOP opcode before the end (4 bytes)"),
        BAD("\x80\x02}}.", SMELT_EFORMAT,
            "m.bin: 'archive/data.pkl' @ byte 4 (0x4): STOP leaves 2 values and 0 marks on the stack (expected one value)"),
        BAD("\x80\x02t.", SMELT_EFORMAT, "m.bin: 'archive/data.pkl' @ byte 2 (0x2): TUPLE without a preceding MARK"),
        BAD("\x80\x02R.", SMELT_EFORMAT, "m.bin: 'archive/data.pkl' @ byte 2 (0x2): REDUCE needs a value but the stack is empty"),
        BAD("\x80\x02}(K\x01u.", SMELT_EFORMAT,
            "m.bin: 'archive/data.pkl' @ byte 6 (0x6): SETITEMS with an odd number of values (keys and values must pair)"),
        BAD("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.", SMELT_EFORMAT,
            "m.bin: 'archive/data.pkl' @ byte 2 (0x2): LONG1 integer of 9 bytes is too large"),
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        smelt_pk_dict *d = (smelt_pk_dict *)1;
        char line[1200];
        int rc = load(cases[i].p, cases[i].n, &d, line, sizeof line);
        cr_expect_eq(rc, cases[i].code, "case %zu: rc %d: %s", i, rc, line);
        cr_expect_null(d, "case %zu", i);
        cr_expect_str_eq(line, cases[i].msg, "case %zu: %s", i, line);
    }
}

Test(pickle, every_truncation_is_an_error)
{
    float a[4] = {0};
    ts_tensor t[2] = {{"w", SMELT_DT_F32, 2, {2, 2}, a}, {"b", SMELT_DT_F32, 1, {4}, a}};
    tb_buf b = {0};
    ts_pickle(&b, t, 2);
    for (size_t n = 0; n < b.len; n++) {
        smelt_pk_dict *d;
        char line[1200];
        cr_expect_neq(load(b.p, n, &d, line, sizeof line), 0, "prefix of %zu bytes loaded", n);
    }
    /* and every single-byte change either loads or fails cleanly (no crash, no leak) */
    for (size_t i = 0; i < b.len; i++)
        for (int v = 0; v < 256; v += 17) {
            uint8_t save = b.p[i];
            b.p[i] = (uint8_t)v;
            smelt_pk_dict *d = NULL;
            char line[1200];
            if (load(b.p, b.len, &d, line, sizeof line) == 0) smelt_pk_free(d);
            b.p[i] = save;
        }
    tb_free(&b);
}
