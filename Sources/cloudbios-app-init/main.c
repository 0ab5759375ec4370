/* PID 1 of an app's microVM (the initramfs's /app-init): loads the
 * virtio, erofs and overlay modules listed in /modules.order, mounts the
 * image's root (/dev/vda, erofs, read-only) under a tmpfs overlay, reads the
 * launch (/dev/vdb: one JSON object, NUL-padded), switches into the root,
 * brings up the user-net address and runs the app, its output on the cb.log
 * port. It reaps every process, answers control requests on the cb.ctl port
 * (one JSON line each: {"op":"exec","cmd":[…]} → {"exit_code","stdout",
 * "stderr"}; {"op":"stop","timeout":S} sends the app SIGTERM, SIGKILL after S
 * seconds → {"ok":true}; {"op":"ping"}), and when the app ends writes
 * "[cloudbios] app exited: CODE" on the log and reboots (QEMU runs with
 * -no-reboot, so the VM ends). The host side is Sources/Apps (AppManager,
 * AppLaunch, ControlClient). */
#define _GNU_SOURCE
#include "appinit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define EXIT_MARKER "[cloudbios] app exited: "
#define OUTPUT_LIMIT (1 << 20)
#define IP_ADDRESS 0x0a00020fu /* 10.0.2.15, user-net's first lease */
#define GATEWAY 0x0a000202u
#define DNS "10.0.2.3"

static int log_fd = 2;

/* All of buf on fd, or as much as it takes before an error. */
static void write_all(int fd, const char *buf, size_t n) {
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, buf + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
}

static void say(const char *fmt, ...) {
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n >= sizeof line) n = sizeof line - 1;
    write_all(log_fd, line, (size_t)n);
}

static void fail(const char *fmt, ...) __attribute__((noreturn));
static void fail(const char *fmt, ...) {
    char what[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    say("[cloudbios] app-init: %s\n", what);
    say(EXIT_MARKER "125\n");
    cb_app_reboot();
    for (;;) pause();
}

/* A step of the boot, on the kernel's console when cbapp=trace. */
static void trace(const char *fmt, ...) {
    const char *mode = getenv("cbapp");
    if (!mode || strcmp(mode, "trace") != 0) return;
    int fd = open("/dev/console", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    dprintf(fd, "[cloudbios] app-init: %s\n", line);
    close(fd);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* The whole file (at most limit bytes), NUL-terminated; NULL when unreadable. */
static char *read_file(const char *path, size_t limit, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct cb_buf b = {0};
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        size_t take = (size_t)n;
        if (b.len + take > limit) take = limit - b.len;
        cb_buf_add(&b, chunk, take);
        if (b.len >= limit) break;
    }
    close(fd);
    if (!b.data) cb_buf_add(&b, "", 0);
    if (len) *len = b.len;
    return b.data;
}

static void write_atomically(const char *path, const char *text) {
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.cbtmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    ssize_t n = write(fd, text, strlen(text));
    close(fd);
    if (n == (ssize_t)strlen(text)) rename(tmp, path);
    else unlink(tmp);
}

/* /dev/vportNpM of the virtio-serial port named `name` (waits up to 5 s). */
static int find_port(const char *name, char *out, size_t size) {
    double deadline = now() + 5;
    do {
        DIR *d = opendir("/sys/class/virtio-ports");
        if (d) {
            struct dirent *e;
            while ((e = readdir(d))) {
                if (e->d_name[0] == '.') continue;
                char p[300];
                snprintf(p, sizeof p, "/sys/class/virtio-ports/%s/name", e->d_name);
                char *n = read_file(p, 256, NULL);
                if (!n) continue;
                n[strcspn(n, "\n")] = 0;
                int match = strcmp(n, name) == 0;
                free(n);
                snprintf(out, size, "/dev/%s", e->d_name);
                if (match && exists(out)) { closedir(d); return 1; }
            }
            closedir(d);
        }
        usleep(5000);
    } while (now() < deadline);
    return 0;
}

/* ---- the launch ---- */

struct launch {
    char **argv, **env; /* NULL-terminated */
    const char *cwd, *user, *hostname;
};

static char **strings(const struct cb_json *v) {
    size_t n = v && v->kind == CB_JSON_ARRAY ? v->count : 0;
    char **out = calloc(n + 1, sizeof *out);
    if (!out) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (v->items[i].kind == CB_JSON_STRING) out[k++] = v->items[i].string;
    return out;
}

static const char *text(const struct cb_json *v, const char *key, const char *fallback) {
    const struct cb_json *s = cb_json_get(v, key);
    return s && s->kind == CB_JSON_STRING ? s->string : fallback;
}

/* ---- users ---- */

/* Field `index` (0-based) of the colon-separated line, copied into out. */
static int field(const char *line, int index, char *out, size_t size) {
    const char *p = line;
    for (int i = 0; i < index; i++) {
        p = strchr(p, ':');
        if (!p) return 0;
        p++;
    }
    size_t n = strcspn(p, ":\n");
    if (n >= size) return 0;
    memcpy(out, p, n);
    out[n] = 0;
    return 1;
}

static int all_digits(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

/* Looks up `key` in column `column` of the table at `path`; copies the line. */
static int table_row(const char *path, int column, const char *key, char *row, size_t size) {
    char *t = read_file(path, 1 << 20, NULL);
    if (!t) return 0;
    int found = 0;
    for (char *line = strtok(t, "\n"); line && !found; line = strtok(NULL, "\n")) {
        char f[256];
        if (field(line, column, f, sizeof f) && strcmp(f, key) == 0 && strlen(line) < size) {
            strcpy(row, line);
            found = 1;
        }
    }
    free(t);
    return found;
}

/* uid[:gid] or name[:group] through the image's /etc/passwd and /etc/group;
 * root when empty or unknown. */
static void resolve_user(const char *spec, uid_t *uid, gid_t *gid) {
    *uid = 0;
    *gid = 0;
    if (!spec || !*spec) return;
    char user[256], group[256] = "";
    const char *colon = strchr(spec, ':');
    size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
    if (n >= sizeof user) return;
    memcpy(user, spec, n);
    user[n] = 0;
    if (colon) snprintf(group, sizeof group, "%s", colon + 1);
    char row[1024], f[64];
    if (all_digits(user)) {
        *uid = (uid_t)strtoul(user, NULL, 10);
        if (table_row("/etc/passwd", 2, user, row, sizeof row) && field(row, 3, f, sizeof f) && all_digits(f))
            *gid = (gid_t)strtoul(f, NULL, 10);
    } else if (table_row("/etc/passwd", 0, user, row, sizeof row)) {
        if (field(row, 2, f, sizeof f) && all_digits(f)) *uid = (uid_t)strtoul(f, NULL, 10);
        if (field(row, 3, f, sizeof f) && all_digits(f)) *gid = (gid_t)strtoul(f, NULL, 10);
    }
    if (*group) {
        if (all_digits(group)) *gid = (gid_t)strtoul(group, NULL, 10);
        else if (table_row("/etc/group", 0, group, row, sizeof row) && field(row, 2, f, sizeof f) && all_digits(f))
            *gid = (gid_t)strtoul(f, NULL, 10);
    }
}

/* ---- children: the control port's, whose statuses PID 1's reaping loop keeps ---- */

#define WATCHED 64
static pthread_mutex_t children_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t children_changed = PTHREAD_COND_INITIALIZER;
static struct { pid_t pid; int done; int status; } watched[WATCHED];

static pid_t spawn_watched(char **argv, char **env, const char *cwd, uid_t uid, gid_t gid, int in, int out, int err) {
    pthread_mutex_lock(&children_lock);
    int slot = -1;
    for (int i = 0; i < WATCHED; i++)
        if (watched[i].pid == 0) { slot = i; break; }
    pid_t pid = slot < 0 ? -EAGAIN : cb_app_spawn(argv, env, cwd, uid, gid, in, out, err);
    if (pid > 0) watched[slot].pid = pid, watched[slot].done = 0;
    pthread_mutex_unlock(&children_lock);
    return pid;
}

static void child_exited(pid_t pid, int status) {
    pthread_mutex_lock(&children_lock);
    for (int i = 0; i < WATCHED; i++)
        if (watched[i].pid == pid && !watched[i].done) {
            watched[i].done = 1;
            watched[i].status = status;
            pthread_cond_broadcast(&children_changed);
        }
    pthread_mutex_unlock(&children_lock);
}

static int wait_child(pid_t pid) {
    pthread_mutex_lock(&children_lock);
    int status = 0;
    for (;;) {
        int i;
        for (i = 0; i < WATCHED && watched[i].pid != pid; i++) {}
        if (i == WATCHED) break;
        if (watched[i].done) {
            status = watched[i].status;
            watched[i].pid = 0;
            break;
        }
        pthread_cond_wait(&children_changed, &children_lock);
    }
    pthread_mutex_unlock(&children_lock);
    return status;
}

static int exit_code(int st) { return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (st & 0x7f); }

/* ---- the control port ---- */

static struct launch the_launch;
static uid_t app_uid;
static gid_t app_gid;
static pid_t app_pid;

struct kill_later { pid_t pid; double seconds; };

static void *kill_after(void *arg) {
    struct kill_later k = *(struct kill_later *)arg;
    free(arg);
    double s = k.seconds < 0 ? 0 : k.seconds > 3600 ? 3600 : k.seconds;
    struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {}
    kill(-k.pid, SIGKILL);
    kill(k.pid, SIGKILL);
    return NULL;
}

static void answer_error(struct cb_buf *b, const char *message) {
    cb_buf_str(b, "{\"error\":");
    cb_buf_json_string(b, message, strlen(message));
    cb_buf_str(b, "}");
}

static void run_exec(const struct cb_json *cmd, struct cb_buf *answer) {
    char **argv = strings(cmd);
    if (!argv || !argv[0] || !argv[0][0]) { free(argv); answer_error(answer, "cmd is empty"); return; }
    int outp[2], errp[2];
    if (pipe2(outp, O_CLOEXEC) != 0) { free(argv); answer_error(answer, "pipe failed"); return; }
    if (pipe2(errp, O_CLOEXEC) != 0) { close(outp[0]); close(outp[1]); free(argv); answer_error(answer, "pipe failed"); return; }
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    pid_t pid = spawn_watched(argv, the_launch.env, the_launch.cwd, app_uid, app_gid, devnull, outp[1], errp[1]);
    close(devnull);
    close(outp[1]);
    close(errp[1]);
    struct cb_buf out = {0}, err = {0};
    struct pollfd fds[2] = {{outp[0], POLLIN, 0}, {errp[0], POLLIN, 0}};
    char buf[65536];
    while (fds[0].fd >= 0 || fds[1].fd >= 0) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || fds[i].revents == 0) continue;
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n <= 0) { close(fds[i].fd); fds[i].fd = -1; continue; }
            struct cb_buf *into = i == 0 ? &out : &err;
            if (into->len < OUTPUT_LIMIT) cb_buf_add(into, buf, (size_t)n);
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0) close(fds[i].fd);
    if (pid <= 0) {
        char m[512];
        snprintf(m, sizeof m, "start %s: %s", argv[0], strerror((int)-pid));
        answer_error(answer, m);
    } else {
        char code[32];
        snprintf(code, sizeof code, "%d", exit_code(wait_child(pid)));
        cb_buf_str(answer, "{\"exit_code\":");
        cb_buf_str(answer, code);
        cb_buf_str(answer, ",\"stdout\":");
        cb_buf_json_string(answer, out.data ? out.data : "", out.len);
        cb_buf_str(answer, ",\"stderr\":");
        cb_buf_json_string(answer, err.data ? err.data : "", err.len);
        cb_buf_str(answer, "}");
    }
    free(out.data);
    free(err.data);
    free(argv);
}

static void handle(const char *line, size_t len, struct cb_buf *answer) {
    struct cb_json *req = cb_json_parse(line, len);
    const struct cb_json *op = cb_json_get(req, "op");
    if (!op || op->kind != CB_JSON_STRING) {
        answer_error(answer, "not a request");
    } else if (strcmp(op->string, "ping") == 0) {
        cb_buf_str(answer, "{\"ok\":true}");
    } else if (strcmp(op->string, "stop") == 0) {
        const struct cb_json *t = cb_json_get(req, "timeout");
        struct kill_later *k = malloc(sizeof *k);
        kill(-app_pid, SIGTERM);
        kill(app_pid, SIGTERM);
        if (k) {
            k->pid = app_pid;
            k->seconds = t && t->kind == CB_JSON_NUMBER ? t->number : 10;
            pthread_t th;
            if (pthread_create(&th, NULL, kill_after, k) == 0) pthread_detach(th);
            else free(k);
        }
        cb_buf_str(answer, "{\"ok\":true}");
    } else if (strcmp(op->string, "exec") == 0) {
        run_exec(cb_json_get(req, "cmd"), answer);
    } else {
        answer_error(answer, "unknown op");
    }
    cb_json_free(req);
}

static void *serve(void *arg) {
    const char *port = arg;
    int fd = open(port, O_RDWR | O_CLOEXEC);
    if (fd < 0) return NULL;
    struct cb_buf pending = {0};
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) {
            /* the host is not connected: nothing to read until it is */
            pending.len = 0;
            usleep(20000);
            continue;
        }
        cb_buf_add(&pending, buf, (size_t)n);
        char *nl;
        while (pending.len && (nl = memchr(pending.data, '\n', pending.len))) {
            size_t len = (size_t)(nl - pending.data);
            struct cb_buf answer = {0};
            handle(pending.data, len, &answer);
            cb_buf_add(&answer, "\n", 1);
            write_all(fd, answer.data, answer.len);
            free(answer.data);
            memmove(pending.data, nl + 1, pending.len - len - 1);
            pending.len -= len + 1;
        }
        if (pending.len > (8u << 20)) pending.len = 0; /* no line that long is a request */
    }
    return NULL;
}

/* ---- the boot ---- */

int main(void) {
    mkdir("/proc", 0755);
    mkdir("/sys", 0755);
    mkdir("/dev", 0755);
    mount("proc", "/proc", "proc", 0, NULL);
    mount("sysfs", "/sys", "sysfs", 0, NULL);
    mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
    int console = open("/dev/console", O_WRONLY | O_CLOEXEC);
    if (console >= 0) log_fd = console;
    signal(SIGPIPE, SIG_IGN);

    /* virtio-mmio devices come on the kernel command line; the module takes them as parameters */
    char *cmdline = read_file("/proc/cmdline", 65536, NULL);
    struct cb_buf mmio = {0};
    cb_buf_add(&mmio, "", 0);
    for (char *w = cmdline ? strtok(cmdline, " \n") : NULL; w; w = strtok(NULL, " \n")) {
        if (strncmp(w, "virtio_mmio.device=", 19) != 0) continue;
        if (mmio.len) cb_buf_add(&mmio, " ", 1);
        cb_buf_str(&mmio, "device=");
        cb_buf_str(&mmio, w + 19);
    }
    char *order = read_file("/modules.order", 1 << 20, NULL);
    for (char *line = order ? strtok(order, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        char path[512];
        snprintf(path, sizeof path, "/lib/modules/%s", line);
        size_t l = strlen(line);
        int is_mmio = l >= 14 && strcmp(line + l - 14, "/virtio_mmio.ko") == 0;
        int rc = cb_app_load_module(path, is_mmio ? mmio.data : "");
        if (rc != 0) say("[cloudbios] app-init: module %s: %s\n", line, strerror(rc));
    }
    trace("modules loaded");
    double deadline = now() + 10;
    while (!(exists("/dev/vda") && exists("/dev/vdb")) && now() < deadline) usleep(5000);
    char log_port[300];
    if (find_port("cb.log", log_port, sizeof log_port)) {
        int fd = open(log_port, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) log_fd = fd;
    }
    trace("disks %d %d, log port %d", exists("/dev/vda"), exists("/dev/vdb"), log_fd);

    size_t raw_len = 0;
    char *raw = read_file("/dev/vdb", 1 << 20, &raw_len);
    if (!raw) fail("the launch disk: %s", strerror(errno));
    struct cb_json *launch = cb_json_parse(raw, strnlen(raw, raw_len));
    if (!launch || launch->kind != CB_JSON_OBJECT) fail("the launch disk: not a launch");
    the_launch.argv = strings(cb_json_get(launch, "argv"));
    the_launch.env = strings(cb_json_get(launch, "env"));
    the_launch.cwd = text(launch, "cwd", "");
    the_launch.user = text(launch, "user", "");
    the_launch.hostname = text(launch, "hostname", "app");
    if (!the_launch.argv || !the_launch.argv[0] || !the_launch.env) fail("the launch disk: app launch: no argv");

    mkdir("/lower", 0755);
    mkdir("/rw", 0755);
    mkdir("/newroot", 0755);
    if (mount("/dev/vda", "/lower", "erofs", MS_RDONLY, NULL) != 0) fail("mount the image: %s", strerror(errno));
    if (mount("tmpfs", "/rw", "tmpfs", 0, "mode=0755") != 0) fail("tmpfs: %s", strerror(errno));
    mkdir("/rw/upper", 0755);
    mkdir("/rw/work", 0755);
    if (mount("overlay", "/newroot", "overlay", 0, "lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work") != 0)
        fail("overlay: %s", strerror(errno));
    static const char *dirs[] = {"proc", "sys", "dev", "tmp", "etc", "run"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) {
        char p[64];
        snprintf(p, sizeof p, "/newroot/%s", dirs[i]);
        mkdir(p, 0755);
    }
    mount("proc", "/newroot/proc", "proc", 0, NULL);
    mount("sysfs", "/newroot/sys", "sysfs", 0, NULL);
    mount("devtmpfs", "/newroot/dev", "devtmpfs", 0, NULL);
    mkdir("/newroot/dev/pts", 0755);
    mkdir("/newroot/dev/shm", 01777);
    mount("devpts", "/newroot/dev/pts", "devpts", 0, "newinstance,ptmxmode=0666");
    mount("tmpfs", "/newroot/dev/shm", "tmpfs", 0, "mode=1777");
    static char ctl_port[300];
    int have_ctl = find_port("cb.ctl", ctl_port, sizeof ctl_port);
    trace("root mounted, control port %s", have_ctl ? ctl_port : "none");
    int rc = cb_app_switch_root("/newroot");
    if (rc != 0) fail("switch root: %s", strerror(rc));

    const char *host = the_launch.hostname;
    sethostname(host, strlen(host));
    char line[512];
    snprintf(line, sizeof line, "%s\n", host);
    write_atomically("/etc/hostname", line);
    char *resolv = read_file("/etc/resolv.conf", 65536, NULL);
    int resolv_empty = !resolv || strspn(resolv, " \t\r\n") == strlen(resolv);
    free(resolv);
    if (resolv_empty) write_atomically("/etc/resolv.conf", "nameserver " DNS "\n");
    if (!exists("/etc/hosts")) {
        snprintf(line, sizeof line, "127.0.0.1 localhost\n10.0.2.15 %s\n", host);
        write_atomically("/etc/hosts", line);
    }
    cb_app_ipv4("lo", 0x7f000001u, 0xff000000u, 0);
    int net = cb_app_ipv4("eth0", IP_ADDRESS, 0xffffff00u, GATEWAY);
    if (net != 0) say("[cloudbios] app-init: eth0: %s\n", strerror(net));
    trace("network %d", net);

    resolve_user(the_launch.user, &app_uid, &app_gid);
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    app_pid = cb_app_spawn(the_launch.argv, the_launch.env, the_launch.cwd, app_uid, app_gid, devnull, log_fd, log_fd);
    if (app_pid <= 0) fail("start %s: %s", the_launch.argv[0], strerror((int)-app_pid));
    if (have_ctl) {
        pthread_t th;
        if (pthread_create(&th, NULL, serve, ctl_port) == 0) pthread_detach(th);
    }

    /* reap everything; the app's end is the VM's */
    for (;;) {
        int st = 0;
        pid_t pid = waitpid(-1, &st, 0);
        if (pid < 0) {
            if (errno != EINTR) usleep(100000);
            continue;
        }
        if (pid == app_pid) {
            kill(-1, SIGKILL);
            say(EXIT_MARKER "%d\n", exit_code(st));
            fsync(log_fd);
            cb_app_reboot();
            for (;;) pause();
        }
        child_exited(pid, st);
    }
}
