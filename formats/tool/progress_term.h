/* progress_term.h — the terminal progress renderer of the tool mains: "VERB i/N label
 * MB/s ETA" redrawn on one line of a terminal, or one line per tenth when stderr is not one.
 * Layer: formats/tool (linked into the mains only, never into libsmelt.a). */
#ifndef SMELT_PROGRESS_TERM_H
#define SMELT_PROGRESS_TERM_H

#include <stdint.h>

#include "formats/base/progress.h"

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
#endif
