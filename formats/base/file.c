/* file.c — mmap inputs, temp+rename outputs, small file helpers. Includes base/ only. */
#include "file.h"
#include "ckd.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* ==== mapping ==== */

int smelt_map_open(smelt_map *m, const char *path, smelt_err *e)
{
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return SMELT_ERR(e, SMELT_EIO, path, NULL, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int er = errno;
        close(fd);
        return SMELT_ERR(e, SMELT_EIO, path, NULL, "cannot stat: %s", strerror(er));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return SMELT_ERR(e, SMELT_EIO, path, NULL, "is a directory, expected a file");
    }
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
    }
    close(fd);
    return 0;
}

void smelt_map_close(smelt_map *m)
{
    if (!m) return;
    if (m->data) munmap((void *)m->data, (size_t)m->size);
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
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return SMELT_ERR(e, SMELT_EIO, path, NULL, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return SMELT_ERR(e, SMELT_EIO, path, NULL, "not a regular file");
    }
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
    char dir[4096];
    if (smelt_is_dir(path))
        snprintf(dir, sizeof dir, "%s", path);
    else
        dir_of(path, dir, sizeof dir);
    struct statvfs vs;
    if (statvfs(dir, &vs) != 0) return UINT64_MAX;
    return (uint64_t)vs.f_bavail * (uint64_t)vs.f_frsize;
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

/* ==== temporary-file registry for signal cleanup ====
 * The only process-wide state in smelt: paths of temporary files still open, so that a
 * signal handler can unlink them. Fixed-size, guarded by a mutex outside the handler. */

#define MAX_TMP 64
static char g_tmp_paths[MAX_TMP][4096];
static volatile sig_atomic_t g_tmp_used[MAX_TMP];
static pthread_mutex_t g_tmp_lock = PTHREAD_MUTEX_INITIALIZER;

static int tmp_register(const char *p)
{
    pthread_mutex_lock(&g_tmp_lock);
    int slot = -1;
    for (int i = 0; i < MAX_TMP; i++)
        if (!g_tmp_used[i]) {
            snprintf(g_tmp_paths[i], sizeof g_tmp_paths[i], "%s", p);
            g_tmp_used[i] = 1;
            slot = i;
            break;
        }
    pthread_mutex_unlock(&g_tmp_lock);
    return slot;
}

static void tmp_unregister(int slot)
{
    if (slot < 0) return;
    pthread_mutex_lock(&g_tmp_lock);
    g_tmp_used[slot] = 0;
    pthread_mutex_unlock(&g_tmp_lock);
}

static void on_signal(int sig)
{
    for (int i = 0; i < MAX_TMP; i++)
        if (g_tmp_used[i]) unlink(g_tmp_paths[i]);
    signal(sig, SIG_DFL);
    raise(sig);
}

void smelt_outfile_install_signal_cleanup(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
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
    char dir[4096];
    dir_of(path, dir, sizeof dir);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t tl = strlen(dir) + strlen(base) + 32;
    o->target = strdup(path);
    o->tmp = malloc(tl);
    o->buf = malloc(OUTBUF);
    if (!o->target || !o->tmp || !o->buf) {
        smelt_outfile_abort(o);
        return SMELT_NOMEM(e, "output file");
    }
    snprintf(o->tmp, tl, "%s/.%s.smelt-tmp-XXXXXX", dir, base);
    o->fd = mkostemp(o->tmp, O_CLOEXEC);
    if (o->fd < 0) {
        int er = errno;
        free(o->tmp);
        o->tmp = NULL;
        smelt_outfile_abort(o);
        return SMELT_ERR(e, SMELT_EIO, path, NULL, "cannot create a temporary file in '%s': %s",
                         dir, strerror(er));
    }
    o->slot = tmp_register(o->tmp);
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

int smelt_outfile_write(smelt_outfile *o, const void *p, size_t n, smelt_err *e)
{
    const uint8_t *s = p;
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
    tmp_unregister(o->slot);
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
