/* names.h — a string → index hash map for tensor and key lookup.
 * Layer: formats/base. libc only. Keys are borrowed: they must outlive the map. */
#ifndef SMELT_NAMES_H
#define SMELT_NAMES_H

#include <stddef.h>

typedef struct smelt_names {
    const char **keys;
    size_t *vals;
    size_t cap, count; /* cap is a power of two */
} smelt_names;

enum { SMELT_NAMES_ADDED = -1, SMELT_NAMES_NOMEM = -2 };

/* Prepare for about `expect` entries; 0 on success, -1 on ENOMEM. */
int smelt_names_init(smelt_names *m, size_t expect);
void smelt_names_free(smelt_names *m);
/* Insert key → val. Returns SMELT_NAMES_ADDED, SMELT_NAMES_NOMEM, or (when the key
 * already exists) the existing value, which is left unchanged. */
long smelt_names_add(smelt_names *m, const char *key, size_t val);
/* Value for key, or -1. */
long smelt_names_find(const smelt_names *m, const char *key);

#endif
