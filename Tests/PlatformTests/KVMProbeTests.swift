import Testing
@testable import Platform

@Suite struct KVMProbeTests {
    @Test func missingDeviceIsReportedNotFatal() {
        let p = KVM.probe(device: "/nonexistent/kvm")
        #expect(!p.usable)
        #expect(p.reason.contains("/nonexistent/kvm does not exist"))
    }

    @Test func probeAlwaysAnswersWithinItsTimeout() {
        let p = KVM.probe(timeoutMilliseconds: 1500)
        #expect(!p.reason.isEmpty)
    }
}
