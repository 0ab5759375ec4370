#ifndef CLOUDBIOS_CB_PANEL_H
#define CLOUDBIOS_CB_PANEL_H
#include <stddef.h>
#include <stdint.h>

/// Verifies a password against a crypt(3) hash (sha512-crypt `$6$`, yescrypt
/// `$y$`, …) with a constant-time comparison. 1 = match, 0 = mismatch,
/// -1 = the hash is malformed or its method unsupported.
int cb_crypt_verify(const char *password, const char *hash);

/// Hashes a password with a fresh random salt for `prefix` ("$6$", "$y$").
/// Writes a NUL-terminated hash to `out`. Returns 0 or an errno value.
int cb_crypt_hash(const char *password, const char *prefix, char *out, size_t outlen);

/// Fills `buf` from the kernel's CSPRNG (getrandom). Returns 0 or an errno value.
int cb_random(void *buf, size_t len);

void cb_sha1(const void *data, size_t len, uint8_t out[20]);
void cb_sha256(const void *data, size_t len, uint8_t out[32]);

/// Generates an ECDSA P-256 key and a self-signed certificate (SHA-256,
/// 10 years, CN and DNS SAN = hostname, IP SANs from `ips`: 4- or 16-byte
/// addresses packed in `ip_bytes`, lengths in `ip_lens`). PEM texts are
/// malloc'd into *cert_pem and *key_pem (caller frees). Returns 0 or a
/// negative GnuTLS error code; `cb_tls_error` names it.
int cb_tls_generate(const char *hostname, const uint8_t *ip_bytes, const size_t *ip_lens, size_t nips,
                    char **cert_pem, char **key_pem);

/// SHA-256 fingerprint of the first certificate in a PEM text. Returns 0 or
/// a negative GnuTLS error code.
int cb_tls_fingerprint(const char *cert_pem, size_t len, uint8_t out[32]);

/// Checks that a PEM certificate and key load together. 0 or a GnuTLS error.
int cb_tls_check_pair(const char *cert_pem, size_t cert_len, const char *key_pem, size_t key_len);

const char *cb_tls_error(int code);

#endif
