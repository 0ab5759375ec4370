#define _GNU_SOURCE
#include "CShims.h"
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

static cb_tls_client *tls_connect(int fd, const char *host, const char *cafile, int insecure, int pin_ca,
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
    } else if (!insecure) {
        gnutls_certificate_set_x509_system_trust(c->creds);
    }
    gnutls_init(&c->session, GNUTLS_CLIENT);
    gnutls_set_default_priority(c->session);
    gnutls_credentials_set(c->session, GNUTLS_CRD_CERTIFICATE, c->creds);
    if (host && *host) gnutls_server_name_set(c->session, GNUTLS_NAME_DNS, host, strlen(host));
    if (!insecure) {
        if (cafile && *cafile && pin_ca) gnutls_session_set_verify_cert(c->session, NULL, 0); /* pinned CA: any name */
        else gnutls_session_set_verify_cert(c->session, host, 0);
    }
    c->fd = fd;
    gnutls_transport_set_int(c->session, fd);
    gnutls_handshake_set_timeout(c->session, 10000);
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

cb_tls_client *cb_tls_client_connect(int fd, const char *host, const char *cafile, int insecure,
                                     char *err, size_t errlen) {
    return tls_connect(fd, host, cafile, insecure, 1, err, errlen);
}

cb_tls_client *cb_tls_client_connect_verified(int fd, const char *host, const char *cafile,
                                              char *err, size_t errlen) {
    return tls_connect(fd, host, cafile, 0, 0, err, errlen);
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
        if (n == GNUTLS_E_AGAIN && wait_ready(c->fd, SO_SNDTIMEO, POLLOUT)) continue;
        break;
    }
    return n < 0 ? -1 : (long)n;
}

long cb_tls_client_recv(cb_tls_client *c, void *buf, size_t len) {
    ssize_t n;
    for (;;) {
        n = gnutls_record_recv(c->session, buf, len);
        if (n == GNUTLS_E_INTERRUPTED) continue;
        if (n == GNUTLS_E_AGAIN && (gnutls_record_check_pending(c->session) > 0 ||
                                    wait_ready(c->fd, SO_RCVTIMEO, POLLIN))) continue;
        break;
    }
    if (n == GNUTLS_E_PREMATURE_TERMINATION) return 0;
    return n < 0 ? -1 : (long)n;
}

void cb_tls_client_close(cb_tls_client *c) {
    if (!c) return;
    gnutls_bye(c->session, GNUTLS_SHUT_WR);
    gnutls_deinit(c->session);
    gnutls_certificate_free_credentials(c->creds);
    free(c);
}
