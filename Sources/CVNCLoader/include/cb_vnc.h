#ifndef CLOUDBIOS_CB_VNC_H
#define CLOUDBIOS_CB_VNC_H
#include <stddef.h>

/* Loads libvncclient and libvncserver (vnc.c): 1 when loaded, else 0 with
 * the reason in err. Needed before any rfb* or Send* function is called. */
int cb_vnc_load(char *err, size_t errlen);
/* Turns libvncclient's log lines on stderr on or off (after cb_vnc_load). */
void cb_vnc_client_logging(int on);

#endif
