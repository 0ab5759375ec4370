#ifndef CLOUDBIOS_CB_APPINIT_H
#define CLOUDBIOS_CB_APPINIT_H
/* cloudbios-app-init, PID 1 of an app's microVM: a small static C program
 * (not the cloudbios binary: the initramfs every app boots stays a few MiB).
 * system.c: kernel modules, switching to the image's root, an IPv4 address,
 * children started under another user in another directory. json.c: the
 * JSON of the launch disk and the control port. main.c: the boot and the
 * control port. */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// finit_module(2) of the file at `path` with `params` ("" for none).
/// Returns 0 (also when the module is loaded already) or an errno.
int cb_app_load_module(const char *path, const char *params);
/// Makes the directory `newroot` (a mount point) the root: moves it over
/// "/" and chroots into it, as switch_root does. Returns 0 or an errno.
int cb_app_switch_root(const char *newroot);
/// Brings `ifname` up with the IPv4 address `addr`/`mask` (host byte
/// order) and, when `gateway` is not 0, a default route through it.
/// Returns 0 or an errno.
int cb_app_ipv4(const char *ifname, uint32_t addr, uint32_t mask, uint32_t gateway);
/// Starts `argv[0]` (looked up in envp's PATH when it has no slash) in a
/// new session with `envp`, in `cwd`, as `uid`/`gid` (no supplementary
/// groups), its standard descriptors `in`, `out`, `err`; every other
/// descriptor is closed. Returns the pid, or -errno when it could not be
/// forked. A program that cannot be run exits 127 (126 when it is there but
/// cannot be executed) after saying why on `err`.
pid_t cb_app_spawn(char *const argv[], char *const envp[], const char *cwd, uid_t uid, gid_t gid,
                   int in, int out, int err);
/// reboot(2) with RB_AUTOBOOT: QEMU run with -no-reboot exits.
int cb_app_reboot(void);

/* ---- JSON (json.c) ---- */

enum cb_json_kind { CB_JSON_NULL, CB_JSON_BOOL, CB_JSON_NUMBER, CB_JSON_STRING, CB_JSON_ARRAY, CB_JSON_OBJECT };

/// A parsed JSON value. Strings are UTF-8 without escapes, NUL-terminated
/// (`length` bytes; a string with an escaped NUL in it is refused). An
/// array's items, an object's values (`keys` beside them) are in `items`.
struct cb_json {
    enum cb_json_kind kind;
    int boolean;
    double number;
    char *string;
    size_t length;
    struct cb_json *items;
    char **keys;
    size_t count;
};

/// Parses `len` bytes of one JSON value (at most 64 levels deep); NULL when
/// they are not one. Free with cb_json_free.
struct cb_json *cb_json_parse(const char *text, size_t len);
void cb_json_free(struct cb_json *v);
/// The member `key` of an object, NULL when absent or not an object.
const struct cb_json *cb_json_get(const struct cb_json *v, const char *key);

/// A growing byte buffer for JSON answers.
struct cb_buf { char *data; size_t len, cap; };
void cb_buf_add(struct cb_buf *b, const char *s, size_t n);
void cb_buf_str(struct cb_buf *b, const char *s);
/// `s` (n bytes) as a JSON string: quoted, escaped, invalid UTF-8 replaced by U+FFFD.
void cb_buf_json_string(struct cb_buf *b, const char *s, size_t n);

#endif
