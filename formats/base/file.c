/* file.c — mmap inputs, temp+rename outputs, small file helpers, and the tool mains' signal
 * handlers for both. Includes base/ only. */
#include "file.h"
#include "ckd.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ==== process-wide state ====
 * The only process-wide state in smelt, all of it for the handlers that
 * smelt_tool_install_file_safety() installs: the open temporary files and directories (removed
 * when a signal ends the run), the mapped inputs (so that a SIGBUS can be traced to the file
 * that changed under it), the tool name, and the notice hook. The tables are fixed-size;
 * registering takes a mutex, the handlers only read. */

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *g_tool = "smelt";
static _Atomic(smelt_file_notice_fn) g_notice;

void smelt_file_set_notice(smelt_file_notice_fn fn) { atomic_store(&g_notice, fn); }

static void notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void notice(const char *fmt, ...)
{
    smelt_file_notice_fn fn = atomic_load(&g_notice);
    if (!fn) return;
    char msg[8400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fn(msg);
}

/* Mapped inputs. A mapping beyond the table's capacity still works; a fault in it is then a
 * plain SIGBUS crash, as without the handler. */
#define MAX_MAPS 256
typedef struct {
    const uint8_t *start;
    uint64_t len;
    const char *path; /* the smelt_map's own copy, freed only after unregistering */
} map_entry;
static map_entry g_maps[MAX_MAPS];
static atomic_int g_map_used[MAX_MAPS];

static void map_register(const smelt_map *m)
{
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_MAPS; i++)
        if (!atomic_load(&g_map_used[i])) {
            g_maps[i].start = m->data;
            g_maps[i].len = m->size;
            g_maps[i].path = m->path;
            atomic_store(&g_map_used[i], 1); /* published after the fields */
            break;
        }
    pthread_mutex_unlock(&g_lock);
}

static void map_unregister(const smelt_map *m)
{
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_MAPS; i++)
        if (atomic_load(&g_map_used[i]) && g_maps[i].start == m->data) {
            atomic_store(&g_map_used[i], 0);
            break;
        }
    pthread_mutex_unlock(&g_lock);
}

/* ==== mapping ==== */

static const char *kind_of(mode_t mode)
{
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a file or directory";
}

static int refuse_kind(const struct stat *st, const char *path, smelt_err *e)
{
    if (S_ISDIR(st->st_mode)) return SMELT_ERR(e, SMELT_EIO, path, NULL, "is a directory, expected a file");
    return SMELT_ERR(e, SMELT_EIO, path, NULL, "not a regular file (it is %s)", kind_of(st->st_mode));
}

int smelt_check_regular_file(const char *path, smelt_err *e)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT) return SMELT_ERR(e, SMELT_EIO, path, NULL, "no such file or directory");
        return SMELT_ERR(e, SMELT_EIO, path, NULL, "cannot stat: %s", strerror(errno));
    }
    return S_ISREG(st.st_mode) ? 0 : refuse_kind(&st, path, e);
}

/* Open for reading without blocking on a FIFO (O_NONBLOCK), then refuse anything but a
 * regular file. */
static int open_regular(const char *path, int *fd_out, struct stat *st, smelt_err *e)
{
    *fd_out = -1;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int er = errno;
        struct stat ls;
        if (stat(path, &ls) == 0 && !S_ISREG(ls.st_mode)) return refuse_kind(&ls, path, e); /* a socket: ENXIO */
        return SMELT_ERR(e, SMELT_EIO, path, NULL, "cannot open: %s", strerror(er));
    }
    if (fstat(fd, st) != 0) {
        int er = errno;
        close(fd);
        return SMELT_ERR(e, SMELT_EIO, path, NULL, "cannot stat: %s", strerror(er));
    }
    if (!S_ISREG(st->st_mode)) {
        close(fd);
        return refuse_kind(st, path, e);
    }
    *fd_out = fd;
    return 0;
}

int smelt_map_open(smelt_map *m, const char *path, smelt_err *e)
{
    memset(m, 0, sizeof *m);
    struct stat st;
    int fd;
    int rc = open_regular(path, &fd, &st, e);
    if (rc) return rc;
    m->path = strdup(path);
    if (!m->path) {
        close(fd);
        return SMELT_NOMEM(e, "path");
    }
    m->size = (uint64_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, (size_t)m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int er = errno;
            close(fd);
            free(m->path);
            memset(m, 0, sizeof *m);
            return SMELT_ERR(e, SMELT_EIO, path, NULL, "cannot map: %s", strerror(er));
        }
        m->data = p;
        map_register(m);
    }
    close(fd);
    return 0;
}

void smelt_map_close(smelt_map *m)
{
    if (!m) return;
    if (m->data) {
        map_unregister(m);
        munmap((void *)m->data, (size_t)m->size);
    }
    free(m->path);
    memset(m, 0, sizeof *m);
}

void smelt_map_release(const smelt_map *m, uint64_t off, uint64_t len)
{
    if (!m || !m->data || off >= m->size) return;
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t a = off / (uint64_t)pg * (uint64_t)pg;
    uint64_t end = off + len;
    if (end > m->size) end = m->size;
    end = end / (uint64_t)pg * (uint64_t)pg; /* only whole pages inside the range */
    if (end > a) madvise((void *)(m->data + a), (size_t)(end - a), MADV_DONTNEED);
}

void smelt_map_sequential(const smelt_map *m)
{
    if (m && m->data) madvise((void *)m->data, (size_t)m->size, MADV_SEQUENTIAL);
}

int smelt_read_file(const char *path, uint64_t max_bytes, char **out, size_t *out_len,
                    smelt_err *e)
{
    *out = NULL;
    if (out_len) *out_len = 0;
    struct stat st;
    int fd;
    int rc = open_regular(path, &fd, &st, e);
    if (rc) return rc;
    if ((uint64_t)st.st_size > max_bytes) {
        close(fd);
        return SMELT_ERR(e, SMELT_EFORMAT, path, NULL, "file is %llu bytes, limit is %llu",
                         (unsigned long long)st.st_size, (unsigned long long)max_bytes);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return SMELT_NOMEM(e, path);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int er = errno;
            free(buf);
            close(fd);
            return SMELT_ERR(e, SMELT_EIO, path, NULL, "read failed: %s",
                             r == 0 ? "unexpected end of file" : strerror(er));
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    if (out_len) *out_len = n;
    return 0;
}

int smelt_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int smelt_nondir_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && !S_ISDIR(st.st_mode);
}

int smelt_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void dir_of(const char *path, char *buf, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(buf, n, ".");
    } else if (slash == path) {
        snprintf(buf, n, "/");
    } else {
        size_t l = (size_t)(slash - path);
        if (l >= n) l = n - 1;
        memcpy(buf, path, l);
        buf[l] = 0;
    }
}

uint64_t smelt_fs_free_bytes(const char *path)
{
    const char *assume = getenv("SMELT_ASSUME_FREE_BYTES");
    if (assume && *assume) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(assume, &end, 10);
        if (!errno && !*end && *assume != '-') return (uint64_t)v;
    }
    char dir[4096];
    if (smelt_is_dir(path))
        snprintf(dir, sizeof dir, "%s", path);
    else
        dir_of(path, dir, sizeof dir);
    struct statvfs vs;
    if (statvfs(dir, &vs) != 0) return UINT64_MAX;
    return (uint64_t)vs.f_bavail * (uint64_t)vs.f_frsize;
}

int smelt_fs_check_space(const char *path, uint64_t need, uint64_t assume_free, smelt_err *e)
{
    uint64_t free_b = assume_free ? assume_free : smelt_fs_free_bytes(path);
    if (free_b == UINT64_MAX || free_b >= need) return 0;
    return SMELT_ERR(e, SMELT_EIO, path, NULL,
                     "not enough free space: the output needs %" PRIu64 " bytes (%.2f GB), the filesystem has %" PRIu64
                     " bytes (%.2f GB) free",
                     need, (double)need / 1e9, free_b, (double)free_b / 1e9);
}

int smelt_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) != 0 || stat(b, &sb) != 0) return 0;
    return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

char *smelt_path_join(char *buf, size_t n, const char *dir, const char *name)
{
    int k;
    if (!dir || !dir[0])
        k = snprintf(buf, n, "%s", name);
    else if (dir[strlen(dir) - 1] == '/')
        k = snprintf(buf, n, "%s%s", dir, name);
    else
        k = snprintf(buf, n, "%s/%s", dir, name);
    return (k < 0 || (size_t)k >= n) ? NULL : buf;
}

/* ==== temporary files and directories: registry, stale ones, removal ==== */

#define MAX_TMP 64
static char g_tmp_paths[MAX_TMP][4096];
static volatile sig_atomic_t g_tmp_used[MAX_TMP];
#define MAX_TMPDIRS 8
static char g_dir_paths[MAX_TMPDIRS][4096];
static volatile sig_atomic_t g_dir_used[MAX_TMPDIRS];

static int slot_register(char (*paths)[4096], volatile sig_atomic_t *used, int cap, const char *p)
{
    pthread_mutex_lock(&g_lock);
    int slot = -1;
    for (int i = 0; i < cap; i++)
        if (!used[i]) {
            snprintf(paths[i], sizeof paths[i], "%s", p);
            atomic_thread_fence(memory_order_release); /* the path before the flag */
            used[i] = 1;
            slot = i;
            break;
        }
    pthread_mutex_unlock(&g_lock);
    return slot;
}

static void slot_unregister(volatile sig_atomic_t *used, int slot)
{
    if (slot < 0) return;
    pthread_mutex_lock(&g_lock);
    used[slot] = 0;
    pthread_mutex_unlock(&g_lock);
}

/* Remove everything inside the open directory dfd, without following symbolic links.
 * Async-signal-safe (openat, unlinkat and the getdents64 system call only), so the signal
 * handlers use it too; nesting deeper than 16 levels is left in place. */
struct dirent64_raw {
    uint64_t ino;
    int64_t off;
    unsigned short reclen;
    unsigned char type;
    char name[];
};

static void remove_entries(int dfd, int depth)
{
#ifdef SYS_getdents64
    /* a removed entry can shift the directory's remaining entries: rescan until a pass
     * removes nothing */
    for (int pass = 0; pass < 64; pass++) {
        int removed = 0;
        _Alignas(8) char buf[4096];
        lseek(dfd, 0, SEEK_SET);
        for (;;) {
            long n = syscall(SYS_getdents64, dfd, buf, sizeof buf);
            if (n <= 0) break;
            for (long off = 0; off < n;) {
                const struct dirent64_raw *d = (const struct dirent64_raw *)(buf + off);
                off += d->reclen;
                const char *nm = d->name;
                if (nm[0] == '.' && (!nm[1] || (nm[1] == '.' && !nm[2]))) continue;
                if (unlinkat(dfd, nm, 0) == 0) {
                    removed = 1;
                    continue;
                }
                if ((errno != EISDIR && errno != EPERM) || depth >= 16) continue;
                int sub = openat(dfd, nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0) continue;
                remove_entries(sub, depth + 1);
                close(sub);
                if (unlinkat(dfd, nm, AT_REMOVEDIR) == 0) removed = 1;
            }
        }
        if (!removed) break;
    }
#else
    (void)dfd;
    (void)depth;
#endif
}

/* Remove the directory `path` and its contents (a symbolic link is not followed). */
static int remove_tree(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    remove_entries(fd, 0);
    close(fd);
    return rmdir(path);
}

/* Every registered temporary file and directory, from a signal handler. */
static void remove_temporaries(void)
{
    for (int i = 0; i < MAX_TMP; i++)
        if (g_tmp_used[i]) unlink(g_tmp_paths[i]);
    for (int i = 0; i < MAX_TMPDIRS; i++)
        if (g_dir_used[i]) remove_tree(g_dir_paths[i]);
}

/* If `name` is `.LEAF.smelt-tmp-PID-XXXXXX` (XXXXXX: six letters or digits, as mkstemp and
 * mkdtemp make them) for this LEAF, the PID; otherwise 0. */
static long tmp_name_pid(const char *name, const char *leaf)
{
    size_t ll = strlen(leaf);
    if (name[0] != '.' || strncmp(name + 1, leaf, ll) || strncmp(name + 1 + ll, ".smelt-tmp-", 11)) return 0;
    const char *p = name + 1 + ll + 11;
    long pid = 0;
    int digits = 0;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        if (digits >= 9) return 0;
        pid = pid * 10 + (*p - '0');
    }
    if (!digits || *p != '-') return 0;
    p++;
    for (int i = 0; i < 6; i++, p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))) return 0;
    return *p ? 0 : pid;
}

/* Remove `.LEAF.smelt-tmp-PID-*` entries in `dir` whose process is gone: regular files
 * (want_dir 0) or directories (want_dir 1). `shown_dir` prefixes the names in notices ("" for
 * the current directory). A process that exists but belongs to someone else (EPERM) is alive. */
static void remove_stale(const char *dir, const char *shown_dir, const char *leaf, int want_dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        long pid = tmp_name_pid(de->d_name, leaf);
        if (pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char p[8300];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) != 0 || (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))) continue;
        if (want_dir ? remove_tree(p) != 0 : unlink(p) != 0) continue;
        size_t sl = strlen(shown_dir);
        notice("removed stale temporary %s %s%s%s left by an interrupted run (pid %ld)", want_dir ? "directory" : "file",
               shown_dir, sl && shown_dir[sl - 1] != '/' ? "/" : "", de->d_name, pid);
    }
    closedir(d);
}

/* Split `path` (trailing slashes ignored) into its directory, the directory as the user wrote
 * it ("" when there is none), and its last component. */
static int split_target(const char *path, char *dir, char *shown, size_t dn, char *leaf, size_t ln)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) return -1;
    size_t l = strlen(p);
    while (l > 1 && p[l - 1] == '/') p[--l] = 0;
    char *slash = strrchr(p, '/');
    if (!slash) {
        snprintf(dir, dn, ".");
        shown[0] = 0;
        return snprintf(leaf, ln, "%s", p) >= (int)ln ? -1 : 0;
    }
    if (snprintf(leaf, ln, "%s", slash + 1) >= (int)ln) return -1;
    if (slash == p) slash[1] = 0;
    else *slash = 0;
    snprintf(dir, dn, "%s", p);
    snprintf(shown, dn, "%s", p);
    return 0;
}

int smelt_tmpdir_create(const char *target, char *out, size_t n, smelt_err *e)
{
    char dir[4096], shown[4096], leaf[256];
    if (split_target(target, dir, shown, sizeof dir, leaf, sizeof leaf) || !leaf[0] || !strcmp(leaf, "/"))
        return SMELT_ERR(e, SMELT_EUSAGE, target, NULL, "bad output directory name");
    remove_stale(dir, shown, leaf, 1);
    int k = snprintf(out, n, "%s/.%s.smelt-tmp-%ld-XXXXXX", dir, leaf, (long)getpid());
    if (k < 0 || (size_t)k >= n || (size_t)k >= sizeof g_dir_paths[0])
        return SMELT_ERR(e, SMELT_EUSAGE, target, NULL, "output directory name too long");
    if (!mkdtemp(out))
        return SMELT_ERR(e, SMELT_EIO, dir, NULL, "cannot create a temporary directory: %s", strerror(errno));
    if (slot_register(g_dir_paths, g_dir_used, MAX_TMPDIRS, out) < 0) {
        rmdir(out);
        return SMELT_ERR(e, SMELT_EINTERNAL, out, NULL, "more than %d temporary directories at once", MAX_TMPDIRS);
    }
    return 0;
}

void smelt_tmpdir_forget(const char *path)
{
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_TMPDIRS; i++)
        if (g_dir_used[i] && !strcmp(g_dir_paths[i], path)) g_dir_used[i] = 0;
    pthread_mutex_unlock(&g_lock);
}

/* ==== signal handlers (async-signal-safe: write, stat, unlink, _exit and the like) ==== */

static void put_str(char *buf, size_t cap, size_t *len, const char *s)
{
    while (*s && *len + 1 < cap) buf[(*len)++] = *s++;
}

static void put_u64(char *buf, size_t cap, size_t *len, uint64_t v)
{
    char d[24];
    int k = 0;
    do d[k++] = (char)('0' + v % 10);
    while ((v /= 10) && k < 24);
    while (k && *len + 1 < cap) buf[(*len)++] = d[--k];
}

static void on_signal(int sig)
{
    remove_temporaries();
    signal(sig, SIG_DFL);
    raise(sig);
}

static atomic_flag g_bus_reported = ATOMIC_FLAG_INIT;

static void on_sigbus(int sig, siginfo_t *si, void *uctx)
{
    (void)uctx;
    const uint8_t *a = si ? (const uint8_t *)si->si_addr : NULL;
    int slot = -1;
    for (int i = 0; i < MAX_MAPS && a; i++)
        if (atomic_load(&g_map_used[i]) && a >= g_maps[i].start && (uint64_t)(a - g_maps[i].start) < g_maps[i].len) {
            slot = i;
            break;
        }
    if (slot < 0) {
        /* not a mapped input: a bug; crash as without the handler */
        remove_temporaries();
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    /* one report even when several threads fault at once; the others wait for _exit */
    if (atomic_flag_test_and_set(&g_bus_reported))
        for (;;) pause();
    const map_entry *m = &g_maps[slot];
    char msg[4800];
    size_t n = 0;
    put_str(msg, sizeof msg, &n, g_tool);
    put_str(msg, sizeof msg, &n, ": error: ");
    put_str(msg, sizeof msg, &n, m->path);
    put_str(msg, sizeof msg, &n, ": changed or truncated while reading (the read at byte ");
    put_u64(msg, sizeof msg, &n, (uint64_t)(a - m->start));
    put_str(msg, sizeof msg, &n, " failed; the file was ");
    put_u64(msg, sizeof msg, &n, m->len);
    struct stat st;
    if (stat(m->path, &st) == 0) {
        put_str(msg, sizeof msg, &n, " bytes when opened, ");
        put_u64(msg, sizeof msg, &n, (uint64_t)st.st_size);
        put_str(msg, sizeof msg, &n, " now)\n");
    } else {
        put_str(msg, sizeof msg, &n, " bytes when opened and is gone now)\n");
    }
    if (n + 1 >= sizeof msg) msg[n - 1] = '\n';
    for (size_t off = 0; off < n;) {
        ssize_t w = write(STDERR_FILENO, msg + off, n - off);
        if (w <= 0 && errno != EINTR) break;
        if (w > 0) off += (size_t)w;
    }
    remove_temporaries();
    _exit(1);
}

static void print_notice(const char *msg) { fprintf(stderr, "%s: note: %s\n", g_tool, msg); }

void smelt_tool_install_file_safety(const char *tool)
{
    if (tool && *tool) g_tool = tool;
    smelt_file_set_notice(print_notice);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}

/* ==== atomic output ==== */

#define OUTBUF (4u << 20)

struct smelt_outfile {
    int fd;
    int slot;
    char *target;
    char *tmp;
    uint8_t *buf;
    size_t used;
    uint64_t pos; /* logical position = bytes written so far */
};

int smelt_outfile_open(smelt_outfile **out, const char *path, smelt_err *e)
{
    *out = NULL;
    if (smelt_is_dir(path))
        return SMELT_ERR(e, SMELT_EUSAGE, path, NULL, "output path is a directory");
    smelt_outfile *o = calloc(1, sizeof *o);
    if (!o) return SMELT_NOMEM(e, "output file");
    o->fd = -1;
    o->slot = -1;
    char dir[4096], shown[4096], base[256];
    if (split_target(path, dir, shown, sizeof dir, base, sizeof base)) {
        free(o);
        return SMELT_ERR(e, SMELT_EUSAGE, path, NULL, "output file name too long");
    }
    remove_stale(dir, shown, base, 0);
    size_t tl = strlen(dir) + strlen(base) + 48;
    o->target = strdup(path);
    o->tmp = malloc(tl);
    o->buf = malloc(OUTBUF);
    if (!o->target || !o->tmp || !o->buf) {
        smelt_outfile_abort(o);
        return SMELT_NOMEM(e, "output file");
    }
    snprintf(o->tmp, tl, "%s/.%s.smelt-tmp-%ld-XXXXXX", dir, base, (long)getpid());
    o->fd = mkostemp(o->tmp, O_CLOEXEC);
    if (o->fd < 0) {
        int er = errno;
        free(o->tmp);
        o->tmp = NULL;
        smelt_outfile_abort(o);
        return SMELT_ERR(e, SMELT_EIO, path, NULL, "cannot create a temporary file in '%s': %s",
                         dir, strerror(er));
    }
    o->slot = slot_register(g_tmp_paths, g_tmp_used, MAX_TMP, o->tmp);
    *out = o;
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n, const char *path, smelt_err *e)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return SMELT_ERR(e, SMELT_EIO, path, NULL, "write failed: %s",
                             w == 0 ? "no progress" : strerror(errno));
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int flush_buf(smelt_outfile *o, smelt_err *e)
{
    if (!o->used) return 0;
    int rc = write_all(o->fd, o->buf, o->used, o->target, e);
    o->used = 0;
    return rc;
}

int smelt_outfile_finish(smelt_outfile *o, smelt_err *e)
{
    int rc = o->buf ? flush_buf(o, e) : 0;
    free(o->buf);
    o->buf = NULL;
    return rc;
}

int smelt_outfile_write(smelt_outfile *o, const void *p, size_t n, smelt_err *e)
{
    const uint8_t *s = p;
    if (!o->buf) return SMELT_ERR(e, SMELT_EINTERNAL, o->target, NULL, "write after the file was finished");
    o->pos += n;
    if (n >= OUTBUF) {
        int rc = flush_buf(o, e);
        if (rc) return rc;
        return write_all(o->fd, s, n, o->target, e);
    }
    while (n) {
        size_t k = OUTBUF - o->used;
        if (k > n) k = n;
        memcpy(o->buf + o->used, s, k);
        o->used += k;
        s += k;
        n -= k;
        if (o->used == OUTBUF) {
            int rc = flush_buf(o, e);
            if (rc) return rc;
        }
    }
    return 0;
}

int smelt_outfile_pad(smelt_outfile *o, uint64_t align, smelt_err *e)
{
    static const uint8_t zeros[256];
    uint64_t target = smelt_pad_u64(o->pos, align);
    while (o->pos < target) {
        uint64_t k = target - o->pos;
        if (k > sizeof zeros) k = sizeof zeros;
        int rc = smelt_outfile_write(o, zeros, (size_t)k, e);
        if (rc) return rc;
    }
    return 0;
}

int smelt_outfile_pwrite(smelt_outfile *o, const void *p, size_t n, uint64_t off, smelt_err *e)
{
    int rc = flush_buf(o, e);
    if (rc) return rc;
    const uint8_t *s = p;
    while (n) {
        ssize_t w = pwrite(o->fd, s, n, (off_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return SMELT_ERR(e, SMELT_EIO, o->target, NULL, "write failed: %s", strerror(errno));
        s += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

uint64_t smelt_outfile_tell(const smelt_outfile *o) { return o->pos; }
const char *smelt_outfile_path(const smelt_outfile *o) { return o->target; }

static void outfile_free(smelt_outfile *o)
{
    slot_unregister(g_tmp_used, o->slot);
    free(o->target);
    free(o->tmp);
    free(o->buf);
    free(o);
}

int smelt_outfile_commit(smelt_outfile *o, smelt_err *e)
{
    int rc = flush_buf(o, e);
    if (!rc && fsync(o->fd) != 0)
        rc = SMELT_ERR(e, SMELT_EIO, o->target, NULL, "fsync failed: %s", strerror(errno));
    if (close(o->fd) != 0 && !rc)
        rc = SMELT_ERR(e, SMELT_EIO, o->target, NULL, "close failed: %s", strerror(errno));
    o->fd = -1;
    if (!rc) {
        /* mkstemp creates 0600; give the result the usual umask-derived mode */
        mode_t um = umask(0);
        umask(um);
        chmod(o->tmp, 0666 & ~um);
        if (rename(o->tmp, o->target) != 0)
            rc = SMELT_ERR(e, SMELT_EIO, o->target, NULL, "cannot rename temporary file into place: %s",
                           strerror(errno));
    }
    if (rc) unlink(o->tmp);
    outfile_free(o);
    return rc;
}

void smelt_outfile_abort(smelt_outfile *o)
{
    if (!o) return;
    if (o->fd >= 0) {
        close(o->fd);
        unlink(o->tmp);
    }
    outfile_free(o);
}

int smelt_outfile_write_all(const char *path, const void *bytes, size_t n, smelt_err *e)
{
    smelt_outfile *o;
    int rc = smelt_outfile_open(&o, path, e);
    if (rc) return rc;
    if ((rc = smelt_outfile_write(o, bytes, n, e))) {
        smelt_outfile_abort(o);
        return rc;
    }
    return smelt_outfile_commit(o, e);
}
