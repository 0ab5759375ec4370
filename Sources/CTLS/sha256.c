#define _GNU_SOURCE
#include "cb_sha256.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <nettle/sha2.h>
#include <stdlib.h>
#include <unistd.h>
#include "tlslibs.h"

static void to_hex(const unsigned char *d, char *hex) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < SHA256_DIGEST_SIZE; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[64] = 0;
}

int cb_sha256_file(const char *path, char *hex) {
    if (!cb_tlslibs_ready()) return ELIBACC;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    /* large reads, read ahead: the hash, not the system calls, sets the pace */
    enum { BUF = 1 << 20 };
    unsigned char *buf = malloc(BUF);
    if (!buf) { close(fd); return ENOMEM; }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    for (;;) {
        ssize_t n = read(fd, buf, BUF);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            free(buf);
            close(fd);
            return e;
        }
        if (n == 0) break;
        sha256_update(&ctx, (size_t)n, buf);
    }
    free(buf);
    close(fd);
    unsigned char d[SHA256_DIGEST_SIZE];
    sha256_digest(&ctx, sizeof d, d);
    to_hex(d, hex);
    return 0;
}

/* The hash of a file being written, computed by a thread that trails the
 * writer (cb_vm.h): the writer says how far the file is written, the
 * thread hashes that far straight from the page cache through a mapping,
 * so the writer neither waits for the hash nor copies for it. */
struct cb_sha256_trail {
    int fd;
    struct sha256_ctx ctx;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int64_t written, hashed;
    int ending, cancelled, waiting, done, error;
};

/* At most this much is mapped at a time. */
#define TRAIL_WINDOW (32 << 20)

cb_sha256_trail *cb_sha256_trail_open(const char *path, int *err) {
    if (!cb_tlslibs_ready()) { *err = ELIBACC; return NULL; }
    cb_sha256_trail *t = calloc(1, sizeof *t);
    if (!t) { *err = ENOMEM; return NULL; }
    t->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (t->fd < 0) { *err = errno; free(t); return NULL; }
    sha256_init(&t->ctx);
    pthread_mutex_init(&t->lock, NULL);
    pthread_cond_init(&t->cond, NULL);
    return t;
}

/* Hashes bytes [from, to) of the file: mapped, or read when it cannot be. */
static int hash_range(cb_sha256_trail *t, int64_t from, int64_t to) {
    static __thread unsigned char buf[1 << 16];
    long page = sysconf(_SC_PAGESIZE);
    while (from < to) {
        int64_t end = to - from > TRAIL_WINDOW ? from + TRAIL_WINDOW : to;
        int64_t base = from - from % page;
        void *m = mmap(NULL, (size_t)(end - base), PROT_READ, MAP_SHARED | MAP_POPULATE, t->fd, base);
        if (m != MAP_FAILED) {
            sha256_update(&t->ctx, (size_t)(end - from), (const uint8_t *)m + (from - base));
            munmap(m, (size_t)(end - base));
            from = end;
            continue;
        }
        size_t want = end - from > (int64_t)sizeof buf ? sizeof buf : (size_t)(end - from);
        ssize_t n = pread(t->fd, buf, want, from);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n < 0 ? errno : EIO;
        sha256_update(&t->ctx, (size_t)n, buf);
        from += n;
    }
    return 0;
}

void cb_sha256_trail_run(cb_sha256_trail *t) {
    pthread_mutex_lock(&t->lock);
    for (;;) {
        while (t->written == t->hashed && !t->ending && !t->cancelled) {
            t->waiting = 1;
            pthread_cond_wait(&t->cond, &t->lock);
            t->waiting = 0;
        }
        if (t->cancelled || t->error || (t->ending && t->written == t->hashed)) break;
        int64_t from = t->hashed, to = t->written;
        pthread_mutex_unlock(&t->lock);
        int e = hash_range(t, from, to);
        pthread_mutex_lock(&t->lock);
        t->hashed = to;
        if (e) t->error = e;
    }
    t->done = 1;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

void cb_sha256_trail_written(cb_sha256_trail *t, int64_t size) {
    pthread_mutex_lock(&t->lock);
    if (size > t->written) t->written = size;
    if (t->waiting) pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

int cb_sha256_trail_end(cb_sha256_trail *t, int cancel, int running, char *hex) {
    pthread_mutex_lock(&t->lock);
    t->ending = 1;
    t->cancelled = cancel;
    pthread_cond_broadcast(&t->cond);
    pthread_mutex_unlock(&t->lock);
    if (!running) cb_sha256_trail_run(t);
    pthread_mutex_lock(&t->lock);
    while (!t->done) pthread_cond_wait(&t->cond, &t->lock);
    int e = t->error;
    pthread_mutex_unlock(&t->lock);
    unsigned char d[SHA256_DIGEST_SIZE];
    sha256_digest(&t->ctx, sizeof d, d);
    if (hex) to_hex(d, hex);
    close(t->fd);
    pthread_cond_destroy(&t->cond);
    pthread_mutex_destroy(&t->lock);
    free(t);
    return e;
}
