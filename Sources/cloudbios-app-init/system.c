#define _GNU_SOURCE
#include "appinit.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

extern char **environ;

int cb_app_load_module(const char *path, const char *params) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    long rc = syscall(SYS_finit_module, fd, params ? params : "", 0);
    int e = rc == 0 ? 0 : errno;
    close(fd);
    return e == EEXIST ? 0 : e;
}

int cb_app_switch_root(const char *newroot) {
    if (chdir(newroot) != 0) return errno;
    if (mount(".", "/", NULL, MS_MOVE, NULL) != 0) return errno;
    if (chroot(".") != 0) return errno;
    if (chdir("/") != 0) return errno;
    return 0;
}

static void set_addr(struct sockaddr *sa, uint32_t a) {
    struct sockaddr_in *in = (struct sockaddr_in *)sa;
    memset(in, 0, sizeof *in);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(a);
}

int cb_app_ipv4(const char *ifname, uint32_t addr, uint32_t mask, uint32_t gateway) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    int e = 0;
    set_addr(&ifr.ifr_addr, addr);
    if (ioctl(s, SIOCSIFADDR, &ifr) != 0) { e = errno; goto out; }
    set_addr(&ifr.ifr_netmask, mask);
    if (ioctl(s, SIOCSIFNETMASK, &ifr) != 0) { e = errno; goto out; }
    if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) { e = errno; goto out; }
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) { e = errno; goto out; }
    if (gateway != 0) {
        struct rtentry rt;
        memset(&rt, 0, sizeof rt);
        set_addr(&rt.rt_dst, 0);
        set_addr(&rt.rt_genmask, 0);
        set_addr(&rt.rt_gateway, gateway);
        rt.rt_flags = RTF_UP | RTF_GATEWAY;
        if (ioctl(s, SIOCADDRT, &rt) != 0 && errno != EEXIST) { e = errno; goto out; }
    }
out:
    close(s);
    return e;
}

pid_t cb_app_spawn(char *const argv[], char *const envp[], const char *cwd, uid_t uid, gid_t gid,
                   int in, int out, int err) {
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid > 0) return pid;
    /* the child */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
    setsid();
    int fds[3] = {in, out, err};
    for (int i = 0; i < 3; i++) fds[i] = fds[i] >= 0 && fds[i] < 3 ? fcntl(fds[i], F_DUPFD_CLOEXEC, 3) : fds[i];
    for (int i = 0; i < 3; i++) if (fds[i] >= 0) dup2(fds[i], i);
    closefrom(3);
    if (cwd && *cwd && chdir(cwd) != 0) {
        dprintf(2, "app-init: cannot enter %s: %s\n", cwd, strerror(errno));
        _exit(126);
    }
    if (setgroups(0, NULL) != 0 && uid != 0) { dprintf(2, "app-init: setgroups: %s\n", strerror(errno)); _exit(126); }
    if (setgid(gid) != 0) { dprintf(2, "app-init: setgid %u: %s\n", (unsigned)gid, strerror(errno)); _exit(126); }
    if (setuid(uid) != 0) { dprintf(2, "app-init: setuid %u: %s\n", (unsigned)uid, strerror(errno)); _exit(126); }
    environ = (char **)envp;
    execvp(argv[0], argv);
    int e = errno;
    dprintf(2, "app-init: cannot run %s: %s\n", argv[0], strerror(e));
    _exit(e == ENOENT ? 127 : 126);
}

int cb_app_reboot(void) {
    sync();
    return reboot(RB_AUTOBOOT) == 0 ? 0 : errno;
}

/* The Swift driver links swiftrt.o into every executable it links, this one
 * too: its constructor registers the image with the Swift runtime. There is
 * no Swift in this program and no runtime linked, so the registration is a
 * no-op (and app-init starts before /proc exists, where the runtime's own
 * start-up would fail). */
void swift_addNewDSOImage(const void *image) { (void)image; }
int _swift_backtrace_isThunkFunction(const char *name) { (void)name; return 0; }
