#ifndef CLOUDBIOS_CB_VM_H
#define CLOUDBIOS_CB_VM_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// Forks the KVM probe's child: on `device` (normally /dev/kvm) it creates a
/// VM and a vCPU and runs a few real-mode instructions to HLT, and exits 0
/// when they ran, else with the code of the step that failed (10-20). It
/// dies with its parent and by itself after `timeout_ms` plus 2 s. Returns
/// its pid, or -errno when fork fails.
pid_t cb_kvm_probe_fork(const char *device, int timeout_ms);

/// Creates the persistent tap device `name` (IFF_TAP | IFF_NO_PI, like `ip
/// tuntap add mode tap`) through /dev/net/tun: busybox's `ip` has no tuntap.
/// Returns 0 or -errno (-ENOENT: no /dev/net/tun, the tun driver is not loaded).
int cb_tap_create(const char *name);

/// SHA-256 of a file (nettle), as 64 lowercase hex digits plus NUL into
/// `hex` (65 bytes). Returns 0 or an errno value.
int cb_sha256_file(const char *path, char *hex);
/// SHA-256 of a file being written (nettle), computed by a thread that
/// trails the writer, from the page cache. `open` (NULL with an errno in
/// `err`); `run` is the thread's body; the writer tells `written` how many
/// bytes the file has; `end` waits for the thread to hash them all (or,
/// with `cancel`, to stop; `running` 0: no thread was started, the hash is
/// made by the caller now), writes 64 hex digits and a NUL into `hex` and
/// frees everything. Returns 0 or the errno of a failed read.
typedef struct cb_sha256_trail cb_sha256_trail;
cb_sha256_trail *cb_sha256_trail_open(const char *path, int *err);
void cb_sha256_trail_run(cb_sha256_trail *t);
void cb_sha256_trail_written(cb_sha256_trail *t, int64_t size);
int cb_sha256_trail_end(cb_sha256_trail *t, int cancel, int running, char *hex);

#endif
