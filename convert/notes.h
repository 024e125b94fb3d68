/* notes.h — warnings the converter reports to its caller (never prints itself).
 * Layer: convert. libc only. */
#ifndef SMELT_NOTES_H
#define SMELT_NOTES_H

#include <stdarg.h>
#include <stdio.h>

/* Called once per warning with a complete one-line message (no trailing newline). */
typedef void (*smelt_note_fn)(void *user, const char *msg);

typedef struct smelt_notes {
    smelt_note_fn fn;
    void *user;
} smelt_notes;

static inline void smelt_note(const smelt_notes *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void smelt_note(const smelt_notes *n, const char *fmt, ...)
{
    if (!n || !n->fn) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    n->fn(n->user, buf);
}

#endif
