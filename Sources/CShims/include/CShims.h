#ifndef CLOUDBIOS_CSHIMS_H
#define CLOUDBIOS_CSHIMS_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "cb_disks.h"

/// The calling thread's errno (errno is a macro).
int cb_errno(void);

/// posix_spawn with a new session (setsid), reset signal mask and default
/// signal handlers. Returns 0 or an errno value.
int cb_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
             int stdin_fd, int stdout_fd, int stderr_fd, int new_session);

#include "cb_panel.h"
#include "cb_tlslibs.h"
#include "cb_init.h"
#include "cb_vm.h"
#include "cb_tlsclient.h"

#include "cb_viewer.h"
#endif
