#if canImport(Glibc)
import Glibc
#endif
import Install
import Platform

extension PE {
    /// The default wait for a trial boot's panel (`cloudbios.trial_timeout=`).
    static let trialTimeout = 600

    /// A trial boot (`cloudbios.trial=1`: GRUB booted a slot an upgrade
    /// wrote, once) whose daemon has not marked its slot good (grubenv's
    /// `cb_good`, written once the panel serves) within the timeout reboots:
    /// GRUB has already cleared the trial, so the next boot is the good
    /// slot's. A kernel or initramfs that does not come up at all is left to
    /// `panic=10` on the same entry.
    func watchTrialBoot(_ cmdline: KernelCommandLine, volumes: [Volume]) {
        guard onTarget, !cmdline.rescue, cmdline.flag("cloudbios.trial") else { return }
        let running = SystemSlot.running(cmdline: cmdline.arguments.joined(separator: " "))
        let timeout = cmdline.value("cloudbios.trial_timeout").flatMap(Int.init) ?? Self.trialTimeout
        log("upgrade: trial boot of slot \(running.rawValue); back to the good slot unless the panel is healthy within \(timeout) s")
        spawnThread { [self] in
            let t0 = Clock.monotonic()
            while Clock.monotonic() - t0 < Double(timeout) {
                sleep(5)
                if let root = self.systemPartitionRoot(volumes) {
                    let e = SystemSlots(root: root).env()
                    if e["cb_good"] == running.rawValue && e["cb_pending"] == nil {
                        self.log("upgrade: slot \(running.rawValue) reached a healthy panel; it is the good slot")
                        return
                    }
                }
            }
            self.log("upgrade: slot \(running.rawValue) did not reach a healthy panel in \(timeout) s; rebooting into the good slot")
            kill(getpid(), SIGTERM)
        }
    }

    /// Where PID 1 mounted the installed system partition (nil: none).
    func systemPartitionRoot(_ volumes: [Volume]) -> String? {
        guard let v = volumes.first(where: { $0.label == PELabel.system }) else { return nil }
        return Mount.table().first(where: { $0.source == v.device })?.target
    }
}
