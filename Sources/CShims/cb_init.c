#define _GNU_SOURCE
#include "cb_init.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <linux/loop.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int cb_init_sigpipe[2] = {-1, -1};

static void cb_init_on_signal(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (cb_init_sigpipe[1] >= 0) (void)!write(cb_init_sigpipe[1], &b, 1);
    errno = saved;
}

int cb_init_signal_pipe(void) {
    if (cb_init_sigpipe[0] >= 0) return cb_init_sigpipe[0];
    if (pipe2(cb_init_sigpipe, O_NONBLOCK | O_CLOEXEC) != 0) return -1;
    int sigs[] = {SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGPWR, SIGHUP};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cb_init_on_signal;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    sigset_t unblock;
    sigemptyset(&unblock);
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        sigaction(sigs[i], &sa, NULL);
        sigaddset(&unblock, sigs[i]);
    }
    sigprocmask(SIG_UNBLOCK, &unblock, NULL);
    return cb_init_sigpipe[0];
}

int cb_init_read_signal(int fd) {
    unsigned char b;
    ssize_t n = read(fd, &b, 1);
    if (n == 1) return (int)b;
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    return -1;
}

int cb_init_uevent_socket(void) {
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
    if (fd < 0) return -1;
    struct sockaddr_nl sa;
    memset(&sa, 0, sizeof sa);
    sa.nl_family = AF_NETLINK;
    sa.nl_pid = 0;
    sa.nl_groups = 1;
    int size = 1 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) { close(fd); return -1; }
    return fd;
}

int cb_init_disable_cad(void) { return reboot(RB_DISABLE_CAD); }

int cb_init_reboot(int kind) {
    switch (kind) {
    case 1: return reboot(RB_POWER_OFF);
    case 2: return reboot(RB_HALT_SYSTEM);
    default: return reboot(RB_AUTOBOOT);
    }
}

int cb_init_read_input_event(int fd, uint16_t *type, uint16_t *code, int32_t *value) {
    struct input_event ev;
    ssize_t n = read(fd, &ev, sizeof ev);
    if (n == (ssize_t)sizeof ev) { *type = ev.type; *code = ev.code; *value = ev.value; return 1; }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    return -1;
}

int cb_init_sethostname(const char *name) { return sethostname(name, strlen(name)); }

int cb_init_isatty(int fd) { return isatty(fd); }
int cb_init_pipe(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

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
