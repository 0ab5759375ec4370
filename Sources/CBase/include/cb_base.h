#ifndef CLOUDBIOS_CB_BASE_H
#define CLOUDBIOS_CB_BASE_H
/* The C under Platform's processes and errors: errno (a macro),
 * posix_spawn's attributes, and the process calls Glibc does not export. */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// The calling thread's errno (errno is a macro).
int cb_errno(void);

/// posix_spawn with a new session (setsid), reset signal mask and default
/// signal handlers. Returns 0 or an errno value.
int cb_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
             int stdin_fd, int stdout_fd, int stderr_fd, int new_session);

/// pipe2(O_CLOEXEC): 0 or -1 with errno.
int cb_pipe_cloexec(int fds[2]);

/// pidfd_open(2): a descriptor that polls readable once `pid` has exited,
/// or -1 with errno (ENOSYS before Linux 5.3, ESRCH when it is gone).
int cb_pidfd_open(pid_t pid);

/// prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants become this
/// process's children instead of PID 1's. 0 or -1 with errno.
int cb_set_child_subreaper(void);

#endif
