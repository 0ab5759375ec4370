#define _GNU_SOURCE
#include "cb_panel.h"
#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>
#include <nettle/sha1.h>
#include <nettle/sha2.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include "tlslibs.h"

/* gnutls errors are negative and small: this one is ours */
#define CB_TLS_NO_LIBRARY (-100000)

static void require_libraries(void) {
    if (cb_tlslibs_ready()) return;
    fprintf(stderr, "cloudbios: %s\n", cb_tlslibs_error());
    abort();
}

int cb_crypt_verify(const char *password, const char *hash) {
    if (!cb_tlslibs_ready()) return -1;
    size_t hlen = strlen(hash);
    if (hlen == 0 || hash[0] != '$') return -1;
    struct crypt_data *data = calloc(1, sizeof(struct crypt_data));
    if (!data) return -1;
    const char *out = crypt_rn(password, hash, data, (int)sizeof(struct crypt_data));
    int result;
    if (!out || out[0] == '*') {
        result = -1;
    } else {
        size_t olen = strlen(out);
        /* Constant time over the hash length. */
        unsigned char diff = (unsigned char)(olen != hlen);
        for (size_t i = 0; i < hlen; i++) {
            unsigned char o = i < olen ? (unsigned char)out[i] : 0;
            diff |= o ^ (unsigned char)hash[i];
        }
        result = diff == 0 ? 1 : 0;
    }
    explicit_bzero(data, sizeof(struct crypt_data));
    free(data);
    return result;
}

int cb_crypt_hash(const char *password, const char *prefix, char *out, size_t outlen) {
    if (!cb_tlslibs_ready()) return ELIBACC;
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (!crypt_gensalt_rn(prefix, 0, NULL, 0, setting, sizeof setting)) return errno ? errno : EINVAL;
    struct crypt_data *data = calloc(1, sizeof(struct crypt_data));
    if (!data) return ENOMEM;
    const char *h = crypt_rn(password, setting, data, (int)sizeof(struct crypt_data));
    int rc = 0;
    if (!h || h[0] == '*') rc = errno ? errno : EINVAL;
    else if (strlen(h) + 1 > outlen) rc = ERANGE;
    else memcpy(out, h, strlen(h) + 1);
    explicit_bzero(data, sizeof(struct crypt_data));
    free(data);
    return rc;
}

int cb_random(void *buf, size_t len) {
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

void cb_sha1(const void *data, size_t len, uint8_t out[20]) {
    require_libraries();
    struct sha1_ctx c;
    sha1_init(&c);
    sha1_update(&c, len, data);
    sha1_digest(&c, SHA1_DIGEST_SIZE, out);
}

void cb_sha256(const void *data, size_t len, uint8_t out[32]) {
    require_libraries();
    struct sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, len, data);
    sha256_digest(&c, SHA256_DIGEST_SIZE, out);
}

static char *dup_datum(gnutls_datum_t *d) {
    char *s = malloc(d->size + 1);
    if (s) {
        memcpy(s, d->data, d->size);
        s[d->size] = 0;
    }
    gnutls_free(d->data);
    d->data = NULL;
    return s;
}

int cb_tls_generate(const char *hostname, const uint8_t *ip_bytes, const size_t *ip_lens, size_t nips,
                    char **cert_pem, char **key_pem) {
    *cert_pem = NULL;
    *key_pem = NULL;
    if (!cb_tlslibs_ready()) return CB_TLS_NO_LIBRARY;
    gnutls_x509_privkey_t key = NULL;
    gnutls_x509_crt_t crt = NULL;
    gnutls_datum_t d = {NULL, 0};
    int rc;
    *cert_pem = NULL;
    *key_pem = NULL;
#define CHECK(x) do { rc = (x); if (rc < 0) goto out; } while (0)
    CHECK(gnutls_x509_privkey_init(&key));
    CHECK(gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0));
    CHECK(gnutls_x509_crt_init(&crt));
    CHECK(gnutls_x509_crt_set_version(crt, 3));
    unsigned char serial[16];
    if (cb_random(serial, sizeof serial) != 0) { rc = GNUTLS_E_RANDOM_FAILED; goto out; }
    serial[0] &= 0x7f;
    serial[0] |= 0x01;
    CHECK(gnutls_x509_crt_set_serial(crt, serial, sizeof serial));
    time_t now = time(NULL);
    CHECK(gnutls_x509_crt_set_activation_time(crt, now - 3600));
    CHECK(gnutls_x509_crt_set_expiration_time(crt, now + (time_t)3650 * 86400));
    CHECK(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, hostname, (unsigned)strlen(hostname)));
    CHECK(gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_ORGANIZATION_NAME, 0, "CloudBIOS", 9));
    CHECK(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, hostname, (unsigned)strlen(hostname), GNUTLS_FSAN_APPEND));
    size_t off = 0;
    for (size_t i = 0; i < nips; i++) {
        CHECK(gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip_bytes + off, (unsigned)ip_lens[i], GNUTLS_FSAN_APPEND));
        off += ip_lens[i];
    }
    CHECK(gnutls_x509_crt_set_key(crt, key));
    CHECK(gnutls_x509_crt_set_basic_constraints(crt, 0, -1));
    CHECK(gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE | GNUTLS_KEY_KEY_AGREEMENT));
    CHECK(gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0));
    unsigned char kid[64];
    size_t kidlen = sizeof kid;
    if (gnutls_x509_crt_get_key_id(crt, 0, kid, &kidlen) >= 0)
        gnutls_x509_crt_set_subject_key_id(crt, kid, kidlen);
    CHECK(gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0));
    CHECK(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d));
    *cert_pem = dup_datum(&d);
    CHECK(gnutls_x509_privkey_export2_pkcs8(key, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &d));
    *key_pem = dup_datum(&d);
    if (!*cert_pem || !*key_pem) rc = GNUTLS_E_MEMORY_ERROR;
#undef CHECK
out:
    if (rc < 0) {
        free(*cert_pem); free(*key_pem);
        *cert_pem = NULL; *key_pem = NULL;
    }
    if (crt) gnutls_x509_crt_deinit(crt);
    if (key) gnutls_x509_privkey_deinit(key);
    return rc < 0 ? rc : 0;
}

int cb_tls_fingerprint(const char *cert_pem, size_t len, uint8_t out[32]) {
    if (!cb_tlslibs_ready()) return CB_TLS_NO_LIBRARY;
    gnutls_x509_crt_t crt;
    int rc = gnutls_x509_crt_init(&crt);
    if (rc < 0) return rc;
    gnutls_datum_t d = {(unsigned char *)cert_pem, (unsigned)len};
    rc = gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM);
    if (rc >= 0) {
        size_t n = 32;
        rc = gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, out, &n);
    }
    gnutls_x509_crt_deinit(crt);
    return rc < 0 ? rc : 0;
}

int cb_tls_check_pair(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len) {
    if (!cb_tlslibs_ready()) return CB_TLS_NO_LIBRARY;
    gnutls_certificate_credentials_t cred;
    int rc = gnutls_certificate_allocate_credentials(&cred);
    if (rc < 0) return rc;
    gnutls_datum_t c = {(unsigned char *)cert_pem, (unsigned)cert_len};
    gnutls_datum_t k = {(unsigned char *)key_pem, (unsigned)key_len};
    rc = gnutls_certificate_set_x509_key_mem(cred, &c, &k, GNUTLS_X509_FMT_PEM);
    gnutls_certificate_free_credentials(cred);
    return rc < 0 ? rc : 0;
}

const char *cb_tls_error(int code) {
    if (code == CB_TLS_NO_LIBRARY || !cb_tlslibs_ready()) return cb_tlslibs_error();
    return gnutls_strerror(code);
}
