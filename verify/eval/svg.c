/* svg.c — the scatter plot of svg.h, written with fprintf into a memory stream.
 * Includes formats/base only. */
#include "svg.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== geometry ==== */

enum { W = 760, H = 480, ML = 84, MR = 40, MT = 72, MB = 64 };

typedef struct {
    double x0, x1, step; /* x axis range and tick step (in log2 units with log2) */
    int d0, d1;          /* y axis: decades 10^d0 .. 10^d1 */
    bool log2;
} axes;

/* the axis coordinate of a data x */
static double ax(const axes *a, double x) { return a->log2 ? (x > 0 ? log2(x) : NAN) : x; }

static double px(const axes *a, double x) { return ML + (ax(a, x) - a->x0) / (a->x1 - a->x0) * (W - ML - MR); }

/* series colours (a qualitative palette); series 0 is the one of single-series plots */
static const char *const k_colour[8] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                        "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
static const char *colour(int series) { return k_colour[(unsigned)series % 8]; }

static double py(const axes *a, double y)
{
    double l = y > 0 && isfinite(y) ? log10(y) : a->d0;
    if (l < a->d0) l = a->d0;
    if (l > a->d1) l = a->d1;
    return H - MB - (l - a->d0) / (double)(a->d1 - a->d0) * (H - MT - MB);
}

static void set_axes(const smelt_svg_plot *p, axes *a)
{
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    a->log2 = p->log2_x;
    for (size_t i = 0; i < p->n; i++) {
        double x = ax(a, p->pts[i].x), y = p->pts[i].y;
        if (isfinite(x)) {
            xmin = fmin(xmin, x);
            xmax = fmax(xmax, x);
        }
        if (y > 0 && isfinite(y)) {
            ymin = fmin(ymin, y);
            ymax = fmax(ymax, y);
        }
    }
    if (!isfinite(xmin)) xmin = 0, xmax = 16;
    a->x0 = floor(xmin) - (xmin - floor(xmin) < 0.25 ? 0.5 : 0);
    a->x1 = ceil(xmax) + (ceil(xmax) - xmax < 0.25 ? 0.5 : 0);
    if (a->x1 - a->x0 < 1) a->x0 -= 0.5, a->x1 += 0.5;
    double span = a->x1 - a->x0;
    a->step = span <= 8 ? 1 : span <= 16 ? 2 : span <= 40 ? 4 : ceil(span / 10);
    if (!isfinite(ymin)) ymin = 1.5e-6, ymax = 1.5e-6;
    a->d0 = (int)floor(log10(ymin));
    a->d1 = (int)ceil(log10(ymax));
    if (a->d1 <= a->d0) a->d1 = a->d0 + 1;
}

/* ==== text ==== */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static int utf8_len(const unsigned char *s)
{
    if (s[0] < 0x80) return 1;
    int n = s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 && s[0] <= 0xdf ? 2 : 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return n;
}

/* XML character data: escaped, control characters and invalid UTF-8 as '?' */
static void xml_text(FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        int n = utf8_len(p);
        if (n == 0 || (n == 1 && *p < 0x20 && *p != '\t' && *p != '\n')) {
            fputc('?', f);
            p++;
            continue;
        }
        switch (*p) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default: fwrite(p, 1, (size_t)n, f);
        }
        p += n;
    }
}

static void decade_label(char *buf, size_t n, int d)
{
    if (d >= -3 && d <= 3) snprintf(buf, n, "%g", pow(10, d));
    else snprintf(buf, n, "1e%d", d);
}

/* ==== the document ==== */

/* Labels right of their points (left of those near the right edge), at the point's
 * height; a label that would overlap one already placed moves down below it. */
typedef struct {
    double x0, x1, y; /* box: x range, baseline */
} lbox;

static int cmp_y(const void *a, const void *b)
{
    const lbox *p = a, *q = b;
    return p->y < q->y ? -1 : p->y > q->y ? 1 : 0;
}

static void place_labels(FILE *f, const axes *a, const smelt_svg_point *const *order, size_t n, double right)
{
    typedef struct {
        lbox b;
        double X;
        const char *s;
        bool end;
    } lab;
    lab *L = malloc((n ? n : 1) * sizeof *L);
    if (!L) return;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const smelt_svg_point *q = order[i];
        if (!q->label || !isfinite(q->x)) continue;
        if (!isfinite(ax(a, q->x))) continue;
        double X = px(a, q->x), w = 7.0 * (double)strlen(q->label);
        bool end = X + 8 + w > right;
        L[k].b = end ? (lbox){X - 8 - w, X - 8, py(a, q->y) + 4} : (lbox){X + 8, X + 8 + w, py(a, q->y) + 4};
        L[k].X = X;
        L[k].s = q->label;
        L[k].end = end;
        k++;
    }
    /* stable order by height, then push down on overlap */
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j > 0 && cmp_y(&L[j - 1].b, &L[j].b) > 0; j--) {
            lab t = L[j];
            L[j] = L[j - 1];
            L[j - 1] = t;
        }
    for (size_t i = 0; i < k; i++) {
        for (size_t j = 0; j < i; j++)
            if (L[j].b.x0 < L[i].b.x1 && L[i].b.x0 < L[j].b.x1 && L[i].b.y < L[j].b.y + 14) L[i].b.y = L[j].b.y + 14;
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"%s\">", L[i].end ? L[i].b.x1 : L[i].b.x0,
                L[i].b.y, L[i].end ? "end" : "start");
        xml_text(f, L[i].s);
        fprintf(f, "</text>\n");
    }
    free(L);
}


static int cmp_x(const void *a, const void *b)
{
    const smelt_svg_point *p = *(const smelt_svg_point *const *)a, *q = *(const smelt_svg_point *const *)b;
    return p->x < q->x ? -1 : p->x > q->x ? 1 : 0;
}

int smelt_svg_render(const smelt_svg_plot *p, char **out, size_t *len, smelt_err *e)
{
    *out = NULL;
    *len = 0;
    char *buf = NULL;
    size_t n = 0;
    const smelt_svg_point **order = malloc((p->n ? p->n : 1) * sizeof *order);
    FILE *f = order ? open_memstream(&buf, &n) : NULL;
    if (!f) {
        free(order);
        return SMELT_NOMEM(e, "the SVG document");
    }
    for (size_t i = 0; i < p->n; i++) order[i] = &p->pts[i];
    qsort(order, p->n, sizeof *order, cmp_x);
    axes a;
    set_axes(p, &a);
    const double left = ML, right = W - MR, top = MT, bottom = H - MB;

    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
               "font-family=\"Helvetica, Arial, sans-serif\">\n", W, H, W, H);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", W, H);
    fprintf(f, "<text x=\"%d\" y=\"28\" font-size=\"17\" font-weight=\"bold\" text-anchor=\"middle\">", W / 2);
    xml_text(f, p->title);
    fprintf(f, "</text>\n");
    if (p->subtitle) {
        fprintf(f, "<text x=\"%d\" y=\"50\" font-size=\"13\" fill=\"#444444\" text-anchor=\"middle\">", W / 2);
        xml_text(f, p->subtitle);
        fprintf(f, "</text>\n");
    }

    /* grid: decades (and their 2..9 multiples, lighter) and x ticks */
    fprintf(f, "<g stroke-width=\"1\">\n");
    for (int d = a.d0; d <= a.d1; d++) {
        double y = py(&a, pow(10, d));
        char lab[32];
        decade_label(lab, sizeof lab, d);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#cccccc\"/>\n", left, y, right, y);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"end\" stroke=\"none\">%s</text>\n",
                left - 6, y + 4, lab);
        for (int k = 2; d < a.d1 && k <= 9; k++) {
            double ym = py(&a, k * pow(10, d));
            fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eeeeee\"/>\n", left, ym, right,
                    ym);
        }
    }
    for (double x = ceil(a.x0 / a.step) * a.step; x <= a.x1 + 1e-9; x += a.step) {
        double v = a.log2 ? pow(2, x) : x, X = px(&a, v);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eeeeee\"/>\n", X, top, X, bottom);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" stroke=\"none\">%g</text>\n", X,
                bottom + 18, v);
    }
    fprintf(f, "</g>\n");
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333333\"/>\n", left,
            top, right - left, bottom - top);
    fprintf(f, "<text x=\"%.1f\" y=\"%d\" font-size=\"13\" text-anchor=\"middle\">", (left + right) / 2, H - 18);
    xml_text(f, p->xlabel);
    fprintf(f, "</text>\n");
    fprintf(f, "<text x=\"18\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.1f)\">",
            (top + bottom) / 2, (top + bottom) / 2);
    xml_text(f, p->ylabel);
    fprintf(f, "</text>\n");

    /* a line through each series' points, then the points and their labels */
    for (int sr = 0; p->connect && sr < 8; sr++) {
        size_t k = 0;
        for (size_t i = 0; i < p->n; i++) {
            const smelt_svg_point *q = order[i];
            if (q->series % 8 != sr || !isfinite(ax(&a, q->x)) || !(q->y > 0) || !isfinite(q->y)) continue;
            if (!k++)
                fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-opacity=\"0.5\" stroke-width=\"1.5\" points=\"",
                        colour(sr));
            else
                fputc(' ', f);
            fprintf(f, "%.1f,%.1f", px(&a, q->x), py(&a, q->y));
        }
        if (k) fprintf(f, "\"/>\n");
    }
    for (size_t i = 0; i < p->n; i++) {
        const smelt_svg_point *q = order[i];
        if (!isfinite(ax(&a, q->x))) continue;
        double X = px(&a, q->x), Y = py(&a, q->y);
        bool real = q->y > 0 && isfinite(q->y);
        if (q->highlight)
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"9\" height=\"9\" fill=\"%s\" stroke=\"#d62728\" "
                       "stroke-width=\"1.5\"/>\n", X - 4.5, Y - 4.5, real ? "#d62728" : "#ffffff");
        else
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4.5\" fill=\"%s\" stroke=\"%s\" stroke-width=\"1.5\"/>\n",
                    X, Y, real ? colour(q->series) : "#ffffff", colour(q->series));
    }
    place_labels(f, &a, order, p->n, right);
    fprintf(f, "</svg>\n");
    free(order);
    if (fclose(f) != 0 || !buf) {
        free(buf);
        return SMELT_NOMEM(e, "the SVG document");
    }
    *out = buf;
    *len = n;
    return 0;
}
