#ifndef CLOUDBIOS_CB_VM_H
#define CLOUDBIOS_CB_VM_H
#include <stddef.h>

/// Probes KVM on `device` (normally /dev/kvm): in a forked child, creates a VM
/// and a vCPU and runs a few real-mode instructions to HLT. The parent waits
/// at most `timeout_ms` and kills the child on timeout. Returns 1 when KVM
/// works, 0 otherwise; `reason` says why either way.
int cb_kvm_probe(const char *device, int timeout_ms, char *reason, size_t reason_len);

/// Creates the persistent tap device `name` (IFF_TAP | IFF_NO_PI, like `ip
/// tuntap add mode tap`) through /dev/net/tun: busybox's `ip` has no tuntap.
/// Returns 0 or -errno (-ENOENT: no /dev/net/tun, the tun driver is not loaded).
int cb_tap_create(const char *name);

/// SHA-256 of a file (nettle), as 64 lowercase hex digits plus NUL into
/// `hex` (65 bytes). Returns 0 or an errno value.
int cb_sha256_file(const char *path, char *hex);
/// A streaming SHA-256 (nettle): begin (NULL when the library is not
/// loaded), add, end (writes 64 hex digits and a NUL, frees the state).
void *cb_sha256_begin(void);
void cb_sha256_add(void *ctx, const void *data, size_t len);
void cb_sha256_end(void *ctx, char *hex);

#endif
