#define _GNU_SOURCE
#include "cb_filesink.h"
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <nettle/sha2.h>
#include "tlslibs.h"

/* A file written from a stream and hashed on the way (cb_filesink.h).
 *
 * The producer copies what it is given into a ring of aligned blocks; two
 * threads take each full block in order, one hashing it (from memory that
 * is still warm, with no second read and no mapping of the page cache),
 * the other writing it to the file. The file is written with O_DIRECT when
 * its file system takes it: the block goes to the disk without a copy into
 * the page cache and without the file system's per-page bookkeeping, and
 * the final fsync has only metadata left. Where O_DIRECT is refused the
 * writer falls back to ordinary writes and starts their writeback as it
 * goes. A block is free again once both threads are done with it, so at
 * most SINK_BLOCKS blocks are ever held. */

#define SINK_BLOCK (4 << 20)
#define SINK_BLOCKS 8
/* O_DIRECT's alignment of buffers, offsets and lengths (covers 512-byte
 * and 4K sectors). */
#define SINK_ALIGN 4096

struct cb_filesink {
    int fd;
    int direct;
    unsigned char *ring;
    size_t length[SINK_BLOCKS];
    /* bytes in the block being filled (sequence `filled`) */
    size_t fill;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    /* block sequence numbers: committed by the producer, hashed, written */
    uint64_t filled, hashed, written;
    int ending, cancelled, error;
    pthread_t hasher, writer;
    struct sha256_ctx ctx;
};

static void to_hex(const unsigned char *d, char *hex) {
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < SHA256_DIGEST_SIZE; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[64] = 0;
}

static void fail(cb_filesink *s, int e) {
    pthread_mutex_lock(&s->lock);
    if (!s->error) s->error = e;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* Waits for block `seq` to be committed; 0 when there is none to come. */
static int next_block(cb_filesink *s, uint64_t seq) {
    pthread_mutex_lock(&s->lock);
    while (seq >= s->filled && !s->ending && !s->cancelled && !s->error) pthread_cond_wait(&s->cond, &s->lock);
    int ok = seq < s->filled && !s->cancelled && !s->error;
    pthread_mutex_unlock(&s->lock);
    return ok;
}

static void done_block(cb_filesink *s, uint64_t *counter) {
    pthread_mutex_lock(&s->lock);
    (*counter)++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void *hash_thread(void *arg) {
    cb_filesink *s = arg;
    for (uint64_t seq = 0; next_block(s, seq); seq++) {
        unsigned slot = (unsigned)(seq % SINK_BLOCKS);
        sha256_update(&s->ctx, s->length[slot], s->ring + (size_t)slot * SINK_BLOCK);
        done_block(s, &s->hashed);
    }
    return NULL;
}

static int write_all(int fd, const unsigned char *p, size_t n, off_t off) {
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (w == 0) return EIO;
        p += w; n -= (size_t)w; off += w;
    }
    return 0;
}

/* Ordinary writes from now on (the file system refused O_DIRECT, or the
 * tail is not a whole number of sectors). */
static int stop_direct(cb_filesink *s) {
    int fl = fcntl(s->fd, F_GETFL);
    if (fl < 0 || fcntl(s->fd, F_SETFL, fl & ~O_DIRECT) < 0) return errno;
    s->direct = 0;
    return 0;
}

static int write_block(cb_filesink *s, const unsigned char *p, size_t n, off_t off) {
    if (s->direct) {
        size_t whole = n & ~(size_t)(SINK_ALIGN - 1);
        int e = whole ? write_all(s->fd, p, whole, off) : 0;
        if (e == 0 && whole == n) return 0;
        if (e != 0 && e != EINVAL) return e;
        /* EINVAL: this file system takes no O_DIRECT after all (nothing of
         * this write landed: it is redone whole) */
        if (e == EINVAL) whole = 0;
        if ((e = stop_direct(s))) return e;
        p += whole; n -= whole; off += (off_t)whole;
    }
    int e = write_all(s->fd, p, n, off);
    /* the disk writes back while the network delivers: the final fsync
     * has little left to wait for */
    if (e == 0) sync_file_range(s->fd, off, (off_t)n, SYNC_FILE_RANGE_WRITE);
    return e;
}

static void *write_thread(void *arg) {
    cb_filesink *s = arg;
    for (uint64_t seq = 0; next_block(s, seq); seq++) {
        unsigned slot = (unsigned)(seq % SINK_BLOCKS);
        int e = write_block(s, s->ring + (size_t)slot * SINK_BLOCK, s->length[slot], (off_t)(seq * SINK_BLOCK));
        if (e) { fail(s, e); break; }
        done_block(s, &s->written);
    }
    return NULL;
}

cb_filesink *cb_filesink_open(int fd, int *err) {
    if (!cb_tlslibs_ready()) { *err = ELIBACC; return NULL; }
    cb_filesink *s = calloc(1, sizeof *s);
    if (!s) { *err = ENOMEM; return NULL; }
    if (posix_memalign((void **)&s->ring, SINK_ALIGN, (size_t)SINK_BLOCK * SINK_BLOCKS)) {
        free(s);
        *err = ENOMEM;
        return NULL;
    }
    s->fd = fd;
    int fl = fcntl(fd, F_GETFL);
    s->direct = fl >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0;
    sha256_init(&s->ctx);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    int e = pthread_create(&s->hasher, NULL, hash_thread, s);
    if (e == 0) {
        e = pthread_create(&s->writer, NULL, write_thread, s);
        if (e) {
            pthread_mutex_lock(&s->lock);
            s->cancelled = 1;
            pthread_cond_broadcast(&s->cond);
            pthread_mutex_unlock(&s->lock);
            pthread_join(s->hasher, NULL);
        }
    }
    if (e) {
        if (s->direct) stop_direct(s);
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        free(s->ring);
        free(s);
        *err = e;
        return NULL;
    }
    return s;
}

/* Hands the block being filled to the threads. */
static void commit(cb_filesink *s) {
    pthread_mutex_lock(&s->lock);
    s->length[s->filled % SINK_BLOCKS] = s->fill;
    s->filled++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    s->fill = 0;
}

int cb_filesink_write(cb_filesink *s, const void *bytes, size_t n) {
    const unsigned char *p = bytes;
    while (n > 0) {
        if (s->fill == 0) {
            /* a block to fill: wait until both threads are done with
             * whatever last used its slot */
            pthread_mutex_lock(&s->lock);
            while (!s->error && (s->filled - s->hashed >= SINK_BLOCKS || s->filled - s->written >= SINK_BLOCKS))
                pthread_cond_wait(&s->cond, &s->lock);
            int e = s->error;
            pthread_mutex_unlock(&s->lock);
            if (e) return e;
        }
        size_t take = SINK_BLOCK - s->fill < n ? SINK_BLOCK - s->fill : n;
        memcpy(s->ring + (size_t)(s->filled % SINK_BLOCKS) * SINK_BLOCK + s->fill, p, take);
        s->fill += take;
        p += take;
        n -= take;
        if (s->fill == SINK_BLOCK) commit(s);
    }
    pthread_mutex_lock(&s->lock);
    int e = s->error;
    pthread_mutex_unlock(&s->lock);
    return e;
}

int cb_filesink_end(cb_filesink *s, int cancel, char *hex) {
    if (!cancel && s->fill > 0) commit(s);
    pthread_mutex_lock(&s->lock);
    s->ending = 1;
    if (cancel) s->cancelled = 1;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->hasher, NULL);
    pthread_join(s->writer, NULL);
    int e = s->error;
    if (e == 0 && !cancel && s->hashed != s->filled) e = EIO;
    if (s->direct) {
        int d = stop_direct(s);
        if (!e) e = d;
    }
    if (e == 0 && !cancel && hex) {
        unsigned char d[SHA256_DIGEST_SIZE];
        sha256_digest(&s->ctx, sizeof d, d);
        to_hex(d, hex);
    }
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s->ring);
    free(s);
    return e;
}
