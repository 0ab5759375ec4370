#ifndef CLOUDBIOS_CB_INIT_H
#define CLOUDBIOS_CB_INIT_H
/* What PID 1 alone needs (CInit): signals through a self-pipe, kernel
 * uevents, reboot(2), input events, the hostname. */
#include <stdint.h>
#include <sys/types.h>

/// Installs handlers for the signals PID 1 acts on (SIGTERM, SIGINT,
/// SIGUSR1, SIGUSR2, SIGPWR, SIGHUP; children are the Reaper's) that write
/// the signal number as one byte to a non-blocking pipe (self-pipe; safe
/// whichever thread takes the signal). Returns the pipe's read end, or -1.
int cb_init_signal_pipe(void);
/// Reads one signal number from that pipe: the signal, 0 when none is
/// pending, -1 on error.
int cb_init_read_signal(int fd);
/// A NETLINK_KOBJECT_UEVENT socket bound to the kernel's broadcast group
/// (non-blocking, close-on-exec), or -1.
int cb_init_uevent_socket(void);
/// Ctrl-Alt-Del sends SIGINT to PID 1 instead of rebooting at once.
int cb_init_disable_cad(void);
/// reboot(2): kind 0 = restart, 1 = power off, 2 = halt.
int cb_init_reboot(int kind);
/// Reads one input_event from an evdev fd: returns 1 and fills type/code/
/// value, 0 when nothing is pending, -1 on error.
int cb_init_read_input_event(int fd, uint16_t *type, uint16_t *code, int32_t *value);
/// Sets the process's hostname.
int cb_init_sethostname(const char *name);

#endif
