#define _GNU_SOURCE
#include "CShims.h"
#include <errno.h>
#include <fcntl.h>
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

void *cb_sha256_begin(void) {
    if (!cb_tlslibs_ready()) return NULL;
    struct sha256_ctx *ctx = malloc(sizeof *ctx);
    if (ctx) sha256_init(ctx);
    return ctx;
}

void cb_sha256_add(void *ctx, const void *data, size_t len) {
    sha256_update((struct sha256_ctx *)ctx, len, data);
}

void cb_sha256_end(void *ctx, char *hex) {
    unsigned char d[SHA256_DIGEST_SIZE];
    sha256_digest((struct sha256_ctx *)ctx, sizeof d, d);
    free(ctx);
    to_hex(d, hex);
}

int cb_sha256_file(const char *path, char *hex) {
    if (!cb_tlslibs_ready()) return ELIBACC;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    static __thread unsigned char buf[1 << 16];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            return e;
        }
        if (n == 0) break;
        sha256_update(&ctx, (size_t)n, buf);
    }
    close(fd);
    unsigned char d[SHA256_DIGEST_SIZE];
    sha256_digest(&ctx, sizeof d, d);
    to_hex(d, hex);
    return 0;
}
