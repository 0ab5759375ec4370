#ifndef CLOUDBIOS_CB_TAP_H
#define CLOUDBIOS_CB_TAP_H

/// Creates the persistent tap device `name` (IFF_TAP | IFF_NO_PI, like `ip
/// tuntap add mode tap`) through /dev/net/tun: busybox's `ip` has no tuntap.
/// Returns 0 or -errno (-ENOENT: no /dev/net/tun, the tun driver is not loaded).
int cb_tap_create(const char *name);

#endif
