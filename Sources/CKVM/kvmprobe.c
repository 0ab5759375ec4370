#define _GNU_SOURCE
#include "cb_kvm.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <unistd.h>

/* Exit codes of the probe child: which step failed. */
enum {
    PROBE_OK = 0,
    PROBE_OPEN = 10,
    PROBE_API = 11,
    PROBE_CREATE_VM = 12,
    PROBE_MEMORY = 13,
    PROBE_CREATE_VCPU = 14,
    PROBE_RUN_MMAP = 15,
    PROBE_REGS = 16,
    PROBE_RUN = 17,
    PROBE_NOT_IO = 18,
    PROBE_NOT_HLT = 19,
    PROBE_WRONG_VALUE = 20,
};

/* Runs in the forked child: only raw syscalls, no allocation. */
static int probe_child(const char *dev) {
    /* Real mode at 0x1000: a loop of 4M iterations (a few ms on working KVM;
       nested setups that trap every instruction take seconds or hang), then
       mov al,0x42; out 0x10,al; hlt. */
    static const unsigned char code[] = {
        0x66, 0xb9, 0x00, 0x00, 0x40, 0x00, /* mov ecx, 0x400000 */
        0x66, 0x49,                         /* dec ecx */
        0x75, 0xfc,                         /* jnz -4 */
        0xb0, 0x42,                         /* mov al, 0x42 */
        0xe6, 0x10,                         /* out 0x10, al */
        0xf4,                               /* hlt */
    };
    int kvm = open(dev, O_RDWR | O_CLOEXEC);
    if (kvm < 0) return PROBE_OPEN;
    if (ioctl(kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) return PROBE_API;
    int vm = ioctl(kvm, KVM_CREATE_VM, 0UL);
    if (vm < 0) return PROBE_CREATE_VM;
    unsigned char *mem = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return PROBE_MEMORY;
    memcpy(mem, code, sizeof code);
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0x1000, .memory_size = 0x1000, .userspace_addr = (unsigned long)mem,
    };
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) return PROBE_MEMORY;
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0UL);
    if (vcpu < 0) return PROBE_CREATE_VCPU;
    int runsize = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (runsize <= 0) return PROBE_RUN_MMAP;
    struct kvm_run *run = mmap(NULL, (size_t)runsize, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) return PROBE_RUN_MMAP;
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) return PROBE_REGS;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) return PROBE_REGS;
    struct kvm_regs regs;
    memset(&regs, 0, sizeof regs);
    regs.rip = 0x1000;
    regs.rflags = 0x2;
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) return PROBE_REGS;
    if (ioctl(vcpu, KVM_RUN, 0) < 0) return PROBE_RUN;
    if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT || run->io.port != 0x10)
        return PROBE_NOT_IO;
    if (*((unsigned char *)run + run->io.data_offset) != 0x42) return PROBE_WRONG_VALUE;
    if (ioctl(vcpu, KVM_RUN, 0) < 0) return PROBE_RUN;
    if (run->exit_reason != KVM_EXIT_HLT) return PROBE_NOT_HLT;
    return PROBE_OK;
}

pid_t cb_kvm_probe_fork(const char *device, int timeout_ms) {
    pid_t pid = fork();
    if (pid == 0) {
        /* Keep none of the caller's descriptors (its listening sockets): a
           child stuck in KVM_RUN must not hold the panel's port after the
           daemon is gone, nor outlive it. */
        syscall(SYS_close_range, 3U, ~0U, 0U);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        alarm((unsigned)(timeout_ms / 1000 + 2)); /* belt and braces */
        _exit(probe_child(device));
    }
    return pid < 0 ? -errno : pid;
}

int cb_kvm_probe_verdict(const char *device, int status, char *reason, size_t reason_len) {
    if (status > 128) {
        snprintf(reason, reason_len, "KVM probe died with signal %d", status - 128);
        return 0;
    }
    switch (status) {
    case PROBE_OK: snprintf(reason, reason_len, "%s works (test guest ran to HLT)", device); return 1;
    case PROBE_OPEN: snprintf(reason, reason_len, "cannot open %s", device); return 0;
    case PROBE_API: snprintf(reason, reason_len, "%s has an unsupported KVM API version", device); return 0;
    case PROBE_CREATE_VM: snprintf(reason, reason_len, "KVM_CREATE_VM failed on %s", device); return 0;
    case PROBE_MEMORY: snprintf(reason, reason_len, "KVM memory region setup failed"); return 0;
    case PROBE_CREATE_VCPU: snprintf(reason, reason_len, "KVM_CREATE_VCPU failed"); return 0;
    case PROBE_RUN_MMAP: snprintf(reason, reason_len, "mapping the KVM vCPU run area failed"); return 0;
    case PROBE_REGS: snprintf(reason, reason_len, "setting KVM vCPU registers failed"); return 0;
    case PROBE_RUN: snprintf(reason, reason_len, "KVM_RUN failed"); return 0;
    case PROBE_NOT_IO: snprintf(reason, reason_len, "KVM test guest did not exit on its port write"); return 0;
    case PROBE_NOT_HLT: snprintf(reason, reason_len, "KVM test guest did not exit on HLT"); return 0;
    case PROBE_WRONG_VALUE: snprintf(reason, reason_len, "KVM test guest wrote a wrong value"); return 0;
    default: snprintf(reason, reason_len, "KVM probe failed (code %d)", status); return 0;
    }
}
