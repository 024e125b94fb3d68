/* tool.c — the skeleton shared by the tool mains (tool.h). */
#include "tool.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "formats/base/file.h"

void smelt_tool_init(smelt_tool *t, const char *name, void (*usage)(void))
{
    memset(t, 0, sizeof *t);
    t->name = name;
    t->usage = usage;
}

int smelt_tool_option(smelt_tool *t, int code, const char *arg)
{
    if (t->eval) {
        int r = smelt_cli_eval_opt(t->name, code, arg, t->eval);
        if (r == 1) return SMELT_TOOL_OPTION_TAKEN;
        if (r) return r;
    }
    if (t->split) {
        int r = smelt_cli_split_opt(t->name, code, arg, t->split);
        if (r == 1) return SMELT_TOOL_OPTION_TAKEN;
        if (r) return r;
    }
    switch (code) {
    case 'q': t->quiet = 1; return SMELT_TOOL_OPTION_TAKEN;
    case SMELT_TOOL_OPT_JSON: t->json = 1; return SMELT_TOOL_OPTION_TAKEN;
    case 'h': t->usage(); return 0;
    case SMELT_TOOL_OPT_VERSION: smelt_cli_version(t->name); return 0;
    case '?':
    case ':': return smelt_cli_usage_error(t->name, "unknown option");
    default: return SMELT_TOOL_OPTION_OTHER;
    }
}

void smelt_tool_start(smelt_tool *t, const char *verb)
{
    smelt_tool_install_file_safety(t->name);
    smelt_progress_term_init(&t->term, &t->progress, verb, t->quiet);
}

void smelt_tool_clear_line(const smelt_tool *t)
{
    if (!t->term.quiet && t->term.tty) fputs("\r\033[K", stderr);
}

static void print_warning(void *user, const char *msg)
{
    smelt_tool *t = user;
    smelt_tool_clear_line(t);
    fprintf(stderr, "%s: warning: %s\n", t->name, msg);
    if (t->json && !t->warnings) t->warnings = json_array();
    if (t->warnings) json_array_append_new(t->warnings, json_string(msg));
}

static void print_status(void *user, const char *msg)
{
    smelt_tool *t = user;
    if (t->quiet) return;
    smelt_tool_clear_line(t);
    fprintf(stderr, "%s: %s\n", t->name, msg);
}

smelt_notes smelt_tool_notes(smelt_tool *t) { return (smelt_notes){print_warning, t}; }
smelt_notes smelt_tool_status(smelt_tool *t) { return (smelt_notes){print_status, t}; }

void smelt_tool_warn(smelt_tool *t, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    print_warning(t, msg);
}

void smelt_tool_note(smelt_tool *t, const char *fmt, ...)
{
    if (t->quiet) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    smelt_tool_clear_line(t);
    fprintf(stderr, "%s: note: %s\n", t->name, msg);
}

void smelt_tool_warn_nonfinite(smelt_tool *t, unsigned long long n, unsigned long long tensors)
{
    if (n)
        smelt_tool_warn(t, "wrote %llu NaN/Inf value%s in %llu tensor%s (--allow-nonfinite)", n, n == 1 ? "" : "s",
                        tensors, tensors == 1 ? "" : "s");
}

int smelt_tool_print_json(const smelt_tool *t, json_t *j, size_t flags)
{
    if (t->warnings && !json_object_get(j, "warnings")) json_object_set(j, "warnings", t->warnings);
    return smelt_cli_print_json(j, flags);
}

int smelt_tool_fail(smelt_tool *t, int rc, const smelt_err *e)
{
    if (t->stdout_mid_line) {
        putchar('\n');
        fflush(stdout);
    }
    smelt_tool_clear_line(t);
    smelt_err_print(e, t->name, stderr);
    smelt_tool_end(t);
    return smelt_err_exit_status(rc);
}

void smelt_tool_end(smelt_tool *t)
{
    json_decref(t->warnings);
    t->warnings = NULL;
}
