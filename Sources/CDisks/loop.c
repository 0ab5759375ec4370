/* Loop devices (cb_disks.h): attaching a file read-only, and moving a
 * device onto another file while it stays mounted. */
#define _GNU_SOURCE
#include "cb_disks.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int cb_loop_attach(const char *path, char *dev, size_t devlen, int *fd) {
    *fd = -1;
    int file = open(path, O_RDONLY | O_CLOEXEC);
    if (file < 0) return errno;
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) { int e = errno; close(file); return e; }
    int rc = EBUSY;
    /* another process may take the free device first: try the next one */
    for (int tries = 0; tries < 16 && rc == EBUSY; tries++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0) { rc = errno; break; }
        snprintf(dev, devlen, "/dev/loop%d", n);
        int lfd = open(dev, O_RDONLY | O_CLOEXEC);
        if (lfd < 0) { rc = errno; break; }
        struct loop_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.fd = (unsigned int)file;
        cfg.info.lo_flags = LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR;
        snprintf((char *)cfg.info.lo_file_name, sizeof cfg.info.lo_file_name, "%s", path);
        rc = ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0 ? 0 : errno;
        if (rc == 0) *fd = lfd;
        else close(lfd);
    }
    close(ctl);
    close(file);
    return rc;
}

int cb_loop_change_file(const char *dev, const char *path) {
    int file = open(path, O_RDONLY | O_CLOEXEC);
    if (file < 0) return errno;
    int lfd = open(dev, O_RDONLY | O_CLOEXEC);
    if (lfd < 0) { int e = errno; close(file); return e; }
    int rc = ioctl(lfd, LOOP_CHANGE_FD, file) == 0 ? 0 : errno;
    close(lfd);
    close(file);
    return rc;
}
