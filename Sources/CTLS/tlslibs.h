/* GnuTLS, nettle and libcrypt as cloudbios calls them: through pointers
 * that cb_tlslibs_load() fills from the libraries (dlopen), not through
 * symbols the dynamic linker resolves at start-up. In the PE those
 * libraries travel in the payload, so PID 1 and every command that needs
 * no TLS start without them.
 *
 * A C file includes this after the libraries' own headers: each function it
 * calls by its usual name then goes through its pointer. It must call
 * cb_tlslibs_ready() (and give up if that fails) before the first call. */
#ifndef CLOUDBIOS_TLSLIBS_H
#define CLOUDBIOS_TLSLIBS_H
#include <crypt.h>
#include <nettle/sha1.h>
#include <nettle/sha2.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#define CB_GNUTLS_FUNCTIONS(X) \
    X(gnutls_bye) \
    X(gnutls_certificate_allocate_credentials) \
    X(gnutls_certificate_free_credentials) \
    X(gnutls_certificate_set_x509_key_mem) \
    X(gnutls_certificate_set_x509_system_trust) \
    X(gnutls_certificate_set_x509_trust_file) \
    X(gnutls_certificate_verification_status_print) \
    X(gnutls_credentials_set) \
    X(gnutls_deinit) \
    X(gnutls_error_is_fatal) \
    X(gnutls_handshake) \
    X(gnutls_handshake_set_timeout) \
    X(gnutls_init) \
    X(gnutls_record_check_pending) \
    X(gnutls_record_recv) \
    X(gnutls_record_send) \
    X(gnutls_server_name_set) \
    X(gnutls_session_get_verify_cert_status) \
    X(gnutls_session_set_verify_cert) \
    X(gnutls_set_default_priority) \
    X(gnutls_strerror) \
    X(gnutls_transport_set_int2) \
    X(gnutls_x509_crt_deinit) \
    X(gnutls_x509_crt_export2) \
    X(gnutls_x509_crt_get_fingerprint) \
    X(gnutls_x509_crt_get_key_id) \
    X(gnutls_x509_crt_import) \
    X(gnutls_x509_crt_init) \
    X(gnutls_x509_crt_set_activation_time) \
    X(gnutls_x509_crt_set_basic_constraints) \
    X(gnutls_x509_crt_set_dn_by_oid) \
    X(gnutls_x509_crt_set_expiration_time) \
    X(gnutls_x509_crt_set_key) \
    X(gnutls_x509_crt_set_key_purpose_oid) \
    X(gnutls_x509_crt_set_key_usage) \
    X(gnutls_x509_crt_set_serial) \
    X(gnutls_x509_crt_set_subject_alt_name) \
    X(gnutls_x509_crt_set_subject_key_id) \
    X(gnutls_x509_crt_set_version) \
    X(gnutls_x509_crt_sign2) \
    X(gnutls_x509_privkey_deinit) \
    X(gnutls_x509_privkey_export2_pkcs8) \
    X(gnutls_x509_privkey_generate) \
    X(gnutls_x509_privkey_init)

/* (nettle's headers name these sha1_init etc. through macros) */
#define CB_NETTLE_FUNCTIONS(X) \
    X(nettle_sha1_init) \
    X(nettle_sha1_update) \
    X(nettle_sha1_digest) \
    X(nettle_sha256_init) \
    X(nettle_sha256_update) \
    X(nettle_sha256_digest)

#define CB_CRYPT_FUNCTIONS(X) \
    X(crypt_rn) \
    X(crypt_gensalt_rn)

#define CB_TLSLIBS_EXTERN(name) extern __typeof__(&name) cb_dl_##name;
CB_GNUTLS_FUNCTIONS(CB_TLSLIBS_EXTERN)
CB_NETTLE_FUNCTIONS(CB_TLSLIBS_EXTERN)
CB_CRYPT_FUNCTIONS(CB_TLSLIBS_EXTERN)
/* gnutls_free is a variable holding GnuTLS's free function */
extern gnutls_free_function cb_dl_gnutls_free;

/* 1 when the libraries are loaded (loading them now if need be), else 0
 * with the reason for cb_tlslibs_error(). */
int cb_tlslibs_ready(void);
const char *cb_tlslibs_error(void);

#ifndef CB_TLSLIBS_DEFINE
#undef gnutls_free
#define gnutls_free(a) ((*cb_dl_gnutls_free)((void *)(a)), (a) = NULL)
#define gnutls_bye (*cb_dl_gnutls_bye)
#define gnutls_certificate_allocate_credentials (*cb_dl_gnutls_certificate_allocate_credentials)
#define gnutls_certificate_free_credentials (*cb_dl_gnutls_certificate_free_credentials)
#define gnutls_certificate_set_x509_key_mem (*cb_dl_gnutls_certificate_set_x509_key_mem)
#define gnutls_certificate_set_x509_system_trust (*cb_dl_gnutls_certificate_set_x509_system_trust)
#define gnutls_certificate_set_x509_trust_file (*cb_dl_gnutls_certificate_set_x509_trust_file)
#define gnutls_certificate_verification_status_print (*cb_dl_gnutls_certificate_verification_status_print)
#define gnutls_credentials_set (*cb_dl_gnutls_credentials_set)
#define gnutls_deinit (*cb_dl_gnutls_deinit)
#define gnutls_error_is_fatal (*cb_dl_gnutls_error_is_fatal)
#define gnutls_handshake (*cb_dl_gnutls_handshake)
#define gnutls_handshake_set_timeout (*cb_dl_gnutls_handshake_set_timeout)
#define gnutls_init (*cb_dl_gnutls_init)
#define gnutls_record_check_pending (*cb_dl_gnutls_record_check_pending)
#define gnutls_record_recv (*cb_dl_gnutls_record_recv)
#define gnutls_record_send (*cb_dl_gnutls_record_send)
#define gnutls_server_name_set (*cb_dl_gnutls_server_name_set)
#define gnutls_session_get_verify_cert_status (*cb_dl_gnutls_session_get_verify_cert_status)
#define gnutls_session_set_verify_cert (*cb_dl_gnutls_session_set_verify_cert)
#define gnutls_set_default_priority (*cb_dl_gnutls_set_default_priority)
#define gnutls_strerror (*cb_dl_gnutls_strerror)
#define gnutls_transport_set_int2 (*cb_dl_gnutls_transport_set_int2)
#define gnutls_x509_crt_deinit (*cb_dl_gnutls_x509_crt_deinit)
#define gnutls_x509_crt_export2 (*cb_dl_gnutls_x509_crt_export2)
#define gnutls_x509_crt_get_fingerprint (*cb_dl_gnutls_x509_crt_get_fingerprint)
#define gnutls_x509_crt_get_key_id (*cb_dl_gnutls_x509_crt_get_key_id)
#define gnutls_x509_crt_import (*cb_dl_gnutls_x509_crt_import)
#define gnutls_x509_crt_init (*cb_dl_gnutls_x509_crt_init)
#define gnutls_x509_crt_set_activation_time (*cb_dl_gnutls_x509_crt_set_activation_time)
#define gnutls_x509_crt_set_basic_constraints (*cb_dl_gnutls_x509_crt_set_basic_constraints)
#define gnutls_x509_crt_set_dn_by_oid (*cb_dl_gnutls_x509_crt_set_dn_by_oid)
#define gnutls_x509_crt_set_expiration_time (*cb_dl_gnutls_x509_crt_set_expiration_time)
#define gnutls_x509_crt_set_key (*cb_dl_gnutls_x509_crt_set_key)
#define gnutls_x509_crt_set_key_purpose_oid (*cb_dl_gnutls_x509_crt_set_key_purpose_oid)
#define gnutls_x509_crt_set_key_usage (*cb_dl_gnutls_x509_crt_set_key_usage)
#define gnutls_x509_crt_set_serial (*cb_dl_gnutls_x509_crt_set_serial)
#define gnutls_x509_crt_set_subject_alt_name (*cb_dl_gnutls_x509_crt_set_subject_alt_name)
#define gnutls_x509_crt_set_subject_key_id (*cb_dl_gnutls_x509_crt_set_subject_key_id)
#define gnutls_x509_crt_set_version (*cb_dl_gnutls_x509_crt_set_version)
#define gnutls_x509_crt_sign2 (*cb_dl_gnutls_x509_crt_sign2)
#define gnutls_x509_privkey_deinit (*cb_dl_gnutls_x509_privkey_deinit)
#define gnutls_x509_privkey_export2_pkcs8 (*cb_dl_gnutls_x509_privkey_export2_pkcs8)
#define gnutls_x509_privkey_generate (*cb_dl_gnutls_x509_privkey_generate)
#define gnutls_x509_privkey_init (*cb_dl_gnutls_x509_privkey_init)
#define nettle_sha1_init (*cb_dl_nettle_sha1_init)
#define nettle_sha1_update (*cb_dl_nettle_sha1_update)
#define nettle_sha1_digest (*cb_dl_nettle_sha1_digest)
#define nettle_sha256_init (*cb_dl_nettle_sha256_init)
#define nettle_sha256_update (*cb_dl_nettle_sha256_update)
#define nettle_sha256_digest (*cb_dl_nettle_sha256_digest)
#define crypt_rn (*cb_dl_crypt_rn)
#define crypt_gensalt_rn (*cb_dl_crypt_gensalt_rn)
#endif
#endif
