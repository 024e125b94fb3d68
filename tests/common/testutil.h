/* testutil.h — helpers shared by smelt's Criterion tests: repository paths, temporary
 * directories, running tools, and loading llama.cpp's libraries as an oracle. */
#ifndef SMELT_TESTUTIL_H
#define SMELT_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Absolute path of `rel` inside the repository (SMELT_ROOT or the current directory). */
void tu_path(char *buf, size_t n, const char *rel);
/* Absolute path of a tool: $SMELT_BIN/name (bin/ by default). */
void tu_tool(char *buf, size_t n, const char *name);
/* Create a fresh temporary directory (under $TMPDIR or /tmp); returns 0 on success. */
int tu_mkdtemp(char *buf, size_t n);
/* Remove a directory tree. */
void tu_rmtree(const char *dir);
/* Run a shell command, capturing stdout+stderr into *out (malloc'd, NUL-terminated;
 * may be NULL). Returns the exit status, or -1 if it could not run / was killed. */
int tu_run(const char *cmd, char **out);
/* Read a whole file (malloc'd); NULL on error. */
uint8_t *tu_read(const char *path, size_t *len);
int tu_write(const char *path, const void *p, size_t n);
/* Byte-compare two files: 0 equal, 1 different, -1 error. */
int tu_cmp_files(const char *a, const char *b);

/* ==== llama.cpp oracle (node-llama-cpp's prebuilt libraries) ==== */

/* Directory holding libggml-base.so / libllama.so, or NULL if not installed. Looks at
 * $SMELT_ORACLE_LIBDIR, then .oracle/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64. */
const char *tu_oracle_libdir(void);
/* The oracle's libraries, each dlopen()ed once (RTLD_NOW | RTLD_GLOBAL) and kept open for
 * the process — the only place the tests open them. */
/* libggml-base.so, or NULL. */
void *tu_oracle_ggml(void);
/* dlopen()ed libllama, or NULL. */
void *tu_oracle_llama(void);
/* ggml's backends registered from the oracle's directory (what libllama needs before it
 * loads a model); false when the libraries are missing. Once per process. */
int tu_oracle_load_backends(void);
/* The llama.cpp source tree cloned from the bundle (.oracle/llama.cpp-src), or NULL. */
const char *tu_oracle_src(void);

#endif
