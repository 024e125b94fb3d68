/* pickle.c — allow-listed pickle interpreter for torch.save state dicts. Includes base/.
 *
 * A tiny stack machine over plain values (None, bool, int, float, str/bytes, tuple,
 * list, dict, allowed global, storage, tensor). Values live in an arena freed at the end,
 * so shared references (memo, DUP) cost nothing and cannot loop. Nothing in the input is
 * ever called: REDUCE evaluates the few allowed rebuild functions with our own code. */
#include "pickle.h"

#include <stdalign.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/ckd.h"
#include "base/names.h"

/* ==== arena ==== */

typedef struct ablk {
    struct ablk *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
} ablk;

typedef struct {
    ablk *head;
} arena;

static void *ar_alloc(arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        ablk *b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = a->head->data + a->head->used;
    a->head->used += n;
    return p;
}

static void ar_free(arena *a)
{
    for (ablk *b = a->head; b;) {
        ablk *n = b->next;
        free(b);
        b = n;
    }
    a->head = NULL;
}

static char *ar_strndup(arena *a, const char *s, size_t n)
{
    char *p = ar_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* ==== values ==== */

enum { K_NONE, K_BOOL, K_INT, K_FLOAT, K_STR, K_BYTES, K_TUPLE, K_LIST, K_DICT, K_GLOBAL, K_STORAGE, K_TENSOR };

static const char *kind_name(int k)
{
    static const char *n[] = {"None", "bool", "int", "float", "str", "bytes", "tuple", "list", "dict",
                              "global", "storage", "tensor"};
    return k >= 0 && k <= K_TENSOR ? n[k] : "?";
}

enum { G_ORDERED_DICT, G_REBUILD_V2, G_REBUILD_PARAM, G_REBUILD_PARAM_STATE, G_STORAGE };

typedef struct pv pv;
struct pv {
    int kind;
    union {
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        struct {
            pv **v;
            size_t n, cap; /* dicts hold key, value, key, value, … */
        } seq;
        struct {
            int id;
            smelt_dtype dtype; /* G_STORAGE */
        } g;
        struct {
            smelt_dtype dtype;
            const char *key;
            uint64_t numel;
        } st;
        size_t t; /* index into the tensor table */
    } u;
};

struct smelt_pk_dict {
    smelt_pk_tensor *t;
    size_t n;
    arena names;
};

typedef struct {
    const uint8_t *p;
    size_t len, pos;
    const char *file, *object;
    smelt_err *e;
    arena ar;
    pv **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nmarks, mcap;
    pv **memo;
    size_t memo_cap, memo_n;
    smelt_pk_tensor *tens; /* built tensors (names filled at the end) */
    size_t ntens, tcap;
    size_t op_at; /* offset of the opcode being run */
    uint8_t op;
} vm;

/* ==== storage classes ==== */

static const struct {
    const char *name;
    smelt_dtype dt;
} k_storages[] = {
    {"FloatStorage", SMELT_DT_F32},   {"HalfStorage", SMELT_DT_F16},
    {"BFloat16Storage", SMELT_DT_BF16}, {"DoubleStorage", SMELT_DT_F64},
    {"LongStorage", SMELT_DT_I64},    {"IntStorage", SMELT_DT_I32},
    {"ShortStorage", SMELT_DT_I16},   {"CharStorage", SMELT_DT_I8},
    {"ByteStorage", SMELT_DT_U8},     {"BoolStorage", SMELT_DT_BOOL},
    {"Float8_e4m3fnStorage", SMELT_DT_F8_E4M3}, {"Float8_e5m2Storage", SMELT_DT_F8_E5M2},
};

const char *smelt_pk_storage_name(smelt_dtype d)
{
    for (size_t i = 0; i < sizeof k_storages / sizeof k_storages[0]; i++)
        if (k_storages[i].dt == d) return k_storages[i].name;
    return NULL;
}

/* ==== opcode names (pickletools spelling) ==== */

static const struct {
    uint8_t op;
    const char *name;
} k_ops[] = {
    {'(', "MARK"}, {'.', "STOP"}, {'0', "POP"}, {'1', "POP_MARK"}, {'2', "DUP"}, {'F', "FLOAT"},
    {'I', "INT"}, {'J', "BININT"}, {'K', "BININT1"}, {'L', "LONG"}, {'M', "BININT2"}, {'N', "NONE"},
    {'P', "PERSID"}, {'Q', "BINPERSID"}, {'R', "REDUCE"}, {'S', "STRING"}, {'T', "BINSTRING"},
    {'U', "SHORT_BINSTRING"}, {'V', "UNICODE"}, {'X', "BINUNICODE"}, {'a', "APPEND"}, {'b', "BUILD"},
    {'c', "GLOBAL"}, {'d', "DICT"}, {'}', "EMPTY_DICT"}, {'e', "APPENDS"}, {'g', "GET"}, {'h', "BINGET"},
    {'i', "INST"}, {'j', "LONG_BINGET"}, {'l', "LIST"}, {']', "EMPTY_LIST"}, {'o', "OBJ"}, {'p', "PUT"},
    {'q', "BINPUT"}, {'r', "LONG_BINPUT"}, {'s', "SETITEM"}, {'t', "TUPLE"}, {')', "EMPTY_TUPLE"},
    {'u', "SETITEMS"}, {'G', "BINFLOAT"}, {0x80, "PROTO"}, {0x81, "NEWOBJ"}, {0x82, "EXT1"},
    {0x83, "EXT2"}, {0x84, "EXT4"}, {0x85, "TUPLE1"}, {0x86, "TUPLE2"}, {0x87, "TUPLE3"},
    {0x88, "NEWTRUE"}, {0x89, "NEWFALSE"}, {0x8a, "LONG1"}, {0x8b, "LONG4"}, {'B', "BINBYTES"},
    {'C', "SHORT_BINBYTES"}, {0x8c, "SHORT_BINUNICODE"}, {0x8d, "BINUNICODE8"}, {0x8e, "BINBYTES8"},
    {0x8f, "EMPTY_SET"}, {0x90, "ADDITEMS"}, {0x91, "FROZENSET"}, {0x92, "NEWOBJ_EX"},
    {0x93, "STACK_GLOBAL"}, {0x94, "MEMOIZE"}, {0x95, "FRAME"}, {0x96, "BYTEARRAY8"},
    {0x97, "NEXT_BUFFER"}, {0x98, "READONLY_BUFFER"},
};

const char *smelt_pk_opcode_name(uint8_t op)
{
    for (size_t i = 0; i < sizeof k_ops / sizeof k_ops[0]; i++)
        if (k_ops[i].op == op) return k_ops[i].name;
    return NULL;
}

#define ALLOWED_GLOBALS \
    "collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, " \
    "torch._utils._rebuild_parameter_with_state and torch.<Type>Storage"

/* ==== machine helpers ==== */

#define FAIL(...) SMELT_CORRUPT(m->e, m->file, (uint64_t)m->op_at, m->object, __VA_ARGS__)

static int nomem(vm *m) { return SMELT_NOMEM(m->e, "pickle values"); }

static const char *opname(uint8_t op)
{
    const char *n = smelt_pk_opcode_name(op);
    return n ? n : "unknown";
}

static pv *newv(vm *m, int kind)
{
    pv *v = ar_alloc(&m->ar, sizeof *v);
    if (v) {
        memset(v, 0, sizeof *v);
        v->kind = kind;
    }
    return v;
}

static int push(vm *m, pv *v)
{
    if (!v) return nomem(m);
    if (m->sp == m->scap) {
        size_t nc = m->scap ? m->scap * 2 : 64;
        pv **s = realloc(m->stack, nc * sizeof *s);
        if (!s) return nomem(m);
        m->stack = s;
        m->scap = nc;
    }
    m->stack[m->sp++] = v;
    return 0;
}

/* Values above the innermost mark (or the whole stack for n_above_mark callers). */
static size_t mark_base(vm *m) { return m->nmarks ? m->marks[m->nmarks - 1] : 0; }

static int pop(vm *m, pv **out)
{
    if (m->sp <= mark_base(m)) return FAIL("%s needs a value but the stack is empty", opname(m->op));
    *out = m->stack[--m->sp];
    return 0;
}

static int top(vm *m, pv **out)
{
    if (m->sp <= mark_base(m)) return FAIL("%s needs a value but the stack is empty", opname(m->op));
    *out = m->stack[m->sp - 1];
    return 0;
}

static int pop_mark(vm *m, size_t *base)
{
    if (!m->nmarks) return FAIL("%s without a preceding MARK", opname(m->op));
    *base = m->marks[--m->nmarks];
    return 0;
}

static int seq_append(vm *m, pv *s, pv *item)
{
    if (s->u.seq.n == s->u.seq.cap) {
        size_t nc = s->u.seq.cap ? s->u.seq.cap * 2 : 8;
        pv **v = ar_alloc(&m->ar, nc * sizeof *v);
        if (!v) return nomem(m);
        if (s->u.seq.n) memcpy(v, s->u.seq.v, s->u.seq.n * sizeof *v);
        s->u.seq.v = v;
        s->u.seq.cap = nc;
    }
    s->u.seq.v[s->u.seq.n++] = item;
    return 0;
}

/* A tuple/list made of stack[base, sp). */
static int collect(vm *m, int kind, size_t base)
{
    pv *t = newv(m, kind);
    if (!t) return nomem(m);
    size_t n = m->sp - base;
    if (n) {
        t->u.seq.v = ar_alloc(&m->ar, n * sizeof(pv *));
        if (!t->u.seq.v) return nomem(m);
        memcpy(t->u.seq.v, m->stack + base, n * sizeof(pv *));
        t->u.seq.n = t->u.seq.cap = n;
    }
    m->sp = base;
    return push(m, t);
}

static int need(vm *m, size_t n)
{
    if (m->len - m->pos < n)
        return FAIL("truncated pickle: %s needs %zu more bytes, %zu remain", opname(m->op), n, m->len - m->pos);
    return 0;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int memo_put(vm *m, uint64_t idx, pv *v)
{
    /* Python's pickler numbers memo entries 0, 1, 2, …: an index beyond the input size is
     * not something torch.save writes and would only make us allocate. */
    if (idx > m->len) return FAIL("memo index %llu is out of range for a %zu-byte pickle", (unsigned long long)idx, m->len);
    if (idx >= m->memo_cap) {
        size_t nc = m->memo_cap ? m->memo_cap : 64;
        while (nc <= idx) nc *= 2;
        pv **mm = realloc(m->memo, nc * sizeof *mm);
        if (!mm) return nomem(m);
        memset(mm + m->memo_cap, 0, (nc - m->memo_cap) * sizeof *mm);
        m->memo = mm;
        m->memo_cap = nc;
    }
    if (!m->memo[idx]) m->memo_n++;
    m->memo[idx] = v;
    return 0;
}

static int memo_get(vm *m, uint64_t idx)
{
    if (idx >= m->memo_cap || !m->memo[idx]) return FAIL("memo entry %llu was never stored", (unsigned long long)idx);
    return push(m, m->memo[idx]);
}

static int push_str(vm *m, int kind, size_t n)
{
    int rc = need(m, n);
    if (rc) return rc;
    pv *v = newv(m, kind);
    if (!v) return nomem(m);
    v->u.s.p = (const char *)m->p + m->pos;
    v->u.s.n = n;
    m->pos += n;
    return push(m, v);
}

static int str_eq(const pv *v, const char *s) { return v->u.s.n == strlen(s) && !memcmp(v->u.s.p, s, v->u.s.n); }

/* ==== globals ==== */

static int resolve_global(vm *m, const char *mod, size_t ml, const char *name, size_t nl)
{
    pv *g = newv(m, K_GLOBAL);
    if (!g) return nomem(m);
#define IS(s, l, lit) ((l) == sizeof(lit) - 1 && !memcmp((s), (lit), (l)))
    if (IS(mod, ml, "collections") && IS(name, nl, "OrderedDict")) g->u.g.id = G_ORDERED_DICT;
    else if (IS(mod, ml, "torch._utils") && IS(name, nl, "_rebuild_tensor_v2")) g->u.g.id = G_REBUILD_V2;
    else if (IS(mod, ml, "torch._utils") && IS(name, nl, "_rebuild_parameter")) g->u.g.id = G_REBUILD_PARAM;
    else if (IS(mod, ml, "torch._utils") && IS(name, nl, "_rebuild_parameter_with_state")) g->u.g.id = G_REBUILD_PARAM_STATE;
    else {
        int found = 0;
        if (IS(mod, ml, "torch"))
            for (size_t i = 0; i < sizeof k_storages / sizeof k_storages[0]; i++)
                if (strlen(k_storages[i].name) == nl && !memcmp(name, k_storages[i].name, nl)) {
                    g->u.g.id = G_STORAGE;
                    g->u.g.dtype = k_storages[i].dt;
                    found = 1;
                }
        if (!found) {
            if (IS(mod, ml, "torch") && nl > 7 && !memcmp(name + nl - 7, "Storage", 7))
                return FAIL("%s 'torch %.*s': this storage type is not supported (float, half, bfloat16, double, "
                            "integer, bool and float8 storages are)",
                            opname(m->op), (int)nl, name);
            return FAIL("%s '%.*s %.*s' is not allowed: a state dict may only name " ALLOWED_GLOBALS
                        " (loading this pickle with torch.load would run arbitrary code)",
                        opname(m->op), (int)(ml > 200 ? 200 : ml), mod, (int)(nl > 200 ? 200 : nl), name);
        }
    }
#undef IS
    return push(m, g);
}

static int op_global(vm *m)
{
    const char *s[2];
    size_t l[2];
    for (int k = 0; k < 2; k++) {
        const uint8_t *nl = m->pos < m->len ? memchr(m->p + m->pos, '\n', m->len - m->pos) : NULL;
        if (!nl) return FAIL("truncated pickle: GLOBAL without its newline-terminated %s", k ? "name" : "module");
        s[k] = (const char *)m->p + m->pos;
        l[k] = (size_t)(nl - (m->p + m->pos));
        m->pos += l[k] + 1;
    }
    return resolve_global(m, s[0], l[0], s[1], l[1]);
}

static int op_stack_global(vm *m)
{
    pv *name, *mod;
    int rc;
    if ((rc = pop(m, &name)) || (rc = pop(m, &mod))) return rc;
    if (name->kind != K_STR || mod->kind != K_STR)
        return FAIL("STACK_GLOBAL needs two strings, found %s and %s", kind_name(mod->kind), kind_name(name->kind));
    return resolve_global(m, mod->u.s.p, mod->u.s.n, name->u.s.p, name->u.s.n);
}

static const char *global_name(const pv *g)
{
    switch (g->u.g.id) {
    case G_ORDERED_DICT: return "collections.OrderedDict";
    case G_REBUILD_V2: return "torch._utils._rebuild_tensor_v2";
    case G_REBUILD_PARAM: return "torch._utils._rebuild_parameter";
    case G_REBUILD_PARAM_STATE: return "torch._utils._rebuild_parameter_with_state";
    default: return "torch.<Type>Storage";
    }
}

/* ==== REDUCE, BUILD, BINPERSID ==== */

static int int_of(vm *m, const pv *v, const char *what, int64_t *out)
{
    if (v->kind != K_INT && v->kind != K_BOOL) return FAIL("%s must be an int, found %s", what, kind_name(v->kind));
    *out = v->u.i;
    return 0;
}

static int rebuild_tensor(vm *m, pv **a, size_t na)
{
    if (na != 6 && na != 7)
        return FAIL("_rebuild_tensor_v2 takes 6 or 7 arguments (storage, offset, size, stride, requires_grad, "
                    "backward_hooks[, metadata]), found %zu",
                    na);
    if (a[0]->kind != K_STORAGE) return FAIL("_rebuild_tensor_v2: argument 1 must be a storage, found %s", kind_name(a[0]->kind));
    int64_t off;
    int rc = int_of(m, a[1], "_rebuild_tensor_v2 storage offset", &off);
    if (rc) return rc;
    if (off < 0) return FAIL("_rebuild_tensor_v2: negative storage offset %lld", (long long)off);
    if (a[2]->kind != K_TUPLE || a[3]->kind != K_TUPLE)
        return FAIL("_rebuild_tensor_v2: size and stride must be tuples, found %s and %s", kind_name(a[2]->kind),
                    kind_name(a[3]->kind));
    size_t nd = a[2]->u.seq.n;
    if (nd != a[3]->u.seq.n)
        return FAIL("_rebuild_tensor_v2: size has %zu dimensions but stride has %zu", nd, a[3]->u.seq.n);
    if (nd > SMELT_PK_MAX_DIMS) return FAIL("_rebuild_tensor_v2: %zu dimensions (at most %d supported)", nd, SMELT_PK_MAX_DIMS);
    if (a[5]->kind != K_DICT) return FAIL("_rebuild_tensor_v2: backward_hooks must be a dict, found %s", kind_name(a[5]->kind));
    if (m->ntens == m->tcap) {
        size_t nc = m->tcap ? m->tcap * 2 : 64;
        smelt_pk_tensor *t = realloc(m->tens, nc * sizeof *t);
        if (!t) return nomem(m);
        m->tens = t;
        m->tcap = nc;
    }
    smelt_pk_tensor *t = &m->tens[m->ntens];
    memset(t, 0, sizeof *t);
    t->dtype = a[0]->u.st.dtype;
    t->storage = a[0]->u.st.key;
    t->storage_numel = a[0]->u.st.numel;
    t->offset = (uint64_t)off;
    t->n_dims = (uint32_t)nd;
    t->nelements = 1;
    for (size_t d = 0; d < nd; d++) {
        int64_t sz, st;
        if ((rc = int_of(m, a[2]->u.seq.v[d], "_rebuild_tensor_v2 size", &sz)) ||
            (rc = int_of(m, a[3]->u.seq.v[d], "_rebuild_tensor_v2 stride", &st)))
            return rc;
        if (sz < 0) return FAIL("_rebuild_tensor_v2: negative size %lld in dimension %zu", (long long)sz, d);
        t->shape[d] = (uint64_t)sz;
        t->stride[d] = st;
        if (!smelt_mul_u64(t->nelements, (uint64_t)sz, &t->nelements))
            return FAIL("_rebuild_tensor_v2: element count overflows");
    }
    t->pickle_offset = m->op_at;
    pv *v = newv(m, K_TENSOR);
    if (!v) return nomem(m);
    v->u.t = m->ntens++;
    return push(m, v);
}

static int op_reduce(vm *m)
{
    pv *args, *fn;
    int rc;
    if ((rc = pop(m, &args)) || (rc = pop(m, &fn))) return rc;
    if (fn->kind != K_GLOBAL)
        return FAIL("REDUCE of a %s is not allowed: only " ALLOWED_GLOBALS " may appear", kind_name(fn->kind));
    if (args->kind != K_TUPLE) return FAIL("REDUCE arguments must be a tuple, found %s", kind_name(args->kind));
    pv **a = args->u.seq.v;
    size_t na = args->u.seq.n;
    switch (fn->u.g.id) {
    case G_ORDERED_DICT:
        if (na != 0) return FAIL("OrderedDict() with %zu arguments is not supported (torch.save writes OrderedDict())", na);
        return push(m, newv(m, K_DICT));
    case G_REBUILD_V2: return rebuild_tensor(m, a, na);
    case G_REBUILD_PARAM:
    case G_REBUILD_PARAM_STATE: {
        size_t want = fn->u.g.id == G_REBUILD_PARAM ? 3 : 4;
        if (na != want || a[0]->kind != K_TENSOR)
            return FAIL("%s takes (tensor, requires_grad, backward_hooks%s), found %zu arguments", global_name(fn),
                        want == 4 ? ", state" : "", na);
        return push(m, a[0]);
    }
    default:
        return FAIL("REDUCE of %s is not allowed: a storage class is only valid inside a persistent id", global_name(fn));
    }
}

static int op_build(vm *m)
{
    pv *state, *obj;
    int rc;
    if ((rc = pop(m, &state)) || (rc = top(m, &obj))) return rc;
    /* torch.save of model.state_dict() sets the OrderedDict's _metadata attribute: ignored */
    if (obj->kind != K_DICT) return FAIL("BUILD on a %s is not allowed (only the state dict's own attributes)", kind_name(obj->kind));
    if (state->kind != K_DICT && state->kind != K_NONE && state->kind != K_TUPLE)
        return FAIL("BUILD state must be a dict, found %s", kind_name(state->kind));
    return 0;
}

static int op_binpersid(vm *m)
{
    pv *pid;
    int rc = pop(m, &pid);
    if (rc) return rc;
    pv **a = pid->u.seq.v;
    if (pid->kind != K_TUPLE || pid->u.seq.n != 5 || a[0]->kind != K_STR || !str_eq(a[0], "storage") ||
        a[1]->kind != K_GLOBAL || a[1]->u.g.id != G_STORAGE || a[2]->kind != K_STR || a[3]->kind != K_STR ||
        (a[4]->kind != K_INT))
        return FAIL("persistent id is not ('storage', torch.<Type>Storage, key, location, numel)");
    if (a[4]->u.i < 0) return FAIL("storage with a negative element count %lld", (long long)a[4]->u.i);
    if (a[2]->u.s.n == 0 || a[2]->u.s.n > 64 || memchr(a[2]->u.s.p, '/', a[2]->u.s.n) || memchr(a[2]->u.s.p, 0, a[2]->u.s.n))
        return FAIL("storage key '%.*s' is not a plain record name", (int)(a[2]->u.s.n > 64 ? 64 : a[2]->u.s.n), a[2]->u.s.p);
    pv *s = newv(m, K_STORAGE);
    if (!s) return nomem(m);
    s->u.st.dtype = a[1]->u.g.dtype;
    s->u.st.key = ar_strndup(&m->ar, a[2]->u.s.p, a[2]->u.s.n);
    s->u.st.numel = (uint64_t)a[4]->u.i;
    if (!s->u.st.key) return nomem(m);
    return push(m, s);
}

/* ==== the loop ==== */

static int step(vm *m, int *stop)
{
    int rc;
    uint8_t op = m->op;
    pv *v, *k, *d;
    size_t base;
    switch (op) {
    case 0x80: /* PROTO */
        if ((rc = need(m, 1))) return rc;
        if (m->p[m->pos] > 5) return FAIL("pickle protocol %u is not supported (0..5)", m->p[m->pos]);
        m->pos++;
        return 0;
    case 0x95: /* FRAME */
        if ((rc = need(m, 8))) return rc;
        m->pos += 8;
        return 0;
    case '.': *stop = 1; return 0;
    case '(':
        if (m->nmarks == m->mcap) {
            size_t nc = m->mcap ? m->mcap * 2 : 16;
            size_t *mk = realloc(m->marks, nc * sizeof *mk);
            if (!mk) return nomem(m);
            m->marks = mk;
            m->mcap = nc;
        }
        m->marks[m->nmarks++] = m->sp;
        return 0;
    case '0': return pop(m, &v);
    case '1':
        if ((rc = pop_mark(m, &base))) return rc;
        m->sp = base;
        return 0;
    case '2': return (rc = top(m, &v)) ? rc : push(m, v);
    case 'N': return push(m, newv(m, K_NONE));
    case 0x88:
    case 0x89:
        if (!(v = newv(m, K_BOOL))) return nomem(m);
        v->u.i = op == 0x88;
        return push(m, v);
    case 'J':
    case 'K':
    case 'M': {
        int n = op == 'J' ? 4 : op == 'K' ? 1 : 2;
        if ((rc = need(m, (size_t)n))) return rc;
        if (!(v = newv(m, K_INT))) return nomem(m);
        uint64_t u = le(m->p + m->pos, n);
        v->u.i = op == 'J' ? (int64_t)(int32_t)(uint32_t)u : (int64_t)u;
        m->pos += (size_t)n;
        return push(m, v);
    }
    case 0x8a:
    case 0x8b: {
        size_t hn = op == 0x8a ? 1 : 4;
        if ((rc = need(m, hn))) return rc;
        uint64_t n = le(m->p + m->pos, (int)hn);
        m->pos += hn;
        if (op == 0x8b && (n & 0x80000000u)) return FAIL("LONG4 with a negative length");
        if (n > 8) return FAIL("%s integer of %llu bytes is too large", opname(op), (unsigned long long)n);
        if ((rc = need(m, (size_t)n))) return rc;
        if (!(v = newv(m, K_INT))) return nomem(m);
        uint64_t u = le(m->p + m->pos, (int)n);
        if (n > 0 && n < 8 && (m->p[m->pos + n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
        v->u.i = (int64_t)u;
        m->pos += (size_t)n;
        return push(m, v);
    }
    case 'G': {
        if ((rc = need(m, 8))) return rc;
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = (u << 8) | m->p[m->pos + (size_t)i];
        if (!(v = newv(m, K_FLOAT))) return nomem(m);
        memcpy(&v->u.f, &u, 8);
        m->pos += 8;
        return push(m, v);
    }
    case 'X':
    case 'B':
    case 'T':
    case 0x8c:
    case 'C':
    case 'U':
    case 0x8d:
    case 0x8e: {
        size_t hn = (op == 0x8c || op == 'C' || op == 'U') ? 1 : (op == 0x8d || op == 0x8e) ? 8 : 4;
        if ((rc = need(m, hn))) return rc;
        uint64_t n = le(m->p + m->pos, (int)hn);
        if (op == 'T' && (n & 0x80000000u)) return FAIL("BINSTRING with a negative length");
        m->pos += hn;
        if (n > m->len - m->pos) return FAIL("truncated pickle: %s of %llu bytes, %zu remain", opname(op), (unsigned long long)n, m->len - m->pos);
        int kind = (op == 'B' || op == 'C' || op == 0x8e) ? K_BYTES : K_STR;
        return push_str(m, kind, (size_t)n);
    }
    case ')': return collect(m, K_TUPLE, m->sp);
    case ']': return collect(m, K_LIST, m->sp);
    case '}': return push(m, newv(m, K_DICT));
    case 't': return (rc = pop_mark(m, &base)) ? rc : collect(m, K_TUPLE, base);
    case 'l': return (rc = pop_mark(m, &base)) ? rc : collect(m, K_LIST, base);
    case 0x85:
    case 0x86:
    case 0x87: {
        size_t n = (size_t)(op - 0x84);
        if (m->sp - mark_base(m) < n) return FAIL("%s needs %zu values on the stack", opname(op), n);
        return collect(m, K_TUPLE, m->sp - n);
    }
    case 'a':
        if ((rc = pop(m, &v)) || (rc = top(m, &d))) return rc;
        if (d->kind != K_LIST) return FAIL("APPEND to a %s", kind_name(d->kind));
        return seq_append(m, d, v);
    case 'e':
        if ((rc = pop_mark(m, &base))) return rc;
        if (base == 0 || base - 1 < mark_base(m)) return FAIL("APPENDS without a list below its MARK");
        d = m->stack[base - 1];
        if (d->kind != K_LIST) return FAIL("APPENDS to a %s", kind_name(d->kind));
        for (size_t i = base; i < m->sp; i++)
            if ((rc = seq_append(m, d, m->stack[i]))) return rc;
        m->sp = base;
        return 0;
    case 'd':
    case 'u':
        if ((rc = pop_mark(m, &base))) return rc;
        if ((m->sp - base) % 2) return FAIL("%s with an odd number of values (keys and values must pair)", opname(op));
        if (op == 'd') {
            if (!(d = newv(m, K_DICT))) return nomem(m);
        } else {
            if (base == 0 || base - 1 < mark_base(m)) return FAIL("SETITEMS without a dict below its MARK");
            d = m->stack[base - 1];
            if (d->kind != K_DICT) return FAIL("SETITEMS on a %s", kind_name(d->kind));
        }
        for (size_t i = base; i < m->sp; i++)
            if ((rc = seq_append(m, d, m->stack[i]))) return rc;
        m->sp = base;
        return op == 'd' ? push(m, d) : 0;
    case 's':
        if ((rc = pop(m, &v)) || (rc = pop(m, &k)) || (rc = top(m, &d))) return rc;
        if (d->kind != K_DICT) return FAIL("SETITEM on a %s", kind_name(d->kind));
        return (rc = seq_append(m, d, k)) ? rc : seq_append(m, d, v);
    case 'q':
    case 'r':
    case 0x94: {
        uint64_t idx;
        if (op == 0x94) {
            idx = m->memo_n; /* MEMOIZE: the next index, len(memo) */
        } else {
            size_t hn = op == 'q' ? 1 : 4;
            if ((rc = need(m, hn))) return rc;
            idx = le(m->p + m->pos, (int)hn);
            m->pos += hn;
        }
        if ((rc = top(m, &v))) return rc;
        return memo_put(m, idx, v);
    }
    case 'h':
    case 'j': {
        size_t hn = op == 'h' ? 1 : 4;
        if ((rc = need(m, hn))) return rc;
        uint64_t idx = le(m->p + m->pos, (int)hn);
        m->pos += hn;
        return memo_get(m, idx);
    }
    case 'c': return op_global(m);
    case 0x93: return op_stack_global(m);
    case 'R': return op_reduce(m);
    case 'b': return op_build(m);
    case 'Q': return op_binpersid(m);
    default: {
        const char *n = smelt_pk_opcode_name(op);
        if (n) return FAIL("opcode %s (0x%02x) is not allowed in a PyTorch state dict", n, op);
        return FAIL("unknown pickle opcode 0x%02x", op);
    }
    }
}

/* ==== result ==== */

static int check_tensor(vm *m, const smelt_pk_tensor *t)
{
    for (uint32_t d = 0; d < t->n_dims; d++)
        if (t->shape[d] == 0)
            return SMELT_ERR(m->e, SMELT_EFORMAT, m->file, t->name,
                             "size[%u] is 0: a tensor without elements (tensor built at byte %llu of %s)", d,
                             (unsigned long long)t->pickle_offset, m->object);
    /* contiguous (row-major) strides; dimensions of size 1 may carry any stride */
    int64_t want = 1;
    int ok = 1;
    for (int d = (int)t->n_dims - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != want) ok = 0;
        want *= (int64_t)t->shape[d];
    }
    if (!ok && t->nelements > 0) {
        char got[160] = "", exp[160] = "";
        size_t gl = 0, el = 0;
        int64_t w = 1;
        int64_t ws[SMELT_PK_MAX_DIMS];
        for (int d = (int)t->n_dims - 1; d >= 0; d--) {
            ws[d] = w;
            w *= (int64_t)t->shape[d];
        }
        for (uint32_t d = 0; d < t->n_dims; d++) {
            gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s%lld", d ? ", " : "", (long long)t->stride[d]);
            el += (size_t)snprintf(exp + el, sizeof exp - el, "%s%lld", d ? ", " : "", (long long)ws[d]);
            if (gl >= sizeof got || el >= sizeof exp) break;
        }
        return SMELT_ERR(m->e, SMELT_EUNSUPPORTED, m->file, t->name,
                         "strides (%s) are not contiguous (expected (%s) for this shape; tensor built at byte %llu of "
                         "%s): save the state dict with contiguous tensors (tensor.contiguous())",
                         got, exp, (unsigned long long)t->pickle_offset, m->object);
    }
    uint64_t end;
    if (t->nelements > 0 && (!smelt_add_u64(t->offset, t->nelements, &end) || end > t->storage_numel))
        return SMELT_ERR(m->e, SMELT_EFORMAT, m->file, t->name,
                         "elements [%llu, +%llu) lie outside its storage '%s' of %llu elements (tensor built at byte %llu of %s)",
                         (unsigned long long)t->offset, (unsigned long long)t->nelements, t->storage,
                         (unsigned long long)t->storage_numel, (unsigned long long)t->pickle_offset, m->object);
    return 0;
}

static int extract(vm *m, pv *root, smelt_pk_dict *out)
{
    if (root->kind != K_DICT)
        return SMELT_ERR(m->e, SMELT_EUNSUPPORTED, m->file, m->object,
                         "the pickle holds a %s, not a state dict (a dict of tensors)", kind_name(root->kind));
    size_t n = root->u.seq.n / 2;
    out->t = calloc(n + 1, sizeof *out->t);
    smelt_names idx;
    if (!out->t || smelt_names_init(&idx, n)) {
        free(out->t);
        out->t = NULL;
        return nomem(m);
    }
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        pv *k = root->u.seq.v[2 * i], *v = root->u.seq.v[2 * i + 1];
        if (k->kind != K_STR) {
            rc = SMELT_ERR(m->e, SMELT_EUNSUPPORTED, m->file, m->object, "state dict key %zu is a %s, expected a string",
                           i, kind_name(k->kind));
            break;
        }
        char *name = ar_strndup(&out->names, k->u.s.p, k->u.s.n);
        if (!name) {
            rc = nomem(m);
            break;
        }
        if (strlen(name) != k->u.s.n) {
            rc = SMELT_ERR(m->e, SMELT_EFORMAT, m->file, m->object, "state dict key %zu contains a NUL byte", i);
            break;
        }
        if (v->kind != K_TENSOR) {
            rc = SMELT_ERR(m->e, SMELT_EUNSUPPORTED, m->file, name, "state dict entry is a %s, expected a tensor",
                           kind_name(v->kind));
            break;
        }
        smelt_pk_tensor t = m->tens[v->u.t];
        t.name = name;
        t.storage = ar_strndup(&out->names, t.storage, strlen(t.storage));
        if (!t.storage) {
            rc = nomem(m);
            break;
        }
        if ((rc = check_tensor(m, &t))) break;
        long prev = smelt_names_add(&idx, name, out->n);
        if (prev == SMELT_NAMES_NOMEM) {
            rc = nomem(m);
        } else if (prev != SMELT_NAMES_ADDED) {
            out->t[prev] = t; /* Python dict: first position, last value */
        } else {
            out->t[out->n++] = t;
        }
    }
    smelt_names_free(&idx);
    return rc;
}

int smelt_pk_load_state_dict(const uint8_t *data, size_t len, const char *file, const char *object,
                             smelt_pk_dict **out, smelt_err *e)
{
    *out = NULL;
    vm m;
    memset(&m, 0, sizeof m);
    m.p = data;
    m.len = len;
    m.file = file;
    m.object = object;
    m.e = e;
    smelt_pk_dict *d = calloc(1, sizeof *d);
    if (!d) return SMELT_NOMEM(e, "state dict");
    int rc = 0, stop = 0;
    while (!rc && !stop) {
        if (m.pos >= m.len) {
            m.op_at = m.pos;
            rc = SMELT_CORRUPT(e, file, (uint64_t)m.pos, object, "truncated pickle: no STOP opcode before the end (%zu bytes)", len);
            break;
        }
        m.op_at = m.pos;
        m.op = m.p[m.pos++];
        rc = step(&m, &stop);
    }
    if (!rc && (m.sp != 1 || m.nmarks))
        rc = SMELT_CORRUPT(e, file, (uint64_t)m.op_at, object, "STOP leaves %zu values and %zu marks on the stack (expected one value)",
                           m.sp, m.nmarks);
    if (!rc) rc = extract(&m, m.stack[0], d);
    ar_free(&m.ar);
    free(m.stack);
    free(m.marks);
    free(m.memo);
    free(m.tens);
    if (rc) {
        smelt_pk_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

void smelt_pk_free(smelt_pk_dict *d)
{
    if (!d) return;
    free(d->t);
    ar_free(&d->names);
    free(d);
}

size_t smelt_pk_count(const smelt_pk_dict *d) { return d->n; }
const smelt_pk_tensor *smelt_pk_at(const smelt_pk_dict *d, size_t i) { return i < d->n ? &d->t[i] : NULL; }
