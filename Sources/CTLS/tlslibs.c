/* Loads GnuTLS, nettle, libcrypt and libmicrohttpd when cloudbios first
 * needs them (see tlslibs.h and cb_tlslibs.h). */
#define _GNU_SOURCE
#define CB_TLSLIBS_DEFINE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include "tlslibs.h"
#include "../CMicroHTTPD/shim.h"
#include "cb_tlslibs.h"

#define CB_TLSLIBS_POINTER(name) __typeof__(&name) cb_dl_##name;
CB_GNUTLS_FUNCTIONS(CB_TLSLIBS_POINTER)
CB_NETTLE_FUNCTIONS(CB_TLSLIBS_POINTER)
CB_CRYPT_FUNCTIONS(CB_TLSLIBS_POINTER)
CB_MHD_FUNCTIONS(CB_TLSLIBS_POINTER)
gnutls_free_function cb_dl_gnutls_free;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int loaded;
static char failure[512];

static void *open_lib(const char *name) {
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(failure, sizeof failure, "cannot load %s: %s", name, dlerror());
    return h;
}

static int load_locked(void) {
    static void *gnutls, *nettle, *crypt, *mhd;
    if (!gnutls && !(gnutls = open_lib("libgnutls.so.30"))) return 0;
    if (!nettle && !(nettle = open_lib("libnettle.so.8"))) return 0;
    if (!crypt && !(crypt = open_lib("libcrypt.so.1"))) return 0;
    if (!mhd && !(mhd = open_lib("libmicrohttpd.so.12"))) return 0;
#define CB_TLSLIBS_RESOLVE(lib, name) \
    if (!(cb_dl_##name = (__typeof__(&name))dlsym(lib, #name))) { \
        snprintf(failure, sizeof failure, "%s has no %s", #lib, #name); return 0; }
#define CB_FROM_GNUTLS(name) CB_TLSLIBS_RESOLVE(gnutls, name)
#define CB_FROM_NETTLE(name) CB_TLSLIBS_RESOLVE(nettle, name)
#define CB_FROM_CRYPT(name) CB_TLSLIBS_RESOLVE(crypt, name)
#define CB_FROM_MHD(name) CB_TLSLIBS_RESOLVE(mhd, name)
    CB_GNUTLS_FUNCTIONS(CB_FROM_GNUTLS)
    CB_NETTLE_FUNCTIONS(CB_FROM_NETTLE)
    CB_CRYPT_FUNCTIONS(CB_FROM_CRYPT)
    CB_MHD_FUNCTIONS(CB_FROM_MHD)
    gnutls_free_function *f = (gnutls_free_function *)dlsym(gnutls, "gnutls_free");
    if (!f || !*f) { snprintf(failure, sizeof failure, "gnutls has no gnutls_free"); return 0; }
    cb_dl_gnutls_free = *f;
    return 1;
}

int cb_tlslibs_ready(void) {
    if (__atomic_load_n(&loaded, __ATOMIC_ACQUIRE)) return 1;
    pthread_mutex_lock(&lock);
    if (!loaded && load_locked()) __atomic_store_n(&loaded, 1, __ATOMIC_RELEASE);
    int ok = loaded;
    pthread_mutex_unlock(&lock);
    return ok;
}

const char *cb_tlslibs_error(void) {
    static __thread char copy[sizeof failure];
    pthread_mutex_lock(&lock);
    snprintf(copy, sizeof copy, "%s", failure[0] ? failure : "the TLS libraries are not loaded");
    pthread_mutex_unlock(&lock);
    return copy;
}

int cb_tlslibs_load(char *err, size_t errlen) {
    if (cb_tlslibs_ready()) return 1;
    snprintf(err, errlen, "%s", cb_tlslibs_error());
    return 0;
}
