/* libvncclient and libvncserver, loaded when the viewer or the host-console
 * export first needs them (dlopen) rather than when cloudbios starts: in the
 * PE they and their libraries (libgcrypt, libjpeg, liblzo2, libsasl2) travel
 * in the payload, not in the core initramfs the boot loader reads, and every
 * other cloudbios process (PID 1, the daemon, the CLI) starts without them.
 *
 * Each function cloudbios calls is defined here under its own name and jumps
 * to the library's, so the Swift code calls the API as declared in the
 * libraries' headers. cb_vnc_load() must succeed before any of them is used;
 * it reports a missing library as text instead of failing at start-up. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <rfb/rfbclient.h>
#include <rfb/rfb.h>
#include "cb_vnc.h"

static void *client_lib, *server_lib;
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;

#define VNC_FUNCTIONS(X) \
    X(client_lib, rfbGetClient) \
    X(client_lib, rfbInitClient) \
    X(client_lib, rfbClientCleanup) \
    X(client_lib, rfbClientSetClientData) \
    X(client_lib, rfbClientGetClientData) \
    X(client_lib, HandleRFBServerMessage) \
    X(client_lib, SendFramebufferUpdateRequest) \
    X(client_lib, SendExtendedKeyEvent) \
    X(client_lib, SendKeyEvent) \
    X(client_lib, SendPointerEvent) \
    X(server_lib, rfbGetScreen) \
    X(server_lib, rfbInitServerWithPthreadsAndZRLE) \
    X(server_lib, rfbLogEnable) \
    X(server_lib, rfbMarkRectAsModified) \
    X(server_lib, rfbNewFramebuffer) \
    X(server_lib, rfbProcessEvents) \
    X(server_lib, rfbScreenCleanup) \
    X(server_lib, rfbShutdownServer) \
    X(server_lib, rfbStringToAddr)

#define POINTER(lib, name) static __typeof__(&name) p_##name;
VNC_FUNCTIONS(POINTER)
static rfbBool *p_rfbEnableClientLogging;

static void *open_lib(const char *name, char *err, size_t errlen) {
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(err, errlen, "cannot load %s: %s", name, dlerror());
    return h;
}

int cb_vnc_load(char *err, size_t errlen) {
    int ok = 0;
    pthread_mutex_lock(&load_lock);
    if (p_rfbStringToAddr) { ok = 1; goto out; }
    if (!client_lib && !(client_lib = open_lib("libvncclient.so.1", err, errlen))) goto out;
    if (!server_lib && !(server_lib = open_lib("libvncserver.so.1", err, errlen))) goto out;
#define RESOLVE(lib, name) \
    if (!(p_##name = (__typeof__(&name))dlsym(lib, #name))) { \
        snprintf(err, errlen, "libvnc has no %s", #name); goto out; }
    VNC_FUNCTIONS(RESOLVE)
    p_rfbEnableClientLogging = (rfbBool *)dlsym(client_lib, "rfbEnableClientLogging");
    ok = 1;
out:
    pthread_mutex_unlock(&load_lock);
    return ok;
}

void cb_vnc_client_logging(int on) {
    if (p_rfbEnableClientLogging) *p_rfbEnableClientLogging = on ? 1 : 0;
}

static void unloaded(const char *name) {
    fprintf(stderr, "cloudbios: %s called before cb_vnc_load()\n", name);
    abort();
}

#define CHECK(name) if (!p_##name) unloaded(#name)

rfbClient *rfbGetClient(int bits, int samples, int bytes) { CHECK(rfbGetClient); return p_rfbGetClient(bits, samples, bytes); }
rfbBool rfbInitClient(rfbClient *c, int *argc, char **argv) { CHECK(rfbInitClient); return p_rfbInitClient(c, argc, argv); }
void rfbClientCleanup(rfbClient *c) { CHECK(rfbClientCleanup); p_rfbClientCleanup(c); }
void rfbClientSetClientData(rfbClient *c, void *tag, void *data) { CHECK(rfbClientSetClientData); p_rfbClientSetClientData(c, tag, data); }
void *rfbClientGetClientData(rfbClient *c, void *tag) { CHECK(rfbClientGetClientData); return p_rfbClientGetClientData(c, tag); }
rfbBool HandleRFBServerMessage(rfbClient *c) { CHECK(HandleRFBServerMessage); return p_HandleRFBServerMessage(c); }
rfbBool SendFramebufferUpdateRequest(rfbClient *c, int x, int y, int w, int h, rfbBool incremental) {
    CHECK(SendFramebufferUpdateRequest); return p_SendFramebufferUpdateRequest(c, x, y, w, h, incremental);
}
rfbBool SendExtendedKeyEvent(rfbClient *c, uint32_t keysym, uint32_t keycode, rfbBool down) {
    CHECK(SendExtendedKeyEvent); return p_SendExtendedKeyEvent(c, keysym, keycode, down);
}
rfbBool SendKeyEvent(rfbClient *c, uint32_t key, rfbBool down) { CHECK(SendKeyEvent); return p_SendKeyEvent(c, key, down); }
rfbBool SendPointerEvent(rfbClient *c, int x, int y, int buttonMask) { CHECK(SendPointerEvent); return p_SendPointerEvent(c, x, y, buttonMask); }

rfbScreenInfoPtr rfbGetScreen(int *argc, char **argv, int width, int height, int bitsPerSample, int samplesPerPixel, int bytesPerPixel) {
    CHECK(rfbGetScreen); return p_rfbGetScreen(argc, argv, width, height, bitsPerSample, samplesPerPixel, bytesPerPixel);
}
void rfbInitServerWithPthreadsAndZRLE(rfbScreenInfoPtr s) { CHECK(rfbInitServerWithPthreadsAndZRLE); p_rfbInitServerWithPthreadsAndZRLE(s); }
void rfbLogEnable(int enabled) { CHECK(rfbLogEnable); p_rfbLogEnable(enabled); }
void rfbMarkRectAsModified(rfbScreenInfoPtr s, int x1, int y1, int x2, int y2) { CHECK(rfbMarkRectAsModified); p_rfbMarkRectAsModified(s, x1, y1, x2, y2); }
void rfbNewFramebuffer(rfbScreenInfoPtr s, char *fb, int width, int height, int bitsPerSample, int samplesPerPixel, int bytesPerPixel) {
    CHECK(rfbNewFramebuffer); p_rfbNewFramebuffer(s, fb, width, height, bitsPerSample, samplesPerPixel, bytesPerPixel);
}
rfbBool rfbProcessEvents(rfbScreenInfoPtr s, long usec) { CHECK(rfbProcessEvents); return p_rfbProcessEvents(s, usec); }
void rfbScreenCleanup(rfbScreenInfoPtr s) { CHECK(rfbScreenCleanup); p_rfbScreenCleanup(s); }
void rfbShutdownServer(rfbScreenInfoPtr s, rfbBool disconnectClients) { CHECK(rfbShutdownServer); p_rfbShutdownServer(s, disconnectClients); }
int rfbStringToAddr(char *string, in_addr_t *addr) { CHECK(rfbStringToAddr); return p_rfbStringToAddr(string, addr); }
