#define _GNU_SOURCE
#include "CShims.h"
#include <errno.h>
#include <fcntl.h>
#include <nettle/sha2.h>
#include <unistd.h>
#include "tlslibs.h"

int cb_sha256_file(const char *path, char *hex) {
    static const char digits[] = "0123456789abcdef";
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
    for (int i = 0; i < SHA256_DIGEST_SIZE; i++) {
        hex[2 * i] = digits[d[i] >> 4];
        hex[2 * i + 1] = digits[d[i] & 15];
    }
    hex[64] = 0;
    return 0;
}
