/* names.c — open-addressing hash map (FNV-1a, linear probing, grows at 50% load). */
#include "names.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

int smelt_names_init(smelt_names *m, size_t expect)
{
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < expect * 2) cap <<= 1;
    m->keys = calloc(cap, sizeof *m->keys);
    m->vals = calloc(cap, sizeof *m->vals);
    if (!m->keys || !m->vals) {
        smelt_names_free(m);
        return -1;
    }
    m->cap = cap;
    return 0;
}

void smelt_names_free(smelt_names *m)
{
    if (!m) return;
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t slot_of(const smelt_names *m, const char *key)
{
    size_t i = (size_t)fnv1a(key) & (m->cap - 1);
    while (m->keys[i] && strcmp(m->keys[i], key) != 0) i = (i + 1) & (m->cap - 1);
    return i;
}

static int grow(smelt_names *m)
{
    smelt_names n;
    if (smelt_names_init(&n, m->cap)) return -1; /* doubles the capacity */
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) {
            size_t s = slot_of(&n, m->keys[i]);
            n.keys[s] = m->keys[i];
            n.vals[s] = m->vals[i];
            n.count++;
        }
    smelt_names_free(m);
    *m = n;
    return 0;
}

long smelt_names_add(smelt_names *m, const char *key, size_t val)
{
    if (!m->cap && smelt_names_init(m, 8)) return SMELT_NAMES_NOMEM;
    if ((m->count + 1) * 2 > m->cap && grow(m)) return SMELT_NAMES_NOMEM;
    size_t s = slot_of(m, key);
    if (m->keys[s]) return (long)m->vals[s];
    m->keys[s] = key;
    m->vals[s] = val;
    m->count++;
    return SMELT_NAMES_ADDED;
}

long smelt_names_find(const smelt_names *m, const char *key)
{
    if (!m->cap) return -1;
    size_t s = slot_of(m, key);
    return m->keys[s] ? (long)m->vals[s] : -1;
}
