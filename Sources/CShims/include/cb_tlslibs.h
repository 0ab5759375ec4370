#ifndef CLOUDBIOS_CB_TLSLIBS_H
#define CLOUDBIOS_CB_TLSLIBS_H
#include <stddef.h>

/// Loads GnuTLS, nettle, libcrypt and libmicrohttpd (dlopen) unless they
/// are loaded: 1 when they can be used, else 0 with the reason in `err`.
/// Every cb_ function that needs them loads them itself; this reports why
/// they cannot be.
int cb_tlslibs_load(char *err, size_t errlen);

#endif
