#ifndef CLOUDBIOS_CB_APPINIT_H
#define CLOUDBIOS_CB_APPINIT_H
/* What an app microVM's PID 1 (`cloudbios app-init`) needs (CAppInit):
 * kernel modules, switching to the image's root, an IPv4 address, and
 * children started under another user in another directory. */
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

#endif
