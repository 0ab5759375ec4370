#define _GNU_SOURCE
#include "cb_kvmprobe.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Exit codes of the probe child. */
enum { P_OK = 0, P_OPEN = 10, P_API, P_VM, P_MEM, P_VCPU, P_RUNMAP, P_REGS, P_RUN, P_EXIT };

static int probe_child(const char *device) {
    int kvm = open(device, O_RDWR | O_CLOEXEC);
    if (kvm < 0) return P_OPEN;
    if (ioctl(kvm, KVM_GET_API_VERSION, 0) != 12) return P_API;
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) return P_VM;
    unsigned char *mem = mmap(NULL, 0x1000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return P_MEM;
    /* mov al, 0x42; out 0x10, al; mov ecx, 1000000; l: dec ecx; jnz l; hlt
     * The loop is a speed test: natively it takes about a millisecond;
     * where every guest instruction traps it takes seconds. */
    const unsigned char code[] = {0xb0, 0x42, 0xe6, 0x10, 0x66, 0xb9, 0x40, 0x42, 0x0f, 0x00,
                                  0x66, 0x49, 0x75, 0xfc, 0xf4};
    memcpy(mem, code, sizeof code);
    struct kvm_userspace_memory_region region = {
        .slot = 0, .guest_phys_addr = 0x1000, .memory_size = 0x1000, .userspace_addr = (unsigned long)mem};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) return P_MEM;
    int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    if (vcpu < 0) return P_VCPU;
    int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (size <= 0) return P_RUNMAP;
    struct kvm_run *run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    if (run == MAP_FAILED) return P_RUNMAP;
    struct kvm_sregs sregs;
    if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) return P_REGS;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) return P_REGS;
    struct kvm_regs regs;
    memset(&regs, 0, sizeof regs);
    regs.rip = 0x1000;
    regs.rflags = 0x2;
    if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) return P_REGS;
    int saw_io = 0;
    for (int i = 0; i < 16; i++) {
        if (ioctl(vcpu, KVM_RUN, 0) < 0) {
            if (errno == EINTR) continue;
            return P_RUN;
        }
        if (run->exit_reason == KVM_EXIT_IO && run->io.port == 0x10) { saw_io = 1; continue; }
        if (run->exit_reason == KVM_EXIT_HLT) return saw_io ? P_OK : P_EXIT;
        return P_EXIT;
    }
    return P_EXIT;
}

int cb_kvm_probe(const char *device, int timeout_ms, char *reason, int reason_size) {
    if (access(device, F_OK) != 0) {
        snprintf(reason, (size_t)reason_size, "%s does not exist (no kvm module or no hardware virtualization)", device);
        return 0;
    }
    pid_t pid = fork();
    if (pid < 0) { snprintf(reason, (size_t)reason_size, "fork: %s", strerror(errno)); return 0; }
    if (pid == 0) _exit(probe_child(device));
    int status = 0, waited = 0;
    struct timespec step = {0, 10 * 1000 * 1000};
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) { snprintf(reason, (size_t)reason_size, "waitpid: %s", strerror(errno)); return 0; }
        if (waited >= timeout_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            snprintf(reason, (size_t)reason_size, "%s: a test guest did not finish a 1M-instruction loop within %d ms (KVM hangs or traps every instruction here)", device, timeout_ms);
            return 0;
        }
        nanosleep(&step, NULL);
        waited += 10;
    }
    if (!WIFEXITED(status)) { snprintf(reason, (size_t)reason_size, "probe killed by signal %d", WTERMSIG(status)); return 0; }
    switch (WEXITSTATUS(status)) {
    case P_OK: snprintf(reason, (size_t)reason_size, "%s: a test guest ran to HLT", device); return 1;
    case P_OPEN: snprintf(reason, (size_t)reason_size, "cannot open %s", device); break;
    case P_API: snprintf(reason, (size_t)reason_size, "%s: unexpected KVM API version", device); break;
    case P_VM: snprintf(reason, (size_t)reason_size, "%s: KVM_CREATE_VM failed", device); break;
    case P_MEM: snprintf(reason, (size_t)reason_size, "%s: cannot map guest memory", device); break;
    case P_VCPU: snprintf(reason, (size_t)reason_size, "%s: KVM_CREATE_VCPU failed", device); break;
    case P_RUNMAP: snprintf(reason, (size_t)reason_size, "%s: cannot map the vCPU run area", device); break;
    case P_REGS: snprintf(reason, (size_t)reason_size, "%s: cannot set vCPU registers", device); break;
    case P_RUN: snprintf(reason, (size_t)reason_size, "%s: KVM_RUN failed", device); break;
    default: snprintf(reason, (size_t)reason_size, "%s: the test guest did not stop at HLT", device); break;
    }
    return 0;
}
