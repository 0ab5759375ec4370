#ifndef CLOUDBIOS_CB_KVMPROBE_H
#define CLOUDBIOS_CB_KVMPROBE_H

/// Checks that KVM really runs guest code: in a forked child, creates a VM
/// and a vCPU, runs real-mode code (an OUT, a loop of a million iterations,
/// HLT) and expects the HLT exit. The child is killed after `timeout_ms`:
/// nested setups can expose a /dev/kvm on which guests hang or crawl. Returns 1 when KVM
/// works, 0 when not, with the reason in `reason`.
int cb_kvm_probe(const char *device, int timeout_ms, char *reason, int reason_size);

#endif
