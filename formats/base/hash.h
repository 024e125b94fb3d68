/* hash.h — xxHash wrappers for tensor and file hashes.
 * Layer: formats/base. Uses libxxhash. xxh64 with seed 0 is what llama-gguf-hash prints
 * per tensor; smelt's manifests use the same so the two can be compared. */
#ifndef SMELT_HASH_H
#define SMELT_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t smelt_xxh64(const void *p, size_t n);

typedef struct smelt_xxh64_state smelt_xxh64_state;
smelt_xxh64_state *smelt_xxh64_new(void);
void smelt_xxh64_update(smelt_xxh64_state *s, const void *p, size_t n);
uint64_t smelt_xxh64_digest(const smelt_xxh64_state *s);
void smelt_xxh64_free(smelt_xxh64_state *s);

#endif
