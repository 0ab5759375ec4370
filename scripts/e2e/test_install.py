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
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

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


def remaster(iso, out, replace):
    """A copy of the ISO (El Torito boot images kept) with files replaced: {path in the ISO: local file}."""
    maps = " ".join(f"-map {src} {dst}" for dst, src in replace.items())
    sh(f"xorriso -return_with FAILURE 32 -indev {iso} -outdev {out} -boot_image any keep {maps} -commit 2>&1")
    return out


def post_raw(vm, auth, path, data, timeout=300):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(f"https://127.0.0.1:{vm.forwards[8443]}/api/v1{path}", data=data, method="POST",
                                 headers={**auth, "Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def wait_task(vm, auth, task_id, timeout=300):
    deadline = time.monotonic() + timeout
    t = None
    while time.monotonic() < deadline:
        status, body = vm.https(f"/api/v1/tasks/{task_id}", headers=auth)
        assert status == 200, body
        t = json.loads(body)
        if t["state"] in ("succeeded", "failed"):
            return t
        time.sleep(1)
    raise AssertionError(f"task {task_id} still {t} after {timeout} s\n{vm.serial()[-3000:]}")


@needs_iso
def test_an_upgrade_boots_the_new_slot_and_a_broken_one_falls_back_by_itself(installed, workdir):
    """A/B upgrades of an installed disk: an image that is not a CloudBIOS
    ISO is refused and nothing changes; `cloudbios upgrade ISO` writes a
    second build (another version) into slot b, and the next boot runs it
    and marks it good; an upgrade from a URL whose initramfs is broken goes
    into slot a, its trial boot panics and reboots, and the boot after it is
    slot b again by itself, the panel saying the upgrade fell back. The
    config and the data partition's images are untouched throughout."""
    d = os.path.join(workdir, "upgrade")
    os.makedirs(d, exist_ok=True)
    disk = os.path.join(d, "disk.img")
    sh(f"cp --sparse=always {installed[0]} {disk}")
    with open(os.path.join(d, "version"), "w") as f:
        f.write("9.9.9-upgrade-e2e\n")
    good = remaster(ISO, os.path.join(d, "good.iso"), {"/boot/version": os.path.join(d, "version")})
    with open(os.path.join(d, "broken-version"), "w") as f:
        f.write("6.6.6-broken-e2e\n")
    with open(os.path.join(d, "junk.img"), "wb") as f:
        f.write(os.urandom(1 << 20))
    broken = remaster(ISO, os.path.join(d, "broken.iso"),
                      {"/boot/version": os.path.join(d, "broken-version"), "/boot/initramfs.img": os.path.join(d, "junk.img")})
    table = json.loads(sh(f"sfdisk -J {disk}"))["partitiontable"]
    part = {p["name"]: p for p in table["partitions"]}
    config_sha = lambda: sh(f"debugfs -R 'cat /cloudbios.yaml' '{disk}?offset={part['cloudbios-config']['start'] * 512}' 2>/dev/null")  # noqa: E731
    images = lambda: sorted(  # noqa: E731  (name, size) of each image in the store
        tuple(e.split("/")[5:7]) for e in sh(f"debugfs -R 'ls -p /images' '{disk}?offset={part['cloudbios-data']['start'] * 512}' 2>/dev/null").split("\n")
        if e.count("/") >= 7 and not e.split("/")[5].startswith("."))  # (the store's own .incoming and the like)
    config_before, images_before = config_sha(), images()
    assert "tiny-kernel" in [n for n, _ in images_before], images_before

    def boot(tag):
        vm = qemu.VM(f"upgrade-{tag}", memory=1536, extra=disks((disk, "TARGET01")), forwards={8443: qemu.free_port()})
        vm.start()
        return vm

    def up(vm):
        vm.wait_https("/api/v1/health", 300)
        auth = {"Authorization": f"Bearer {login(vm)}"}
        status, body = vm.https("/api/v1/host", headers=auth)
        assert status == 200, body
        return auth, json.loads(body)["system"]

    def shutdown(vm, auth):
        status, body = vm.https("/api/v1/system/shutdown", method="POST", headers=auth)
        assert status == 202, body
        vm.proc.wait(timeout=120)

    # 1. slot a runs; a non-ISO and an ISO that is not CloudBIOS's are refused, nothing changes
    vm = boot("1")
    try:
        auth, system = up(vm)
        assert system["running"] == "a", system
        a = system["slots"][0]
        assert a["name"] == "a" and a["running"] and a["good"] and a["version"], system
        first_version = a["version"]
        assert not system["slots"][1]["installed"] and "upgrade" not in system, system
        status, body = post_raw(vm, auth, "/system/upgrade", os.urandom(1 << 20))
        assert status == 422 and "not a CloudBIOS ISO" in body["error"], (status, body)
        other = os.path.join(d, "other")
        os.makedirs(os.path.join(other, "boot"), exist_ok=True)
        with open(os.path.join(other, "boot", "vmlinuz"), "w") as f:
            f.write("not a kernel\n")
        sh(f"xorriso -as mkisofs -quiet -o {d}/other.iso {other}")
        with open(f"{d}/other.iso", "rb") as f:
            status, body = post_raw(vm, auth, "/system/upgrade", f.read())
        assert status == 422 and "not a CloudBIOS ISO" in body["error"], (status, body)
        assert up(vm)[1] == system, "a refused upgrade changed the slots"
        # 2. the command line uploads the second build into slot b
        port = vm.forwards[8443]
        r = subprocess.run([os.environ.get("CLOUDBIOS_BIN", os.path.join(REPO, ".build", "debug", "cloudbios")), "upgrade", good,
                            "--url", f"https://127.0.0.1:{port}", "--insecure", "--user", "admin", "--password", PASSWORD],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "slot b holds 9.9.9-upgrade-e2e, verified" in r.stdout, r.stdout
        _, system = up(vm)
        b = system["slots"][1]
        assert b["installed"] and b["version"] == "9.9.9-upgrade-e2e" and b["next"] and not b["running"], system
        assert system["upgrade"]["state"] == "pending", system
        shutdown(vm, auth)
    finally:
        vm.cleanup()

    # 3. the next boot tries slot b, which comes up and becomes the good one
    vm = boot("2")
    try:
        auth, system = up(vm)
        assert "cloudbios.slot=b cloudbios.trial=1" in vm.serial(), vm.serial()[-3000:]
        assert system["running"] == "b", system
        assert system["upgrade"]["state"] == "booted" and system["upgrade"]["slot"] == "b", system
        a, b = system["slots"]
        assert b["good"] and b["running"] and b["version"] == "9.9.9-upgrade-e2e", system
        assert a["version"] == first_version and not a["good"], system
        # 4. an upgrade from a URL whose initramfs is broken goes into slot a
        server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0"], cwd=d,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            line = server.stdout.readline()  # "Serving HTTP on 127.0.0.1 port N ..."
            http_port = int(line.split(" port ")[1].split()[0])
            status, body = vm.https("/api/v1/system/upgrade", method="POST", headers=auth,
                                    body={"url": f"http://10.0.2.2:{http_port}/broken.iso"})
            assert status == 202, body
            t = wait_task(vm, auth, json.loads(body)["id"])
            assert t["state"] == "succeeded" and t["result"]["slot"] == "a", t
        finally:
            server.kill()
            server.wait()
        _, system = up(vm)
        assert system["slots"][0]["version"] == "6.6.6-broken-e2e" and system["slots"][0]["next"], system
        shutdown(vm, auth)
    finally:
        vm.cleanup()

    # 5. slot a's trial boot: the kernel finds no usable initramfs, panics, reboots (QEMU exits: -no-reboot)
    vm = boot("3")
    try:
        vm.proc.wait(timeout=300)
        log = vm.serial()
        assert "cloudbios.slot=a cloudbios.trial=1" in log and "Kernel panic" in log, log[-3000:]
    finally:
        vm.cleanup()

    # 6. the boot after it is slot b again, by itself, and the panel says so
    vm = boot("4")
    try:
        auth, system = up(vm)
        log = vm.serial()
        assert "cloudbios.slot=b" in log and "cloudbios.trial=1" not in log, log[-3000:]
        assert system["running"] == "b", system
        assert system["upgrade"]["state"] == "fell-back" and system["upgrade"]["slot"] == "a", system
        assert system["slots"][0]["failed"] and system["slots"][1]["good"], system
        shutdown(vm, auth)
    finally:
        vm.cleanup()
    assert config_sha() == config_before, "the config partition changed"
    assert images() == images_before, "the data partition's images changed"
