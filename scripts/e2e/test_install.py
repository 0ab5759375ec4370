"""End to end: a headless install from the ISO, then the installed disk boots.

Boots images/out/cloudbios.iso under TCG with three disks: the target
(serial TARGET01, matched by the glob TARGET*), a decoy holding an ext4
filesystem with data (serial DECOY01) and a CBCONFIG volume whose config has
`install:`. The PE installs without a person and powers off; the decoy is
byte-for-byte unchanged. The installed disk then boots alone on BIOS, on
UEFI and on UEFI with Secure Boot enforced (Debian's signed shim, GRUB and
kernel) to the panel, where a login sees the configured VM autostarted.
A config selecting a non-empty disk without `wipe: true` is refused on the
console and the disk is unchanged.

Also `python3 scripts/e2e/test_install.py --bench`: prints the seconds of one
headless install (boot, install, power off).
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "scripts", "lib"))
ISO = os.path.join(REPO, "images", "out", "cloudbios.iso")
PASSWORD = "install-test-pw"

try:
    import qemu  # scripts/lib/qemu.py
except ImportError:  # pragma: no cover
    qemu = None

if qemu is not None:
    # QEMU creates the QMP socket a moment before it listens on it.
    _qmp_init = qemu.QMP.__init__

    def _qmp_init_retrying(self, path, timeout=10):
        deadline = time.monotonic() + 10
        while True:
            try:
                return _qmp_init(self, path, timeout)
            except (ConnectionRefusedError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    qemu.QMP.__init__ = _qmp_init_retrying

needs_iso = pytest.mark.skipif(qemu is None or not os.path.exists(ISO),
                               reason="needs images/out/cloudbios.iso (scripts/build) and scripts/lib/qemu.py")


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=True, check=True, capture_output=True, text=True, **kw).stdout


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_guest(workdir):
    guest = os.path.join(workdir, "guest")
    sh(f"sh {REPO}/scripts/lib/make-guest.sh {guest}")
    return guest


def make_config_volume(workdir, guest, install_yaml):
    """A FAT volume labelled CBCONFIG with cloudbios.yaml and the guest."""
    src = os.path.join(workdir, "cbconfig")
    os.makedirs(os.path.join(src, "guest"), exist_ok=True)
    for f in ("vmlinuz", "initrd.img"):
        sh(f"cp {guest}/{f} {src}/guest/{f}")
    pw_hash = sh(f"openssl passwd -6 {PASSWORD}").strip()
    with open(os.path.join(src, "cloudbios.yaml"), "w") as f:
        f.write(f"""version: 1
hostname: installed
panel:
  users:
    - name: admin
      password_hash: "{pw_hash}"
images:
  - name: tiny-kernel
    file: guest/vmlinuz
  - name: tiny-initrd
    file: guest/initrd.img
vms:
  - name: tiny
    memory: 128
    kernel: tiny-kernel
    initrd: tiny-initrd
    append: "console=ttyS0"
    network: none
    autostart: true
    display: true
{install_yaml}""")
    img = os.path.join(workdir, "cbconfig.img")
    kib = int(sh(f"du -sk {src}").split()[0]) * 5 // 4 + 2048
    sh(f"mkfs.fat -C -n CBCONFIG {img} {kib}")
    sh(f"MTOOLS_SKIP_CHECK=1 mcopy -s -i {img} {src}/* ::/")
    return img


def make_decoy(path, size="1G"):
    data = path + ".d"
    os.makedirs(data, exist_ok=True)
    with open(os.path.join(data, "precious.txt"), "w") as f:
        f.write("customer data, do not touch\n" * 1000)
    sh(f"truncate -s {size} {path} && mkfs.ext4 -q -F -L PRECIOUS -d {data} {path}")
    return path


INSTALL = """install:
  disk: {serial: "TARGET*"}
  wipe: false
  after: poweroff
"""


def disks(*pairs):
    """QEMU arguments for virtio disks with serial numbers: (path, serial)..."""
    args = []
    for i, (path, serial) in enumerate(pairs):
        args += ["-drive", f"if=none,id=disk{i},file={path},format=raw",
                 "-device", f"virtio-blk-pci,drive=disk{i},serial={serial}"]
    return args


def headless_install(workdir, guest, timeout=300):
    """Boots the ISO with target, decoy and CBCONFIG; returns (target, decoy, decoy sha, seconds, serial log)."""
    target = os.path.join(workdir, "target.img")
    sh(f"truncate -s 4G {target}")
    decoy = make_decoy(os.path.join(workdir, "decoy.img"))
    before = sha256(decoy)
    cfg = make_config_volume(workdir, guest, INSTALL)
    vm = qemu.VM("install", iso=ISO, memory=1536,
                 extra=disks((target, "TARGET01"), (decoy, "DECOY01"), (cfg, "CBCFG01")))
    t0 = time.monotonic()
    try:
        vm.start()
        vm.wait_serial("install: 100%", timeout)
        # after: poweroff — QEMU (-no-reboot) exits when the PE powers off.
        vm.proc.wait(timeout=90)
        seconds = time.monotonic() - t0
        log = vm.serial()
    finally:
        vm.cleanup()
    return target, decoy, before, seconds, log


def login(vm):
    status, body = vm.https("/api/v1/login", method="POST", body={"user": "admin", "password": PASSWORD})
    assert status == 200, body
    return json.loads(body)["token"]


def wait_vm_running(vm, token, name, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        status, body = vm.https("/api/v1/vms", headers={"Authorization": f"Bearer {token}"})
        if status == 200:
            vms = json.loads(body)
            vms = vms.get("vms", vms) if isinstance(vms, dict) else vms
            last = vms
            for v in vms:
                if v.get("name") == name and v.get("state") == "running":
                    return v
        time.sleep(2)
    raise AssertionError(f"VM {name} not running after {timeout} s: {last}\n{vm.serial()[-3000:]}")


def boot_installed(target, firmware, extra=(), name=None):
    """Boots the installed disk alone to the panel and the autostarted VM; returns the serial log."""
    port = qemu.free_port()
    vm = qemu.VM(name or f"installed-{firmware}", firmware=firmware, memory=1536,
                 extra=disks((target, "TARGET01")) + list(extra), forwards={8443: port})
    try:
        vm.start()
        health = json.loads(vm.wait_https("/api/v1/health", 300))
        assert health["status"] == "ok"
        log = vm.serial()
        assert "cloudbios.display=tiny" in log, "GRUB's default entry is the display VM"
        token = login(vm)
        v = wait_vm_running(vm, token, "tiny", 180)
        assert v["name"] == "tiny"
        return vm.serial()
    finally:
        vm.cleanup()


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="cloudbios-install-e2e-", dir="/var/tmp")
    yield d
    sh(f"rm -rf {d}")


@pytest.fixture(scope="module")
def guest(workdir):
    return make_guest(workdir)


@pytest.fixture(scope="module")
def installed(workdir, guest):
    return headless_install(workdir, guest)


@needs_iso
def test_headless_install_leaves_the_decoy_alone(installed):
    target, decoy, before, seconds, log = installed
    assert "serial TARGET01 matches" in log
    assert "install: 100%" in log
    assert sha256(decoy) == before, "the decoy disk changed"
    table = json.loads(sh(f"sfdisk -J {target}"))["partitiontable"]
    assert [p["name"] for p in table["partitions"]] == [
        "cloudbios-bios", "cloudbios-esp", "cloudbios-system", "cloudbios-config", "cloudbios-data"]
    off = 130 << 20
    grub = sh(f"debugfs -R 'cat /boot/grub/grub.cfg' '{target}?offset={off}' 2>/dev/null")
    assert "cloudbios.display=tiny" in grub
    images = sh(f"debugfs -R 'ls /images' '{target}?offset={674 << 20}' 2>/dev/null")
    assert "tiny-kernel" in images and "tiny-initrd" in images


@needs_iso
def test_installed_disk_boots_on_bios_to_the_panel(installed):
    boot_installed(installed[0], "bios")


@needs_iso
def test_installed_disk_boots_on_uefi_to_the_panel(installed):
    boot_installed(installed[0], "uefi")


# OVMF with Secure Boot enforced and Microsoft's keys enrolled (the ovmf package).
SECBOOT_CODE = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"
SECBOOT_VARS = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"


@needs_iso
@pytest.mark.skipif(not (os.path.exists(SECBOOT_CODE) and os.path.exists(SECBOOT_VARS)), reason="needs OVMF's Secure Boot build")
def test_installed_disk_boots_with_secure_boot_enforced(installed, workdir):
    """The installed ESP's default path is Debian's signed shim, which starts
    Debian's signed GRUB and, through it, the signed kernel: with Secure Boot
    enforced the kernel says so and locks itself down, the panel answers and
    the configured VM runs, and GRUB was never refused a module."""
    import shutil
    target = installed[0]
    esp = sh(f"MTOOLS_SKIP_CHECK=1 mdir -/ -b -i {target}@@{2 << 20} ::/")
    assert "::/EFI/debian/grub.cfg" in esp and "::/EFI/BOOT/grubx64.efi" in esp, esp
    vars_copy = os.path.join(workdir, "OVMF_VARS.ms.fd")
    shutil.copy(SECBOOT_VARS, vars_copy)
    log = boot_installed(target, "bios", name="installed-secboot", extra=[
        "-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on",
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={SECBOOT_CODE}",
        "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"])
    assert "secureboot: Secure boot enabled" in log, log[:6000]
    assert "Kernel is locked down from EFI Secure Boot" in log, log[:6000]
    assert "prohibited by secure boot policy" not in log, log[:6000]
    refused = [l for l in log.splitlines() if "module verification failed" in l or "Loading of unsigned module" in l]
    assert not refused, refused


@needs_iso
def test_non_empty_disk_without_wipe_is_refused(workdir, guest):
    d = os.path.join(workdir, "refuse")
    os.makedirs(d, exist_ok=True)
    target = make_decoy(os.path.join(d, "target.img"), size="2G")
    before = sha256(target)
    cfg = make_config_volume(d, guest, INSTALL.replace("poweroff", "none"))
    vm = qemu.VM("refuse", iso=ISO, memory=1536, extra=disks((target, "TARGET01"), (cfg, "CBCFG01")))
    try:
        vm.start()
        log = vm.wait_serial("REFUSED", 240)
        time.sleep(2)
        log = vm.serial()
        assert "not empty" in log and "wipe: true" in log
        assert "PRECIOUS" in log
    finally:
        vm.cleanup()
    assert sha256(target) == before


if __name__ == "__main__" and "--bench" in sys.argv:
    if qemu is None or not os.path.exists(ISO):
        sys.exit("needs images/out/cloudbios.iso and scripts/lib/qemu.py")
    w = tempfile.mkdtemp(prefix="cloudbios-install-bench-", dir="/var/tmp")
    try:
        _, _, _, secs, _ = headless_install(w, make_guest(w))
        print(f"{secs:.1f}")
    finally:
        subprocess.run(["rm", "-rf", w])


@needs_iso
def test_installed_system_keeps_the_first_run_admin_on_its_config_partition(installed, workdir):
    """An installed system whose config names no panel user: the first run's
    setup code creates the admin, kept in users.yaml on the config partition
    (mounted read-only, remounted for the write); the next boot logs in with
    it and shows no code."""
    import re
    target = installed[0]
    copy = os.path.join(workdir, "firstrun.img")
    sh(f"cp --sparse=always {target} {copy}")
    table = json.loads(sh(f"sfdisk -J {copy}"))["partitiontable"]
    part = [p for p in table["partitions"] if p["name"] == "cloudbios-config"][0]
    dev = f"{copy}?offset={part['start'] * 512}"
    cfg = sh(f"debugfs -R 'cat /cloudbios.yaml' '{dev}' 2>/dev/null")
    assert "password_hash" in cfg, cfg
    without = re.sub(r"panel:\n  users:\n    - name: admin\n      password_hash: \"[^\"]*\"\n", "", cfg)
    assert "password_hash" not in without and "vms:" in without, without
    local = os.path.join(workdir, "no-users.yaml")
    with open(local, "w") as f:
        f.write(without)
    sh(f"debugfs -w -R 'rm /cloudbios.yaml' '{dev}' 2>/dev/null")
    sh(f"debugfs -w -R 'write {local} /cloudbios.yaml' '{dev}' 2>/dev/null")

    def boot():
        vm = qemu.VM("installed-firstrun", memory=1536, extra=disks((copy, "TARGET01")), forwards={8443: qemu.free_port()})
        vm.start()
        return vm
    vm = boot()
    try:
        vm.wait_serial("enter the setup code ", 300)
        code = re.findall(r"setup code ([0-9A-Z]{4}-[0-9A-Z]{4})", vm.serial())[-1]
        st = json.loads(vm.wait_https("/api/v1/setup", 120))
        assert st["required"] is True and st["storage"] == "config", st
        status, body = vm.https("/api/v1/setup", method="POST", timeout=60,
                                body={"code": code, "user": "owner", "password": "installed-owner-pw"})
        assert status == 201 and json.loads(body)["storage"] == "config", body
    finally:
        vm.cleanup()
    assert "name: \"owner\"" in sh(f"debugfs -R 'cat /users.yaml' '{dev}' 2>/dev/null")
    vm = boot()
    try:
        health = json.loads(vm.wait_https("/api/v1/health", 300))
        assert health["setup_required"] is False, health
        status, body = vm.https("/api/v1/login", method="POST", body={"user": "owner", "password": "installed-owner-pw"})
        assert status == 200, body
        assert "enter the setup code" not in vm.serial()
    finally:
        vm.cleanup()


@needs_iso
def test_installed_grub_entries_follow_the_vms_and_the_state_is_on_the_data_partition(installed, workdir):
    """The installed system's state is on its own data partition; a VM
    created through the panel gets its GRUB entry on the system partition
    (grub.cfg written again), the display VM stays the default entry, and a
    deleted one loses it."""
    copy = os.path.join(workdir, "menu.img")
    sh(f"cp --sparse=always {installed[0]} {copy}")
    table = json.loads(sh(f"sfdisk -J {copy}"))["partitiontable"]
    system = [p for p in table["partitions"] if p["name"] == "cloudbios-system"][0]
    grub_cfg = lambda: sh(f"debugfs -R 'cat /boot/grub/grub.cfg' '{copy}?offset={system['start'] * 512}' 2>/dev/null")  # noqa: E731
    assert "vm-extra" not in grub_cfg()
    vm = qemu.VM("installed-menu", memory=1536, extra=disks((copy, "TARGET01")), forwards={8443: qemu.free_port()})
    try:
        vm.start()
        vm.wait_https("/api/v1/health", 300)
        auth = {"Authorization": f"Bearer {login(vm)}"}
        status, body = vm.https("/api/v1/host", headers=auth)
        storage = json.loads(body)["storage"]
        assert storage["kind"] == "installed" and storage["label"] == "CB-DATA" and storage["persistent"], storage
        spec = {"name": "extra", "memory": 128, "kernel": "tiny-kernel", "initrd": "tiny-initrd", "network": "none"}
        for name in ("extra", "doomed"):
            status, body = vm.https("/api/v1/vms", method="POST", body={**spec, "name": name}, headers=auth)
            assert status == 201, body
        status, body = vm.https("/api/v1/vms/doomed", method="DELETE", headers=auth)
        assert status in (200, 204), body
        made = "boot menu: /run/cloudbios/media/CB-SYSTEM/boot/grub/grub.cfg: entries for doomed, extra, tiny"
        vm.wait_serial(made, 60)
        deadline = time.monotonic() + 30
        while "grub.cfg: entries for extra, tiny" not in vm.serial().split(made)[-1]:
            assert time.monotonic() < deadline, "the deleted VM's entry stays:\n" + vm.serial()[-3000:]
            time.sleep(0.5)
        status, body = vm.https("/api/v1/system/shutdown", method="POST", headers=auth)
        assert status == 202, body
        vm.proc.wait(timeout=120)
    finally:
        vm.cleanup()
    cfg = grub_cfg()
    assert 'menuentry "CloudBIOS: dual-run extra" --id "vm-extra"' in cfg and "cloudbios.display=extra" in cfg, cfg
    assert "doomed" not in cfg and 'set default="vm-tiny"' in cfg, cfg
