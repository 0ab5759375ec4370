/* XXH3-128 of files (cb_xxh.h): read in large pieces from the page cache,
 * hashed at memory speed on one core. */
#define _GNU_SOURCE
#define XXH_INLINE_ALL
#include <xxhash.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include "cb_xxh.h"

static void to_hex(XXH128_hash_t h, char *hex) {
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        hex[2 * i] = digits[c.digest[i] >> 4];
        hex[2 * i + 1] = digits[c.digest[i] & 15];
    }
    hex[32] = 0;
}

void cb_xxh128_bytes(const void *data, unsigned long len, char *hex) {
    to_hex(XXH3_128bits(data, len), hex);
}

int cb_xxh128_file(const char *path, char *hex) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    XXH3_state_t *st = XXH3_createState();
    enum { BUF = 4 << 20 };
    unsigned char *buf = malloc(BUF);
    if (!st || !buf) { free(buf); XXH3_freeState(st); close(fd); return ENOMEM; }
    XXH3_128bits_reset(st);
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf, BUF);
        if (n < 0) {
            if (errno == EINTR) continue;
            rc = errno;
            break;
        }
        if (n == 0) break;
        XXH3_128bits_update(st, buf, (size_t)n);
    }
    if (rc == 0) to_hex(XXH3_128bits_digest(st), hex);
    free(buf);
    XXH3_freeState(st);
    close(fd);
    return rc;
}
