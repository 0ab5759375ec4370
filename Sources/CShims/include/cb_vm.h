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

/// A TLS client session (GnuTLS) on a connected socket, for the CLI talking
/// to the daemon. `cafile` pins a CA/certificate; `insecure` skips checks.
typedef struct cb_tls_client cb_tls_client;
cb_tls_client *cb_tls_client_connect(int fd, const char *host, const char *cafile, int insecure,
                                     char *err, size_t errlen);
/* Like cb_tls_client_connect, but the peer must present a certificate for
 * `host` that chains to `cafile` (or to the system's trust store when NULL). */
cb_tls_client *cb_tls_client_connect_verified(int fd, const char *host, const char *cafile,
                                              char *err, size_t errlen);
long cb_tls_client_send(cb_tls_client *c, const void *buf, size_t len);
long cb_tls_client_recv(cb_tls_client *c, void *buf, size_t len);
void cb_tls_client_close(cb_tls_client *c);

#endif
