/* progress.h — progress reporting for long jobs.
 * Layer: formats/base. Library code only calls smelt_progress_step(); the terminal
 * renderer that draws it is the tools' (formats/tool/progress_term.h). */
#ifndef SMELT_PROGRESS_H
#define SMELT_PROGRESS_H

#include <stdint.h>

typedef struct smelt_progress smelt_progress;

/* Called by library code after each unit (tensor, chunk, …).
 * done/total units, bytes processed so far (0 if meaningless), label of the unit. */
typedef void (*smelt_progress_fn)(void *user, uint64_t done, uint64_t total, uint64_t bytes,
                                  const char *label);

struct smelt_progress {
    smelt_progress_fn fn;
    void *user;
};

/* Safe with p == NULL or p->fn == NULL. */
static inline void smelt_progress_step(const smelt_progress *p, uint64_t done, uint64_t total,
                                       uint64_t bytes, const char *label)
{
    if (p && p->fn) p->fn(p->user, done, total, bytes, label);
}

/* Monotonic seconds (for durations). */
double smelt_now(void);

#endif
