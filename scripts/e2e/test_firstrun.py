"""First run, as a new user meets it: the ISO with nothing prepared — as a CD
on BIOS and UEFI, and written to a USB stick — boots to an answering panel
whose only open door is the one-time setup code shown on the machine's own
consoles. The code creates the first admin through the panel in a real
browser; wrong codes are refused and throttled; the stick keeps the admin on
a CBCONFIG partition CloudBIOS adds to it, and its next boot logs in with it.
The host console's menu, driven through the keyboard, sets a static address
the panel then answers on. A config volume behind a controller without a
driver still ends at the first-run panel, and the status screen names the
controller; a CBCONFIG stick beside the ISO on a CD is found and used."""
import json
import os
import re
import shutil
import subprocess
import time

import pytest

import qemu
from firstrun import CODE_RE, setup_code

BOOT_TIMEOUT = 300
PANEL_TIMEOUT = 240


def wrong(code):
    return "0000-0000" if code != "0000-0000" else "1111-1111"


def assert_only_setup_answers(vm):
    health = json.loads(vm.wait_https("/api/v1/health", PANEL_TIMEOUT))
    assert health["status"] == "ok" and health["setup_required"] is True
    for path in ("/api/v1/vms", "/api/v1/host", "/api/v1/disks"):
        status, raw = vm.https(path)
        assert status == 401, (path, raw)
        assert "setup code is shown on this machine's screen" in json.loads(raw)["error"]
    status, raw = vm.https("/api/v1/login", method="POST", body={"user": "admin", "password": "anything-at-all"})
    assert status == 401 and json.loads(raw)["error"].startswith("setup required"), raw


def usb_stick(path, size_mib=256):
    """`-device` arguments for a raw image as a USB stick (xHCI)."""
    return ["-device", "qemu-xhci,id=xhci", "-drive", f"if=none,id=stick,format=raw,file={path}",
            "-device", "usb-storage,bus=xhci.0,drive=stick,bootindex=0"]


def test_cd_bios_first_run_in_a_browser(vm_factory, iso):
    """The ISO alone as a CD: the code from the serial console creates the
    admin on the panel's first page in Chromium; saving is offered only
    where it can work (not on a CD), and the dashboard then says the admin
    lives in RAM."""
    from browser import chromium
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    vm = vm_factory(name="fr-cd", iso=iso, memory=1024, forwards={8443: qemu.free_port()})
    vm.start()
    code = setup_code(vm)
    log = vm.serial()
    # the boot medium's config search and the payload share one mount
    assert "cannot mount /dev/sr0" not in log and "payload: ERROR" not in log, log[-4000:]
    assert "cloudbios: config: no cloudbios.yaml found" in log
    assert_only_setup_answers(vm)
    st = json.loads(vm.https("/api/v1/setup")[1])
    assert st == {**st, "required": True, "storage": "ram", "can_save": False}, st
    assert "CD/DVD" in st["note"]
    # PID 1 puts the code on the status screen too (logged as it draws it)
    vm.wait_serial(f"cloudbios: status: first run: no admin yet; open the panel and enter the setup code {code}", 30)

    b = chromium()
    try:
        url = f"https://127.0.0.1:{vm.forwards[8443]}/"
        b.get(url)
        wait = WebDriverWait(b, 60, poll_frequency=0.2)
        wait.until(lambda d: d.find_element(By.ID, "setup").is_displayed())
        assert not b.find_element(By.ID, "login").is_displayed()
        save = b.find_element(By.ID, "setup-save")
        assert not save.is_enabled()
        assert "CD/DVD" in b.find_element(By.ID, "setup-note").text
        # a wrong code first: refused, nothing created
        b.find_element(By.ID, "setup-code").send_keys(wrong(code))
        b.find_element(By.ID, "setup-password").send_keys("first-admin-pw")
        b.find_element(By.ID, "setup-password2").send_keys("first-admin-pw")
        b.find_element(By.ID, "setup-submit").click()
        wait.until(lambda d: "Wrong setup code" in d.find_element(By.ID, "setup-msg").text)
        field = b.find_element(By.ID, "setup-code")
        field.clear()
        field.send_keys(code.lower().replace("-", ""))  # as people type it
        b.find_element(By.ID, "setup-key").send_keys("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl e2e@test")
        b.find_element(By.ID, "setup-submit").click()
        wait.until(lambda d: d.find_element(By.ID, "shell").is_displayed())
        wait.until(lambda d: d.find_element(By.ID, "whoami").text == "admin")
        wait.until(lambda d: d.find_element(By.ID, "ram-banner").is_displayed())
    finally:
        b.quit()
    # the code is used up; the admin logs in; the setup is closed
    status, raw = vm.https("/api/v1/login", method="POST", body={"user": "admin", "password": "first-admin-pw"})
    assert status == 200, raw
    status, raw = vm.https("/api/v1/setup", method="POST", body={"code": code, "user": "evil", "password": "evil-password"})
    assert status == 409, raw
    assert json.loads(vm.https("/api/v1/health")[1])["setup_required"] is False


def test_cd_uefi_wrong_codes_are_refused_then_throttled(vm_factory, iso):
    vm = vm_factory(name="fr-uefi", iso=iso, firmware="uefi", memory=1024, forwards={8443: qemu.free_port()})
    vm.start()
    code = setup_code(vm)
    assert_only_setup_answers(vm)
    for _ in range(5):
        status, raw = vm.https("/api/v1/setup", method="POST", body={"code": wrong(code), "user": "admin", "password": "long-enough"})
        assert status == 403 and "wrong setup code" in json.loads(raw)["error"], raw
    # now even the right code waits: a code cannot be walked
    status, raw = vm.https("/api/v1/setup", method="POST", body={"code": code, "user": "admin", "password": "long-enough"})
    assert status == 429, raw
    assert json.loads(vm.https("/api/v1/health")[1])["setup_required"] is True
    assert "wrong setup code from" in vm.serial()


def test_usb_stick_saves_the_admin_and_boots_with_it(vm_factory, iso, tmp_path):
    """The ISO written raw to a larger stick: `save: true` adds a CBCONFIG
    partition after the image; the stick's next boot (BIOS, then UEFI) finds
    it, logs in with the saved admin and shows no setup code."""
    stick = str(tmp_path / "stick.img")
    shutil.copy(iso, stick)
    os.truncate(stick, 256 << 20)
    before = subprocess.run(["sfdisk", "--dump", stick], capture_output=True, text=True, check=True).stdout
    vm = vm_factory(name="fr-stick1", memory=1024, forwards={8443: qemu.free_port()}, extra=usb_stick(stick))
    vm.start()
    code = setup_code(vm)
    st = json.loads(vm.wait_https("/api/v1/setup", PANEL_TIMEOUT))
    assert st["can_save"] is True and st["storage"] == "ram", st
    status, raw = vm.https("/api/v1/setup", method="POST", timeout=120,
                           body={"code": code, "user": "admin", "password": "stick-admin-pw", "save": True})
    assert status == 201, raw
    assert json.loads(raw)["storage"] == "stick", raw
    st = json.loads(vm.https("/api/v1/setup")[1])
    assert st["required"] is False and st["storage"] == "config", st
    vm.kill()

    after = subprocess.run(["sfdisk", "--dump", stick], capture_output=True, text=True, check=True).stdout
    old = [l for l in before.splitlines() if l.startswith(stick)]
    new = [l for l in after.splitlines() if l.startswith(stick)]
    assert new[:len(old)] == old, (before, after)  # the image's partitions untouched
    assert len(new) == len(old) + 1 and 'name="CBCONFIG"' in new[-1], after
    probe = subprocess.run(["blkid", "-p", "-o", "export", "--offset", str(int(re.search(r"start=\s*(\d+)", new[-1]).group(1)) * 512), stick],
                           capture_output=True, text=True).stdout
    assert "LABEL=CBCONFIG" in probe and "TYPE=vfat" in probe, probe

    for firmware in ("bios", "uefi"):
        vm = vm_factory(name=f"fr-stick-{firmware}", memory=1024, firmware=firmware,
                        forwards={8443: qemu.free_port()}, extra=usb_stick(stick))
        vm.start()
        vm.wait_serial("cloudbios: boot: complete", BOOT_TIMEOUT)
        health = json.loads(vm.wait_https("/api/v1/health", PANEL_TIMEOUT))
        assert health["setup_required"] is False, health
        status, raw = vm.https("/api/v1/login", method="POST", body={"user": "admin", "password": "stick-admin-pw"})
        assert status == 200, raw
        log = vm.serial()
        assert "from LABEL=CBCONFIG" in log, log[-4000:]
        assert not CODE_RE.search(log), log[-4000:]
        vm.kill()


def test_console_menu_sets_a_static_address_the_panel_answers_on(vm_factory, iso):
    """The host console's menu on the local screen, keyboard only: option 2
    sets eth0 to a static address; the panel answers there and no longer on
    the DHCP lease."""
    static = "10.0.2.50"
    vm = vm_factory(name="fr-menu", iso=iso, memory=1024,
                    forwards={8443: qemu.free_port(), f"{static}:8443": qemu.free_port()})
    vm.start()
    setup_code(vm)
    vm.wait_https("/api/v1/health", PANEL_TIMEOUT)
    vm.wait_serial("cloudbios: started host-console (pid ", 30)
    with pytest.raises(Exception):
        vm.https("/api/v1/health", port=f"{static}:8443", timeout=3)
    time.sleep(2)
    vm.type_text("2")            # Network
    vm.type_text("\n")           # Interface: eth0 (the default)
    vm.type_text(f"{static}/24\n10.0.2.2\n10.0.2.3\n")
    vm.wait_serial(f"cloudbios: network: console: eth0 static {static}/24 gateway 10.0.2.2 dns 10.0.2.3", 60)
    body = json.loads(vm.wait_https("/api/v1/health", 60, port=f"{static}:8443"))
    assert body["status"] == "ok"
    # the DHCP client is gone for eth0: the lease's address is not kept
    time.sleep(3)
    with pytest.raises(Exception):
        vm.https("/api/v1/health", timeout=3)
    # a bad address is refused on the console and nothing changes
    vm.type_text("2\n10.0.2.300/24\n\n\n")
    time.sleep(3)
    assert "10.0.2.300" not in vm.serial()
    assert json.loads(vm.https("/api/v1/health", port=f"{static}:8443")[1])["status"] == "ok"


def test_config_behind_a_controller_without_a_driver(vm_factory, iso, tmp_path):
    """The CBCONFIG volume sits on a SCSI controller no driver of the PE
    knows (LSI 53C895A): the PE still reaches the first-run panel and its
    status screen names the controller."""
    vol = qemu.make_cbconfig(str(tmp_path / "cbconfig.img"), {"cloudbios.yaml": "version: 1\nhostname: hidden\n"})
    vm = vm_factory(name="fr-nodriver", iso=iso, memory=1024, forwards={8443: qemu.free_port()},
                    extra=["-device", "lsi53c895a,id=scsi0", "-drive", f"if=none,id=cfg,format=raw,file={vol}",
                           "-device", "scsi-hd,drive=cfg,bus=scsi0.0"])
    vm.start()
    setup_code(vm)
    assert_only_setup_answers(vm)
    log = vm.wait_serial("cloudbios: status: no driver for PCI ", 60)
    assert re.search(r"cloudbios: status: no driver for PCI 0000:00:0\w\.0 \[1000:0012\] SCSI controller", log), log[-4000:]
    assert "cloudbios: hostname: hidden" not in log


def test_cbconfig_on_a_usb_stick_beside_the_cd(vm_factory, iso, tmp_path):
    """USB disks appear after the other buses: the config search waits for
    them (bounded) and uses the stick's config, whose admin logs in."""
    hash_ = qemu.password_hash("usb-config-pw")
    vol = qemu.make_cbconfig(str(tmp_path / "cbconfig.img"), {"cloudbios.yaml": f"""version: 1
hostname: from-usb
panel:
  users:
    - name: admin
      password_hash: "{hash_}"
"""})
    vm = vm_factory(name="fr-usbcfg", iso=iso, memory=1024, forwards={8443: qemu.free_port()},
                    extra=["-device", "qemu-xhci,id=xhci", "-drive", f"if=none,id=cfg,format=raw,file={vol}",
                           "-device", "usb-storage,bus=xhci.0,drive=cfg"])
    vm.start()
    log = vm.wait_serial("cloudbios: boot: complete", BOOT_TIMEOUT)
    assert "config: using /run/cloudbios/media/CBCONFIG/cloudbios.yaml from LABEL=CBCONFIG" in log, log[-4000:]
    assert "cloudbios: hostname: from-usb" in log
    health = json.loads(vm.wait_https("/api/v1/health", PANEL_TIMEOUT))
    assert health["setup_required"] is False
    status, raw = vm.https("/api/v1/login", method="POST", body={"user": "admin", "password": "usb-config-pw"})
    assert status == 200, raw
    assert not CODE_RE.search(vm.serial())
