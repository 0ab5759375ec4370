#define _GNU_SOURCE
#include "CShims.h"
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cb_tls_client {
    gnutls_session_t session;
    gnutls_certificate_credentials_t creds;
};

static cb_tls_client *tls_connect(int fd, const char *host, const char *cafile, int insecure, int pin_ca,
                                  char *err, size_t errlen) {
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
    gnutls_transport_set_int(c->session, fd);
    gnutls_handshake_set_timeout(c->session, 10000);
    /* a receive timeout on the socket (SO_RCVTIMEO) surfaces as E_AGAIN: give up then */
    do { rc = gnutls_handshake(c->session); } while (rc < 0 && rc != GNUTLS_E_AGAIN && !gnutls_error_is_fatal(rc));
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

long cb_tls_client_send(cb_tls_client *c, const void *buf, size_t len) {
    ssize_t n;
    do { n = gnutls_record_send(c->session, buf, len); } while (n == GNUTLS_E_INTERRUPTED);
    return n < 0 ? -1 : (long)n;
}

long cb_tls_client_recv(cb_tls_client *c, void *buf, size_t len) {
    ssize_t n;
    do { n = gnutls_record_recv(c->session, buf, len); } while (n == GNUTLS_E_INTERRUPTED);
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
