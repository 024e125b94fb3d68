/* progress.h — progress reporting for long jobs.
 * Layer: formats/base. Library code only calls smelt_progress_step(); the terminal
 * renderer (smelt_progress_term_*) is for tool mains and writes to stderr. */
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

/* ==== terminal renderer (mains only) ==== */

typedef struct smelt_progress_term {
    const char *verb;  /* e.g. "converting" */
    int quiet;         /* -q: print nothing */
    int tty;           /* stderr is a terminal: redraw one line; else one line per 10% */
    double t0;         /* start time (monotonic seconds) */
    int last_decile;
    double last_draw;
} smelt_progress_term;

/* Set up a renderer and the smelt_progress that drives it. */
void smelt_progress_term_init(smelt_progress_term *t, smelt_progress *p, const char *verb,
                              int quiet);
/* Finish the line (newline on a tty) and print a summary "done in X s (Y MB/s)". */
void smelt_progress_term_done(smelt_progress_term *t, uint64_t bytes);
double smelt_now(void);

#endif
