/* pickle.h — an allow-listed reader for the pickle that torch.save writes for a state dict
 * (data.pkl inside a PyTorch .bin). Layer: formats. Includes base/, dtype.h.
 *
 * It interprets the pickle opcodes into plain values and never executes anything: the
 * only globals it accepts are collections.OrderedDict, torch._utils._rebuild_tensor_v2,
 * torch._utils._rebuild_parameter(_with_state) and the torch.*Storage classes, and the
 * only calls (REDUCE) it evaluates are those rebuild functions and OrderedDict(), by its
 * own code. Storages arrive through BINPERSID as ('storage', torch.XStorage, key,
 * location, numel). Any other global, callable or opcode (INST, OBJ, NEWOBJ, EXT*, text
 * opcodes, …) is rejected with SMELT_EFORMAT naming the opcode and its byte offset. */
#ifndef SMELT_PICKLE_H
#define SMELT_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "dtype.h"

#define SMELT_PK_MAX_DIMS 8

typedef struct smelt_pk_tensor {
    const char *name;        /* state dict key */
    smelt_dtype dtype;       /* from the storage class (FloatStorage → F32, …) */
    const char *storage;     /* storage key: the archive entry is <prefix>/data/<key> */
    uint64_t storage_numel;  /* elements the storage holds */
    uint64_t offset;         /* storage_offset, in elements */
    uint32_t n_dims;
    uint64_t shape[SMELT_PK_MAX_DIMS];
    int64_t stride[SMELT_PK_MAX_DIMS];
    uint64_t nelements;
    uint64_t pickle_offset;  /* byte offset of the REDUCE that built it (for messages) */
} smelt_pk_tensor;

typedef struct smelt_pk_dict smelt_pk_dict;

/* Interpret `len` bytes of pickle as a state dict: a dict/OrderedDict from names to
 * tensors, kept in pickle (insertion) order; a key given twice keeps its first position
 * and its last value, as Python's dict does. `file` and `object` name the archive and
 * the pickle entry in error messages, whose offsets are positions in the pickle.
 * The result does not reference `data`. Caller frees with smelt_pk_free(). */
int smelt_pk_load_state_dict(const uint8_t *data, size_t len, const char *file, const char *object,
                             smelt_pk_dict **out, smelt_err *e);
void smelt_pk_free(smelt_pk_dict *d); /* NULL is a no-op */

size_t smelt_pk_count(const smelt_pk_dict *d);
/* Borrowed until smelt_pk_free(). */
const smelt_pk_tensor *smelt_pk_at(const smelt_pk_dict *d, size_t i);

/* The storage class name torch uses for a dtype ("BFloat16Storage"), or NULL. */
const char *smelt_pk_storage_name(smelt_dtype d);
/* Name of a pickle opcode as pickletools spells it ("GLOBAL"), or NULL if unknown. */
const char *smelt_pk_opcode_name(uint8_t op);

#endif
