/* TLS client sessions for Platform's HTTP client (cb_tlsclient.h): GnuTLS through
 * the loader, the peer checked as the caller asks. */
#define _GNU_SOURCE
#include "cb_tlsclient.h"
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tlslibs.h"

struct cb_tls_client {
    int fd;
    gnutls_session_t session;
    gnutls_certificate_credentials_t creds;
};

cb_tls_client *cb_tls_client_open(int fd, const char *host, const char *cafile, int check, int timeout_ms,
                                  char *err, size_t errlen) {
    if (!cb_tlslibs_ready()) { snprintf(err, errlen, "%s", cb_tlslibs_error()); return NULL; }
    cb_tls_client *c = calloc(1, sizeof *c);
    if (!c) { snprintf(err, errlen, "out of memory"); return NULL; }
    int rc;
    gnutls_certificate_allocate_credentials(&c->creds);
    if (cafile && *cafile) {
        if (gnutls_certificate_set_x509_trust_file(c->creds, cafile, GNUTLS_X509_FMT_PEM) <= 0) {
            snprintf(err, errlen, "cannot load CA certificate %s", cafile);
            goto fail;
        }
    } else if (check != CB_TLS_CHECK_NONE) {
        gnutls_certificate_set_x509_system_trust(c->creds);
    }
    gnutls_init(&c->session, GNUTLS_CLIENT);
    gnutls_set_default_priority(c->session);
    gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, c->creds);
    if (host && *host) gnutls_server_name_set(c->session, GNUTLS_NAME_DNS, host, strlen(host));
    if (check == CB_TLS_CHECK_ISSUER) gnutls_session_set_verify_cert(c->session, NULL, 0); /* pinned: any name */
    else if (check == CB_TLS_CHECK_NAME) gnutls_session_set_verify_cert(c->session, host, 0);
    c->fd = fd;
    gnutls_transport_set_int(c->session, fd);
    gnutls_handshake_set_timeout(c->session, timeout_ms > 0 ? (unsigned)timeout_ms : 1);
    do { rc = gnutls_handshake(c->session); } while (rc < 0 && !gnutls_error_is_fatal(rc));
    if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
        gnutls_datum_t why = {NULL, 0};
        unsigned status = gnutls_session_get_verify_cert_status(c->session);
        if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0) == 0 && why.data) {
            size_t n = strlen((const char *)why.data);
            while (n > 0 && ((char *)why.data)[n - 1] == ' ') ((char *)why.data)[--n] = 0;
            snprintf(err, errlen, "TLS handshake failed: %s", (const char *)why.data);
            gnutls_free(why.data);
        } else {
            snprintf(err, errlen, "TLS handshake failed: %s", gnutls_strerror(rc));
        }
        gnutls_deinit(c->session);
        goto fail;
    }
    if (rc < 0) {
        snprintf(err, errlen, "TLS handshake failed: %s", gnutls_strerror(rc));
        gnutls_deinit(c->session);
        goto fail;
    }
    return c;
fail:
    gnutls_certificate_free_credentials(c->creds);
    free(c);
    return NULL;
}

/* GNUTLS_E_AGAIN comes both from a socket timeout (SO_RCVTIMEO/SO_SNDTIMEO)
 * and, on a blocking socket, after TLS 1.3 post-handshake messages (session
 * tickets). Waiting for the socket with the socket's own timeout tells them
 * apart: ready means try again, nothing within the timeout means give up. */
static int wait_ready(int fd, int optname, short events) {
    struct timeval tv = {0, 0};
    socklen_t len = sizeof tv;
    int ms = -1;
    if (getsockopt(fd, SOL_SOCKET, optname, &tv, &len) == 0 && (tv.tv_sec || tv.tv_usec))
        ms = (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000);
    struct pollfd p = {.fd = fd, .events = events};
    int r;
    do { r = poll(&p, 1, ms); } while (r < 0 && errno == EINTR);
    return r > 0;
}

long cb_tls_client_send(cb_tls_client *c, const void *buf, size_t len) {
    ssize_t n;
    for (;;) {
        n = gnutls_record_send(c->session, buf, len);
        if (n == GNUTLS_E_INTERRUPTED) continue;
        if (n == GNUTLS_E_AGAIN) {
            if (wait_ready(c->fd, SO_SNDTIMEO, POLLOUT)) continue;
            return -2;
        }
        break;
    }
    return n < 0 ? -1 : (long)n;
}

/* One record, waiting at most the socket's receive timeout. */
static long recv_record(cb_tls_client *c, void *buf, size_t len) {
    ssize_t n;
    for (;;) {
        n = gnutls_record_recv(c->session, buf, len);
        if (n == GNUTLS_E_INTERRUPTED) continue;
        if (n == GNUTLS_E_AGAIN) {
            if (gnutls_record_check_pending(c->session) > 0 || wait_ready(c->fd, SO_RCVTIMEO, POLLIN)) continue;
            return -2;
        }
        break;
    }
    if (n == GNUTLS_E_PREMATURE_TERMINATION) return 0;
    return n < 0 ? -1 : (long)n;
}

/* A record at most 16 KiB: after the first one, the records that have
 * already arrived are taken too (while `buf` has room for a whole one), so
 * a large read costs one call, not one per record. */
long cb_tls_client_recv(cb_tls_client *c, void *buf, size_t len) {
    long got = recv_record(c, buf, len);
    if (got <= 0) return got;
    while (len - (size_t)got >= 16384 + 256) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        if (gnutls_record_check_pending(c->session) == 0 && poll(&p, 1, 0) <= 0) break;
        long n = recv_record(c, (char *)buf + got, len - (size_t)got);
        if (n <= 0) break; /* the end or an error shows again on the next call */
        got += n;
    }
    return got;
}

void cb_tls_client_close(cb_tls_client *c) {
    if (!c) return;
    gnutls_bye(c->session, GNUTLS_SHUT_WR);
    gnutls_deinit(c->session);
    gnutls_certificate_free_credentials(c->creds);
    free(c);
}
