#ifndef CLOUDBIOS_CB_TLSCLIENT_H
#define CLOUDBIOS_CB_TLSCLIENT_H
#include <stddef.h>

/// A TLS client session (GnuTLS, loaded on first use) on a connected
/// socket: Platform's HTTP client owns one per https connection.
typedef struct cb_tls_client cb_tls_client;

/// What the peer's certificate is checked for.
enum {
    /// Nothing (the CLI's --insecure).
    CB_TLS_CHECK_NONE = 0,
    /// A chain to `cafile`, any name (a pinned certificate or CA).
    CB_TLS_CHECK_ISSUER = 1,
    /// A chain to `cafile` (the system's trust store when NULL) and `host`'s name.
    CB_TLS_CHECK_NAME = 2,
};

/// Shakes hands on `fd` (at most `timeout_ms`); NULL with the reason in
/// `err` ("TLS handshake failed: …", or why GnuTLS cannot be loaded).
cb_tls_client *cb_tls_client_open(int fd, const char *host, const char *cafile, int check, int timeout_ms,
                                  char *err, size_t errlen);
/// Bytes sent, -1 on failure, -2 when the socket's send timeout passed.
long cb_tls_client_send(cb_tls_client *c, const void *buf, size_t len);
/// Bytes received (records already arrived are taken together), 0 at the
/// end, -1 on failure, -2 when the socket's receive timeout passed.
long cb_tls_client_recv(cb_tls_client *c, void *buf, size_t len);
/// Says goodbye (without waiting for the peer's) and frees the session.
void cb_tls_client_close(cb_tls_client *c);

#endif
