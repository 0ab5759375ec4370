"""The PE boots from its ISO on BIOS and UEFI, finds its config on a CBCONFIG
volume, brings up DHCP, starts the daemon, and serves the panel: /api/v1/health
answers through the forwarded port and the configured user can log in. A
broken config still boots, shows the exact error and serves health."""
import json
import os
import re
import time

import pytest

import qemu

USER, PASSWORD = "admin", "e2e-Secret-42"
BOOT_TIMEOUT = 300  # TCG, nested
PANEL_TIMEOUT = 240


def demo_config(hash_):
    return f"""version: 1
hostname: e2e-host
panel:
  users:
    - name: {USER}
      password_hash: "{hash_}"
"""


def boot_pe(vm_factory, iso, tmp_path, files, firmware):
    vol = qemu.make_cbconfig(str(tmp_path / "cbconfig.img"), files)
    vm = vm_factory(name=f"pe-{firmware}", iso=iso, drives=[vol], firmware=firmware, memory=1024,
                    forwards={8443: qemu.free_port()})
    vm.start()
    return vm


def assert_pe_booted(log, hostname):
    # PID 1 logs every step to the serial console
    assert "cloudbios: CloudBIOS " in log and "starting (PID 1)" in log
    assert re.search(r"cloudbios: modules: \d+ device aliases; loaded \d+: .*virtio_net", log), log[-3000:]
    assert "cloudbios: config: using /run/cloudbios/media/CBCONFIG/cloudbios.yaml from LABEL=CBCONFIG" in log
    assert "cloudbios: network: DHCP on eth0" in log
    assert f"cloudbios: hostname: {hostname}" in log or hostname is None
    assert "cloudbios: started daemon (pid " in log


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_boot_serves_health_and_login(vm_factory, iso, tmp_path, firmware):
    vm = boot_pe(vm_factory, iso, tmp_path, {"cloudbios.yaml": demo_config(qemu.password_hash(PASSWORD))}, firmware)
    log = vm.wait_serial("cloudbios: boot: complete", BOOT_TIMEOUT)
    assert_pe_booted(log, "e2e-host")
    vm.wait_serial("lease of 10.0.2.15 obtained", 60)
    # the status banner is redrawn with the address once the lease is in
    vm.wait_serial("cloudbios: status: panel https://10.0.2.15:8443/", 30)

    body = json.loads(vm.wait_https("/api/v1/health", PANEL_TIMEOUT))
    assert body["status"] == "ok"
    assert "version" in body

    status, raw = vm.https("/api/v1/login", method="POST", body={"user": USER, "password": PASSWORD})
    assert status == 200, raw
    login = json.loads(raw)
    assert login["token"] and login["expires"]
    status, raw = vm.https("/api/v1/login", method="POST", body={"user": USER, "password": "wrong"})
    assert status in (401, 403), raw
    status, raw = vm.https("/api/v1/host", headers={"Authorization": f"Bearer {login['token']}"})
    assert status == 200, raw
    # the hypervisor and installer payload came from the ISO: mounted from
    # it first, then copied to RAM under the mount
    log = vm.wait_serial("cloudbios: payload: copied to RAM", 120)
    assert re.search(r"cloudbios: payload: /run/cloudbios/media/CLOUDBIOS/boot/cloudbios\.sqfs \(/dev/\w+\) "
                     r"mounted at /usr/lib/cloudbios/payload in ", log), log[-3000:]
    assert re.search(r"cloudbios: payload: copied to RAM \(\d+ MiB\) in [0-9.]+ s; the boot medium is no longer read "
                     r"\(/dev/loop\d+ reads /run/cloudbios/cloudbios\.sqfs\)", log), log[-3000:]


def test_pxe_kernel_and_initramfs_boot_with_the_payload_inside(vm_factory, iso, tmp_path):
    """images/out/vmlinuz + initramfs.img, as a PXE loader would start them
    (no boot medium at all): the payload is already in place and the panel
    answers."""
    out = os.path.dirname(iso)  # built beside the ISO
    vol = qemu.make_cbconfig(str(tmp_path / "cbconfig.img"), {"cloudbios.yaml": demo_config(qemu.password_hash(PASSWORD))})
    vm = vm_factory(name="pe-pxe", kernel=os.path.join(out, "vmlinuz"), initrd=os.path.join(out, "initramfs.img"),
                    append="console=ttyS0,115200", drives=[vol], memory=1024, forwards={8443: qemu.free_port()})
    vm.start()
    log = vm.wait_serial("cloudbios: boot: complete", BOOT_TIMEOUT)
    assert_pe_booted(log, "e2e-host")
    assert "cloudbios: payload: in the initramfs" in log, log[-3000:]
    body = json.loads(vm.wait_https("/api/v1/health", PANEL_TIMEOUT))
    assert body["status"] == "ok"


def test_broken_config_still_boots_and_shows_the_error(vm_factory, iso, tmp_path):
    broken = "version: 1\nhostname: broken\npanel:\n  listen: \"0.0.0.0:8443\"\n  memroy: 12\n"
    vm = boot_pe(vm_factory, iso, tmp_path, {"cloudbios.yaml": broken}, "bios")
    log = vm.wait_serial("cloudbios: boot: complete", BOOT_TIMEOUT)
    assert "cloudbios: started daemon (pid " in log
    # the exact error, FILE:LINE:COL, on the serial console
    assert re.search(r"cloudbios: config: ERROR: \S*cloudbios\.yaml:5:3: ", log), log[-3000:]
    assert "the daemon starts with defaults" in log
    assert "cloudbios: hostname: cloudbios" in log
    # the daemon runs with defaults: the panel's health answers
    body = json.loads(vm.wait_https("/api/v1/health", PANEL_TIMEOUT))
    assert body["status"] == "ok"


def test_a_core_without_its_payload_boots_and_says_why_there_is_no_panel(vm_factory, iso, tmp_path):
    """Only the ISO's core initramfs, no boot medium (as if only vmlinuz and
    boot/initramfs.img had been copied): PID 1 looks for the payload, reports
    that it is missing, and keeps retrying the daemon, which cannot serve its
    panel without the payload's libraries; nothing panics."""
    out = os.path.dirname(iso)
    core = os.path.join(out, "work", "core.img")
    vol = qemu.make_cbconfig(str(tmp_path / "cbconfig.img"), {"cloudbios.yaml": demo_config(qemu.password_hash(PASSWORD))})
    vm = vm_factory(name="pe-core-only", kernel=os.path.join(out, "vmlinuz"), initrd=core,
                    append="console=ttyS0,115200", drives=[vol], memory=1024, forwards={8443: qemu.free_port()})
    vm.start()
    log = vm.wait_serial("cloudbios: payload: ERROR: ", BOOT_TIMEOUT)
    assert "cloudbios: boot: complete" in log
    assert re.search(r"cloudbios: payload: ERROR: no cloudbios\.sqfs of this build \(id \w+\) on a CLOUDBIOS or "
                     r"CB-SYSTEM volume; the panel, virtual machines and installs are unavailable", log), log[-3000:]
    log = vm.wait_serial("the TLS and HTTP libraries are in the payload, which is unavailable", 120)
    # the daemon is retried, PID 1 lives on
    log = vm.wait_serial("), restart 1", 120)
    assert "cloudbios: daemon exited with status" in log
    assert "Kernel panic" not in log


NETWORK_CONFIG = """
network:
  interfaces:
    # both NICs (QEMU's MACs 52:54:00:12:34:56 and :57) in one bond, with a
    # static address; a VLAN on top of it
    - name: bond0
      bond: {members: ["52:54:00:12:34:5?"], mode: active-backup}
      address: 10.0.2.50/24
      gateway: 10.0.2.2
      dns: [10.0.2.3]
    - name: vlan42
      vlan: {link: bond0, id: 42}
      address: 10.42.0.1/24
"""


def test_static_network_with_a_bond_and_a_vlan(vm_factory, iso, tmp_path):
    """`network.interfaces` is applied by PID 1: the panel answers on the
    static address of a bond of both NICs, and no longer on the DHCP lease
    the NICs had before the config was read; the host API shows the bond,
    its members, the VLAN, the gateway and the name server in effect."""
    vol = qemu.make_cbconfig(str(tmp_path / "cbconfig.img"),
                             {"cloudbios.yaml": demo_config(qemu.password_hash(PASSWORD)) + NETWORK_CONFIG})
    static_port, dhcp_port = "10.0.2.50:8443", "10.0.2.15:8443"
    vm = vm_factory(name="pe-static", iso=iso, drives=[vol], memory=1024,
                    forwards={static_port: qemu.free_port(), dhcp_port: qemu.free_port()},
                    extra=["-nic", "user,model=virtio-net-pci"])
    vm.start()
    log = vm.wait_serial("cloudbios: boot: complete", BOOT_TIMEOUT)
    assert "cloudbios: network: bond0: 10.0.2.50/24 via 10.0.2.2 bond active-backup of eth0+eth1 (network.interfaces)" in log, log[-3000:]
    assert "cloudbios: network: vlan42: 10.42.0.1/24 vlan 42 on bond0 (network.interfaces)" in log, log[-3000:]
    assert not re.search(r"cloudbios: network: .*(failed|cannot|<-)", log), log[-3000:]
    vm.wait_serial("cloudbios: status: panel https://10.0.2.50:8443/", 60)
    body = json.loads(vm.wait_https("/api/v1/health", PANEL_TIMEOUT, port=static_port))
    assert body["status"] == "ok"
    status, raw = vm.https("/api/v1/login", port=static_port, method="POST", body={"user": USER, "password": PASSWORD})
    assert status == 200, raw
    auth = {"Authorization": "Bearer " + json.loads(raw)["token"]}
    status, raw = vm.https("/api/v1/host", port=static_port, headers=auth)
    assert status == 200, raw
    net = json.loads(raw)["network"]
    ifs = {i["name"]: i for i in net["interfaces"]}
    assert ifs["bond0"]["kind"] == "bond" and "10.0.2.50/24" in ifs["bond0"]["addresses"], net
    assert ifs["eth0"]["master"] == "bond0" and ifs["eth1"]["master"] == "bond0", net
    assert ifs["eth0"]["addresses"] == [] and ifs["eth1"]["addresses"] == [], net
    assert ifs["vlan42"]["kind"] == "vlan" and ifs["vlan42"]["addresses"] == ["10.42.0.1/24"], net
    assert "10.0.2.2" in net["gateways"] and net["dns"] == ["10.0.2.3"], net
    # the DHCP lease the NICs had at first is gone: nothing answers there
    try:
        st, _ = vm.https("/api/v1/health", port=dhcp_port, timeout=5)
    except OSError:
        st = None
    assert st is None, f"the panel still answers on the DHCP address (HTTP {st})"
    # the panel powers the appliance off
    status, raw = vm.https("/api/v1/system/shutdown", port=static_port, method="POST", headers=auth)
    assert status == 202, raw
    vm.wait_serial("cloudbios: signal 12: poweroff requested", 60)
    deadline = time.monotonic() + 120
    while vm.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(1)
    assert vm.proc.poll() is not None, "QEMU still runs after the shutdown: " + vm.serial()[-2000:]
