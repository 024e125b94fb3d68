/* hash.c — thin layer over libxxhash. */
#include "hash.h"

#include <xxhash.h>

uint64_t smelt_xxh64(const void *p, size_t n) { return XXH64(p, n, 0); }

/* smelt_xxh64_state is an XXH64_state_t behind an opaque name. */
smelt_xxh64_state *smelt_xxh64_new(void)
{
    XXH64_state_t *s = XXH64_createState();
    if (!s) return NULL;
    XXH64_reset(s, 0);
    return (smelt_xxh64_state *)s;
}

void smelt_xxh64_update(smelt_xxh64_state *s, const void *p, size_t n)
{
    XXH64_update((XXH64_state_t *)s, p, n);
}

uint64_t smelt_xxh64_digest(const smelt_xxh64_state *s)
{
    return XXH64_digest((const XXH64_state_t *)s);
}

void smelt_xxh64_free(smelt_xxh64_state *s) { XXH64_freeState((XXH64_state_t *)s); }
