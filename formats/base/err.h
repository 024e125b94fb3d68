/* err.h — smelt's error record: a caller-owned struct every fallible call fills.
 * Layer: formats/base (bottom). Includes libc only.
 * A message names the file, the object (tensor or key), the byte offset when one is
 * known, what was expected and what was found. Library code never prints. */
#ifndef SMELT_ERR_H
#define SMELT_ERR_H

#include <stdint.h>
#include <stdio.h>

/* Codes: 0 is success, every error is negative. Each maps to its own exit status. */
enum {
    SMELT_OK = 0,
    SMELT_EIO = -1,          /* open/read/write/rename failed (errno text in msg) */
    SMELT_ENOMEM = -2,       /* allocation failed */
    SMELT_EFORMAT = -3,      /* input is malformed / corrupt */
    SMELT_EUNSUPPORTED = -4, /* input is valid but not handled */
    SMELT_EMISMATCH = -5,    /* inputs do not fit together (shapes, vocab, names) */
    SMELT_EUSAGE = -6,       /* bad command line or option value */
    SMELT_EINTERNAL = -7,    /* a bug in smelt */
};

#define SMELT_NO_OFFSET UINT64_MAX

typedef struct smelt_err {
    int code;
    char file[256];     /* input or output path the error is about ("" if none) */
    char object[160];   /* tensor / key / entry name ("" if none) */
    uint64_t offset;    /* byte offset in file, SMELT_NO_OFFSET if none */
    char msg[512];      /* what was expected and what was found */
    const char *src;    /* smelt source file that detected it (developers only) */
    int src_line;
} smelt_err;

/* Reset to "no error". Safe on NULL. */
void smelt_err_clear(smelt_err *e);

/* Fill *e (if non-NULL) and return code. file/object may be NULL. */
int smelt_err_set_(smelt_err *e, int code, const char *file, const char *object,
                   uint64_t offset, const char *src, int line, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));

/* Append " (context)" style text to an existing message, e.g. "while merging X". */
void smelt_err_prefix(smelt_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define SMELT_ERR(e, code, file, obj, ...) \
    smelt_err_set_((e), (code), (file), (obj), SMELT_NO_OFFSET, __FILE__, __LINE__, __VA_ARGS__)
#define SMELT_ERR_AT(e, code, file, off, obj, ...) \
    smelt_err_set_((e), (code), (file), (obj), (off), __FILE__, __LINE__, __VA_ARGS__)
/* Malformed input detected at byte `off` of `file` (cf. SQLITE_CORRUPT_BKPT). */
#define SMELT_CORRUPT(e, file, off, obj, ...) \
    smelt_err_set_((e), SMELT_EFORMAT, (file), (obj), (off), __FILE__, __LINE__, __VA_ARGS__)
#define SMELT_NOMEM(e, what) \
    smelt_err_set_((e), SMELT_ENOMEM, NULL, NULL, SMELT_NO_OFFSET, __FILE__, __LINE__, \
                   "out of memory allocating %s", (what))

/* One line: "FILE: tensor 'X' @ byte 0x1f40 (8000): MSG". Kind of object is not guessed;
 * the object is quoted as given. Writes at most n bytes (NUL-terminated). */
void smelt_err_format(const smelt_err *e, char *buf, size_t n);
/* "smelt-tool: error: <formatted>\n" to f; adds "[src:line]" when SMELT_DEBUG is set. */
void smelt_err_print(const smelt_err *e, const char *tool, FILE *f);
/* Exit status for a code: 0 ok, 1 io, 2 usage, 3 format, 4 unsupported, 5 mismatch,
 * 6 nomem, 70 internal. */
int smelt_err_exit_status(int code);
const char *smelt_err_code_name(int code);

#endif
