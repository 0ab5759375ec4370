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

/// pidfd_open(2): a descriptor that polls readable once `pid` has exited,
/// or -1 with errno (ENOSYS before Linux 5.3, ESRCH when it is gone).
int cb_pidfd_open(pid_t pid);

/// prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants become this
/// process's children instead of PID 1's. 0 or -1 with errno.
int cb_set_child_subreaper(void);

#include "cb_panel.h"
#include "cb_tlslibs.h"
#include "cb_init.h"
#include "cb_vm.h"
#include "cb_tlsclient.h"

#include "cb_viewer.h"
#endif
