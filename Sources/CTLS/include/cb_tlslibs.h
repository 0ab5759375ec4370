#ifndef CLOUDBIOS_CB_TLSLIBS_H
#define CLOUDBIOS_CB_TLSLIBS_H
/* CTLS: GnuTLS, nettle, libcrypt and libmicrohttpd, loaded on first use
 * (tlslibs.h), and everything that calls through them: the panel's
 * certificates, password hashes and digests (cb_panel.h), TLS client
 * sessions (cb_tlsclient.h) and file hashes (cb_sha256.h). */
#include <stddef.h>

/// Loads GnuTLS, nettle, libcrypt and libmicrohttpd (dlopen) unless they
/// are loaded: 1 when they can be used, else 0 with the reason in `err`.
/// Every cb_ function that needs them loads them itself; this reports why
/// they cannot be.
int cb_tlslibs_load(char *err, size_t errlen);

#endif
