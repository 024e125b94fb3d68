/* tool.h — the skeleton every smelt tool main shares: the common options (-q, --json,
 * --help, --version), the warning sink handed to the library, the progress renderer, and
 * the error tail (one line on stderr, the exit status of docs/errors.md).
 * Layer: formats/tool (linked into the mains only, never into libsmelt.a).
 *
 * A main is its own options plus one library call:
 *
 *     smelt_tool t;
 *     smelt_tool_init(&t, "smelt-x", usage);
 *     static const struct option lo[] = {{"output", required_argument, 0, 'o'}, SMELT_TOOL_OPTIONS, {0}};
 *     while ((c = getopt_long(argc, argv, "o:qh", lo, NULL)) != -1) {
 *         int st = smelt_tool_option(&t, c, optarg);
 *         if (st == SMELT_TOOL_OPTION_TAKEN) continue;
 *         if (st != SMELT_TOOL_OPTION_OTHER) return st;     // --help, --version, unknown option
 *         switch (c) { case 'o': ...; }
 *     }
 *     smelt_tool_start(&t, "converting");                  // file safety + progress renderer
 *     opts.notes = smelt_tool_notes(&t);  opts.progress = &t.progress;
 *     int rc = smelt_x_run(&opts, &result, &e);
 *     if (rc) return smelt_tool_fail(&t, rc, &e);
 *     ...print the result (smelt_cli_print_json with --json)...
 *     smelt_tool_end(&t); */
#ifndef SMELT_TOOL_H
#define SMELT_TOOL_H

#include <getopt.h>
#include <jansson.h>

#include "formats/base/err.h"
#include "formats/base/notes.h"
#include "formats/base/progress.h"
#include "formats/tool/cli.h"
#include "formats/tool/progress_term.h"

/* getopt codes of the common long options (no short letter but -q and -h). */
enum { SMELT_TOOL_OPT_JSON = 0x7f00, SMELT_TOOL_OPT_VERSION };

/* The common entries of a main's `struct option` array. */
#define SMELT_TOOL_OPTIONS                                                                                        \
    {"json", no_argument, 0, SMELT_TOOL_OPT_JSON}, {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, \
        {"version", no_argument, 0, SMELT_TOOL_OPT_VERSION}

typedef struct smelt_tool {
    const char *name;     /* "smelt-convert": the prefix of every line the tool prints on stderr */
    void (*usage)(void);  /* prints --help */
    int quiet;            /* -q: no progress and no summary; warnings and errors still print */
    int json;             /* --json: the result as JSON on stdout */
    smelt_progress progress; /* hand &progress to the library */
    smelt_progress_term term;
    /* option groups a main takes, set before parsing (NULL: not this tool's) */
    const smelt_cli_eval *eval;  /* -c, --chunks, -b, -t of the evaluation tools */
    smelt_cli_split *split;      /* --split-max-size, --split-max-tensors */
    int stdout_mid_line;  /* the main left stdout inside a line (streamed values): an error
                             ends that line first */
    json_t *warnings;     /* with --json: every warning so far (NULL before the first), for the
                             result's "warnings" array */
} smelt_tool;

void smelt_tool_init(smelt_tool *t, const char *name, void (*usage)(void));

enum { SMELT_TOOL_OPTION_OTHER = -1, SMELT_TOOL_OPTION_TAKEN = -2 };
/* Handle a common option or one of the groups set in t (eval, split): -q, --json and a
 * group's valid option are recorded (SMELT_TOOL_OPTION_TAKEN); --help and --version print
 * and give 0, an unknown option ('?' or ':') or a bad value prints the usage error and
 * gives 2 — the exit status the main returns at once; any other code gives
 * SMELT_TOOL_OPTION_OTHER (the main's own option). */
int smelt_tool_option(smelt_tool *t, int code, const char *arg);

/* After parsing: the signal handlers that remove temporaries (smelt_tool_install_file_safety)
 * and the progress renderer, "VERB i/N …" (silent with -q). */
void smelt_tool_start(smelt_tool *t, const char *verb);

/* The notes sink for a library's options: each note prints as "TOOL: warning: MSG" on
 * stderr (clearing a progress line first) and, with --json, joins t->warnings. */
smelt_notes smelt_tool_notes(smelt_tool *t);
/* The same for notes that are progress or status, not warnings: "TOOL: MSG", silent with -q,
 * never in the JSON. */
smelt_notes smelt_tool_status(smelt_tool *t);

/* A warning of the main's own, printed and collected as the library's notes are. */
void smelt_tool_warn(smelt_tool *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A note of the main's own, "TOOL: note: MSG": something the user may not expect but that
 * is not wrong. Silent with -q, never in the JSON. */
void smelt_tool_note(smelt_tool *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* After a write with --allow-nonfinite: "TOOL: warning: wrote N NaN/Inf value(s) in M
 * tensor(s) (--allow-nonfinite)"; nothing when n is 0. */
void smelt_tool_warn_nonfinite(smelt_tool *t, unsigned long long n, unsigned long long tensors);

/* Print a result as JSON on stdout (smelt_cli_print_json), with the warnings so far as its
 * "warnings" array when there were any. */
int smelt_tool_print_json(const smelt_tool *t, json_t *j, size_t flags);

/* Clear the progress line (a terminal's), if one is drawn. */
void smelt_tool_clear_line(const smelt_tool *t);

/* The error tail: end a streamed stdout line, clear the progress line, print e as one
 * line, end the tool (as
 * smelt_tool_end), return the exit status. */
int smelt_tool_fail(smelt_tool *t, int rc, const smelt_err *e);

/* Free what the skeleton holds (the warnings array). */
void smelt_tool_end(smelt_tool *t);

#endif
