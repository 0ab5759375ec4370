#define _GNU_SOURCE
#include "cb_init.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
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

