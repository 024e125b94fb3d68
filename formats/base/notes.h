/* notes.h — the one way library code tells its caller about something worth a warning
 * (mixed dtypes, f16 overflow, a quant that falls back, a partial imatrix entry, a cached
 * report row, …): a callback the caller sets in the stage's options. Library code never
 * prints; the tool main prints each note (e.g. "TOOL: warning: MSG") or collects it.
 * Layer: formats/base. libc only. */
#ifndef SMELT_BASE_NOTES_H
#define SMELT_BASE_NOTES_H

#include <stdarg.h>
#include <stdio.h>

/* Called once per note with a complete one-line message (no trailing newline; cut at
 * 1023 bytes). */
typedef void (*smelt_note_fn)(void *user, const char *msg);

typedef struct smelt_notes {
    smelt_note_fn fn; /* NULL: notes are dropped */
    void *user;
} smelt_notes;

/* Format one note and hand it to n->fn (nothing when n or n->fn is NULL). */
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
