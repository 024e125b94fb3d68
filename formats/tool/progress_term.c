/* progress_term.c — the terminal progress renderer of the tool mains. */
#include "progress_term.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void render(void *user, uint64_t done, uint64_t total, uint64_t bytes, const char *label)
{
    smelt_progress_term *t = user;
    if (t->quiet) return;
    double now = smelt_now();
    double el = now - t->t0;
    double mbs = el > 0 ? (double)bytes / el / 1e6 : 0;
    double eta = (done > 0 && total > done) ? el * (double)(total - done) / (double)done : 0;
    if (t->tty) {
        if (done < total && now - t->last_draw < 0.1) return;
        t->last_draw = now;
        fprintf(stderr, "\r\033[K%s %llu/%llu %.60s", t->verb, (unsigned long long)done,
                (unsigned long long)total, label ? label : "");
        if (bytes) fprintf(stderr, "  %.1f MB/s", mbs);
        if (eta > 0) fprintf(stderr, "  ETA %.0fs", eta);
        fflush(stderr);
    } else {
        int dec = total ? (int)(done * 10 / total) : 10;
        if (dec == t->last_decile) return;
        t->last_decile = dec;
        fprintf(stderr, "%s %llu/%llu (%d%%)", t->verb, (unsigned long long)done,
                (unsigned long long)total, dec * 10);
        if (bytes) fprintf(stderr, "  %.1f MB/s", mbs);
        if (eta > 0) fprintf(stderr, "  ETA %.0fs", eta);
        fputc('\n', stderr);
    }
}

void smelt_progress_term_init(smelt_progress_term *t, smelt_progress *p, const char *verb,
                              int quiet)
{
    memset(t, 0, sizeof *t);
    t->verb = verb;
    t->quiet = quiet;
    t->tty = isatty(2);
    t->t0 = smelt_now();
    t->last_decile = -1;
    p->fn = render;
    p->user = t;
}

void smelt_progress_term_done(smelt_progress_term *t, uint64_t bytes)
{
    if (t->quiet) return;
    double el = smelt_now() - t->t0;
    if (t->tty) fputs("\r\033[K", stderr);
    fprintf(stderr, "%s: done in %.2f s", t->verb, el);
    if (bytes && el > 0) fprintf(stderr, " (%.1f MB/s)", (double)bytes / el / 1e6);
    fputc('\n', stderr);
}
