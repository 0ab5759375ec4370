#ifndef CLOUDBIOS_CB_KVM_H
#define CLOUDBIOS_CB_KVM_H
#include <stddef.h>
#include <sys/types.h>

/// Forks the KVM probe's child: on `device` (normally /dev/kvm) it creates a
/// VM and a vCPU and runs a few real-mode instructions to HLT, and exits 0
/// when they ran, else with the code of the step that failed (10-20). It
/// dies with its parent and by itself after `timeout_ms` plus 2 s. Returns
/// its pid, or -errno when fork fails.
pid_t cb_kvm_probe_fork(const char *device, int timeout_ms);

/// What the probe child's exit status (128+signal when it was killed) says
/// about KVM on `device`: 1 when it works, else 0; `reason` says why.
int cb_kvm_probe_verdict(const char *device, int status, char *reason, size_t reason_len);

#endif
