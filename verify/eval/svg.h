/* svg.h — a small scatter plot as a standalone, hand-written SVG document: labelled points
 * on a linear (or log2) x axis and a log10 y axis, decade grid lines, title and subtitle;
 * points may belong to several series, each drawn in its own colour and line.
 * Layer: verify. Includes formats/base only. No dependencies; the output is valid XML
 * (text is escaped, control characters and invalid UTF-8 replaced) and deterministic
 * (numbers printed in the C locale with fixed precision). */
#ifndef SMELT_SVG_H
#define SMELT_SVG_H

#include <stdbool.h>
#include <stddef.h>

#include "formats/base/err.h"

typedef struct smelt_svg_point {
    double x, y;       /* y <= 0 or not finite: drawn hollow on the bottom edge */
    const char *label; /* may be NULL */
    bool highlight;    /* drawn as a square (e.g. the reference point) */
    int series;        /* 0 .. 7: colour, and which line connects it */
} smelt_svg_point;

typedef struct smelt_svg_plot {
    const char *title, *subtitle; /* subtitle may be NULL */
    const char *xlabel, *ylabel;
    const smelt_svg_point *pts;
    size_t n;
    bool connect;                 /* a line through each series' finite points in x order */
    bool log2_x;                  /* x axis in powers of two (x > 0), ticks at each power */
} smelt_svg_plot;

/* Render the plot. *out is malloc'd and NUL-terminated, *len its length (caller frees).
 * ENOMEM. A plot without finite positive y values gets the decade 1e-6 .. 1e-5. */
int smelt_svg_render(const smelt_svg_plot *p, char **out, size_t *len, smelt_err *e);

#endif
