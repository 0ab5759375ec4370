#include <stdint.h>
#include <stdarg.h>
#include <string.h>
#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <microhttpd.h>

/* libmicrohttpd is loaded when the panel starts (dlopen, with GnuTLS: see
 * CTLS/tlslibs.h; in the PE they travel in the payload): its functions are
 * called through these pointers, which CTLS' cb_tlslibs_load() fills. */
#define CB_MHD_FUNCTIONS(X) \
    X(MHD_start_daemon) \
    X(MHD_stop_daemon) \
    X(MHD_get_connection_info) \
    X(MHD_get_connection_values) \
    X(MHD_upgrade_action) \
    X(MHD_suspend_connection) \
    X(MHD_resume_connection) \
    X(MHD_create_response_from_buffer) \
    X(MHD_create_response_from_fd_at_offset64) \
    X(MHD_create_response_for_upgrade) \
    X(MHD_add_response_header) \
    X(MHD_queue_response) \
    X(MHD_destroy_response)
#define CB_MHD_EXTERN(name) extern __typeof__(&name) cb_dl_##name;
CB_MHD_FUNCTIONS(CB_MHD_EXTERN)

/* Wrappers for libmicrohttpd's variadic calls and macros, and the calls
 * Swift makes (cb_mhd_ prefix). */

/// Called with each request's target as the client sent it (before
/// percent-decoding); what it returns is the request's first `*con_cls`.
typedef void *(*cb_mhd_uri_callback)(void *cls, const char *uri, struct MHD_Connection *connection);

/// The panel's TLS: versions 1.2 and 1.3 only, forward-secret key exchange
/// and AEAD ciphers only (no CBC, no RC4, no static RSA).
#define CB_MHD_TLS_PRIORITIES \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA" \
    ":-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:-MAC-ALL:+AEAD"

/// Starts a daemon on an already bound and listening socket: a thread pool
/// of `threads` poll loops, suspend/resume and upgrade allowed, TLS
/// (CB_MHD_TLS_PRIORITIES) when `key_pem` and `cert_pem` are given.
/// poll, not epoll: with epoll, libmicrohttpd keeps a connection whose TLS
/// handshake waits for the client in its ready list and spins on it
/// (recv EAGAIN, epoll_wait with no timeout) until the client answers,
/// which costs a core per handshake in flight.
/// Returns NULL on failure.
static inline struct MHD_Daemon *
cb_mhd_start(int listen_fd, int ipv6, unsigned int threads,
             MHD_AccessHandlerCallback handler, void *handler_cls,
             MHD_RequestCompletedCallback completed, void *completed_cls,
             cb_mhd_uri_callback uri_callback, void *uri_cls,
             const char *key_pem, const char *cert_pem,
             unsigned int connection_limit, unsigned int timeout_seconds) {
    unsigned int flags = MHD_USE_POLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_ALLOW_UPGRADE
                       | MHD_USE_TURBO;
    if (ipv6) flags |= MHD_USE_IPv6;
    struct MHD_OptionItem opts[16];
    int n = 0;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, listen_fd, NULL};
    if (threads > 1) opts[n++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, threads, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)completed, completed_cls};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)uri_callback, uri_cls};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, connection_limit, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, timeout_seconds, NULL};
    /* libmicrohttpd zeroes about one and a half times this much for every
     * request; its own default (32 KiB) holds any header the panel sees. */
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, 32 * 1024, NULL};
    if (key_pem && cert_pem) {
        flags |= MHD_USE_TLS;
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)key_pem};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)cert_pem};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, (void *)CB_MHD_TLS_PRIORITIES};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    return cb_dl_MHD_start_daemon(flags, 0, NULL, NULL, handler, handler_cls,
                            MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
}

/// The client's IP address as text ("" when unknown).
static inline void cb_mhd_client_ip(struct MHD_Connection *c, char *buf, size_t len) {
    buf[0] = 0;
    const union MHD_ConnectionInfo *ci = cb_dl_MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)len);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf, (socklen_t)len);
}

static inline enum MHD_Result cb_mhd_yes(void) { return MHD_YES; }
static inline enum MHD_Result cb_mhd_no(void) { return MHD_NO; }
static inline int cb_mhd_is_yes(enum MHD_Result r) { return r == MHD_YES; }
static inline enum MHD_ValueKind cb_mhd_header_kind(void) { return MHD_HEADER_KIND; }
static inline enum MHD_ValueKind cb_mhd_query_kind(void) { return MHD_GET_ARGUMENT_KIND; }
static inline enum MHD_ValueKind cb_mhd_cookie_kind(void) { return MHD_COOKIE_KIND; }
static inline int cb_mhd_completed_ok(enum MHD_RequestTerminationCode toe) { return toe == MHD_REQUEST_TERMINATED_COMPLETED_OK; }
static inline enum MHD_Result cb_mhd_upgrade_close(struct MHD_UpgradeResponseHandle *urh) {
    return cb_dl_MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}
static inline struct MHD_Response *cb_mhd_response_copy(size_t size, const void *data) {
    return cb_dl_MHD_create_response_from_buffer(size, (void *)data, MHD_RESPMEM_MUST_COPY);
}

static inline void cb_mhd_stop(struct MHD_Daemon *d) { cb_dl_MHD_stop_daemon(d); }
static inline void cb_mhd_suspend(struct MHD_Connection *c) { cb_dl_MHD_suspend_connection(c); }
static inline void cb_mhd_resume(struct MHD_Connection *c) { cb_dl_MHD_resume_connection(c); }
static inline int cb_mhd_values(struct MHD_Connection *c, enum MHD_ValueKind kind, MHD_KeyValueIterator it, void *cls) {
    return cb_dl_MHD_get_connection_values(c, kind, it, cls);
}
static inline struct MHD_Response *cb_mhd_response_fd(uint64_t size, int fd, uint64_t offset) {
    return cb_dl_MHD_create_response_from_fd_at_offset64(size, fd, offset);
}
static inline struct MHD_Response *cb_mhd_response_upgrade(MHD_UpgradeHandler h, void *cls) {
    return cb_dl_MHD_create_response_for_upgrade(h, cls);
}
static inline enum MHD_Result cb_mhd_add_header(struct MHD_Response *r, const char *name, const char *value) {
    return cb_dl_MHD_add_response_header(r, name, value);
}
static inline enum MHD_Result cb_mhd_queue(struct MHD_Connection *c, unsigned int status, struct MHD_Response *r) {
    return cb_dl_MHD_queue_response(c, status, r);
}
static inline void cb_mhd_destroy(struct MHD_Response *r) { cb_dl_MHD_destroy_response(r); }
