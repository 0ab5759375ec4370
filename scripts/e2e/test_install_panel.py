"""End to end on UEFI: a real install from the panel, then A/B upgrades of
the installed disk, the fallback included.

The ISO boots on UEFI (OVMF) with a CBCONFIG volume (an admin, the tiny
guest's images and a VM, no `install:`) and a blank disk (serial TARGET01).
An image is uploaded into the store (in RAM). In headless Chromium the disks
page installs CloudBIOS on the blank disk: its plan (the installer's dry run)
is shown, the install confirmed, its progress followed to the end, and the
panel's "Reboot now" ends the PE (QEMU runs with -no-reboot). An install on
the CBCONFIG volume without `wipe` is refused through the API, nothing
changed. The installed disk then boots alone on UEFI to the panel: the state
is on its data partition (the uploaded image is there, the VM autostarts),
and the dashboard's Machine card switches the local screen to the host
console and back (the outer screen, read with QMP screendump, changes).

Then the upgrades, on the same disk and firmware: an ISO whose initramfs is
broken goes into slot b, its trial boot panics, and the next boot is slot a
again by itself, the panel saying the upgrade fell back; a good ISO of
another version goes into slot b, which boots and becomes the good slot.
"""
import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

import qemu
from test_install import disks, remaster, wait_task

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

USER, PASSWORD = "admin", "e2e-Install-42"
CONFIG = """version: 1
hostname: panel-install
panel:
  users:
    - name: {user}
      password_hash: "{hash}"
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
"""


def raw(vm, auth, method, path, data, timeout=300):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(f"https://127.0.0.1:{vm.forwards[8443]}/api/v1{path}", data=data, method=method,
                                 headers={**auth, "Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def api(vm, auth, method, path, body=None, timeout=30):
    status, got = vm.https("/api/v1" + path, method=method, body=body, headers=auth, timeout=timeout)
    return status, (json.loads(got) if got else None)


def login(vm):
    status, got = vm.https("/api/v1/login", method="POST", body={"user": USER, "password": PASSWORD}, timeout=30)
    assert status == 200, got
    return {"Authorization": "Bearer " + json.loads(got)["token"]}


def up(vm):
    """Waits for the panel; (auth, GET /api/v1/host)."""
    vm.wait_https("/api/v1/health", 300)
    auth = login(vm)
    status, host = api(vm, auth, "GET", "/host")
    assert status == 200, host
    return auth, host


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(scope="module")
def work(tmp_path_factory, iso, guest):
    d = tmp_path_factory.mktemp("panel-install")
    vol = qemu.make_cbconfig(str(d / "cbconfig.img"), {
        "cloudbios.yaml": CONFIG.format(user=USER, hash=qemu.password_hash(PASSWORD)),
        "guest/vmlinuz": ("copy", guest["kernel"]),
        "guest/initrd.img": ("copy", guest["initrd"]),
    })
    target = str(d / "target.img")
    with open(target, "wb") as f:
        f.truncate(4 << 30)
    return {"dir": str(d), "iso": iso, "cbconfig": vol, "target": target}


def volume_files(img):
    """{path: sha256} of the files on a FAT volume, boot-menu.cfg left out."""
    env = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"}
    listing = subprocess.run(["mdir", "-/", "-b", "-i", img, "::/"], capture_output=True, text=True, env=env, check=True).stdout
    out = {}
    for path in listing.split():
        if path.endswith("/") or path.endswith("boot-menu.cfg"):
            continue
        data = subprocess.run(["mtype", "-i", img, path], capture_output=True, env=env, check=True).stdout
        out[path] = hashlib.sha256(data).hexdigest()
    assert "::/cloudbios.yaml" in out, listing
    return out


@pytest.fixture(scope="module")
def installed(work):
    """The install through the panel; the installed disk's path."""
    from browser import chromium, screenshot
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    vol, target = work["cbconfig"], work["target"]
    vol_before = volume_files(vol)
    vm = qemu.VM("panel-install", iso=work["iso"], firmware="uefi", memory=1536, forwards={8443: qemu.free_port()},
                 extra=disks((vol, "CBCFG01"), (target, "TARGET01")))
    browser = None
    try:
        vm.start()
        auth, host = up(vm)
        assert host["storage"]["kind"] == "ram", host["storage"]
        kept = os.urandom(1 << 20)
        status, got = raw(vm, auth, "PUT", "/images/kept-image", kept)
        assert status in (200, 201), got
        status, listing = api(vm, auth, "GET", "/disks")
        listing = listing if isinstance(listing, list) else listing["disks"]
        by_serial = {d.get("serial"): d for d in listing}
        assert "TARGET01" in by_serial and "CBCFG01" in by_serial, listing
        # bad input: the config volume (holding files, in use) and the boot medium are refused, left alone
        status, got = api(vm, auth, "POST", "/install", {"disk": {"path": by_serial["CBCFG01"]["path"]}, "wipe": False})
        assert status == 409 and ("in use" in got["error"] or "not empty" in got["error"]), (status, got)
        boot = [d["path"] for d in listing if d.get("boot_medium")]
        assert boot, listing
        status, got = api(vm, auth, "POST", "/install", {"disk": {"path": boot[0]}, "wipe": True, "dry_run": True})
        assert status == 409 and "never an install target" in got["error"], (status, got)

        browser = chromium()

        def wait(cond, timeout=30, what="condition"):
            try:
                return WebDriverWait(browser, timeout, poll_frequency=0.2).until(lambda b: cond(b))
            except Exception:
                screenshot(browser, "install-failed-" + re.sub(r"\W+", "-", what)[:40])
                raise AssertionError(f"timed out after {timeout} s waiting for {what}\n" + vm.serial()[-3000:])

        url = f"https://127.0.0.1:{vm.forwards[8443]}"
        browser.get(url + "/")
        wait(lambda b: b.find_element(By.CSS_SELECTOR, "#login-user").is_displayed(), what="the login page")
        browser.find_element(By.CSS_SELECTOR, "#login-user").send_keys(USER)
        browser.find_element(By.CSS_SELECTOR, "#login-password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "#login-submit").click()
        wait(lambda b: b.find_element(By.CSS_SELECTOR, "#shell").is_displayed(), what="the dashboard")
        browser.get(url + "/#/disks")
        path = by_serial["TARGET01"]["path"]
        button = f'button[data-install="{path}"]'
        wait(lambda b: b.find_elements(By.CSS_SELECTOR, button), what="the target's install button")
        for p in boot:  # the boot medium has no install button
            assert not browser.find_elements(By.CSS_SELECTOR, f'button[data-install="{p}"]'), p
        browser.find_element(By.CSS_SELECTOR, button).click()
        wait(lambda b: "the disk is blank" in b.find_element(By.CSS_SELECTOR, "pre.plan").text
             and b.find_elements(By.CSS_SELECTOR, "dialog [data-confirm]"), what="the plan and the confirmation")
        plan = browser.find_element(By.CSS_SELECTOR, "pre.plan").text
        assert "cloudbios-data" in plan and "TARGET01" in plan, plan
        screenshot(browser, "install-plan")
        browser.find_element(By.CSS_SELECTOR, "dialog [data-confirm]").click()
        wait(lambda b: b.find_elements(By.CSS_SELECTOR, "#install-progress"), what="the install's progress")
        seen = set()

        def finished(b):
            m = b.find_elements(By.CSS_SELECTOR, "#install-msg")
            if m:
                seen.add(m[0].text.split(" % ")[0])
            return m and m[0].get_attribute("data-state")
        wait(finished, 400, what="the install's end")
        state = browser.find_element(By.CSS_SELECTOR, "#install-msg").get_attribute("data-state")
        assert state == "succeeded", browser.find_element(By.CSS_SELECTOR, "#install-msg").text + "\n" + vm.serial()[-3000:]
        assert len(seen) >= 3, f"progress seen: {seen}"
        screenshot(browser, "install-done")
        browser.find_element(By.CSS_SELECTOR, "#install-reboot").click()
        wait(lambda b: b.find_elements(By.CSS_SELECTOR, "dialog [data-confirm]"), what="the reboot's confirmation")
        browser.find_element(By.CSS_SELECTOR, "dialog [data-confirm]").click()
        vm.proc.wait(timeout=180)  # -no-reboot: the PE's reboot ends QEMU
        assert "install: 100%" in vm.serial()
    finally:
        if browser is not None:
            browser.quit()
        vm.cleanup()
    # (the daemon writes boot-menu.cfg there; the refused install touched nothing else)
    assert volume_files(vol) == vol_before, "the refused install changed the CBCONFIG volume"
    return {"disk": target, "kept": hashlib.sha256(kept).hexdigest(), "size": len(kept)}


def boot_disk(disk, tag):
    vm = qemu.VM(f"panel-installed-{tag}", firmware="uefi", memory=1536, forwards={8443: qemu.free_port()},
                 extra=disks((disk, "TARGET01")))
    vm.start()
    return vm


def shutdown(vm, auth):
    status, got = api(vm, auth, "POST", "/system/shutdown")
    assert status == 202, got
    vm.proc.wait(timeout=120)


def test_the_disk_installed_from_the_panel_boots_alone_with_its_state(installed):
    vm = boot_disk(installed["disk"], "first")
    try:
        auth, host = up(vm)
        storage = host["storage"]
        assert storage["kind"] == "installed" and storage["label"] == "CB-DATA" and storage["persistent"], storage
        assert host["system"]["running"] == "a", host["system"]
        status, images = api(vm, auth, "GET", "/images")
        kept = [i for i in images if i["name"] == "kept-image"]
        assert kept and kept[0]["size"] == installed["size"], images
        assert kept[0].get("sha256", installed["kept"]) == installed["kept"], kept
        deadline = time.monotonic() + 180
        while True:
            status, v = api(vm, auth, "GET", "/vms/tiny")
            if v.get("state") == "running":
                break
            assert time.monotonic() < deadline, (v, vm.serial()[-3000:])
            time.sleep(2)
        assert "cloudbios.display=tiny" in vm.serial()
        # the dashboard's Machine card switches the local screen to the host console and back
        switch_display_from_the_panel(vm)
        shutdown(vm, auth)
    finally:
        vm.cleanup()


def screen(vm, name):
    path = os.path.join(vm.dir, name + ".ppm")
    vm.qmp.screendump(path)
    with open(path, "rb") as f:
        return f.read()


def switch_display_from_the_panel(vm):
    from browser import chromium, screenshot
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
    b = chromium()
    try:
        def wait(cond, timeout=60, what="condition"):
            try:
                return WebDriverWait(b, timeout, poll_frequency=0.2).until(lambda d: cond(d))
            except Exception:
                screenshot(b, "machine-failed-" + re.sub(r"\W+", "-", what)[:40])
                raise AssertionError(f"timed out after {timeout} s waiting for {what}\n" + vm.serial()[-3000:])
        b.get(f"https://127.0.0.1:{vm.forwards[8443]}/")
        wait(lambda d: d.find_element(By.CSS_SELECTOR, "#login-user").is_displayed(), what="the login page")
        b.find_element(By.CSS_SELECTOR, "#login-user").send_keys(USER)
        b.find_element(By.CSS_SELECTOR, "#login-password").send_keys(PASSWORD)
        b.find_element(By.CSS_SELECTOR, "#login-submit").click()
        wait(lambda d: "tiny" in [o.get_attribute("value") for o in d.find_elements(By.CSS_SELECTOR, "#display-vm option")],
             what="the machine card")
        guest_screen = screen(vm, "guest")
        Select(b.find_element(By.CSS_SELECTOR, "#display-vm")).select_by_value("")
        b.find_element(By.CSS_SELECTOR, "#display-set").click()
        wait(lambda d: "shows the host console" in d.find_element(By.CSS_SELECTOR, "#machine-msg").text, what="the switch")
        vm.wait_serial("display: now no VM (asked for through the panel)", 60)
        time.sleep(3)
        console_screen = screen(vm, "console")
        assert console_screen != guest_screen, "the outer screen did not change"
        Select(b.find_element(By.CSS_SELECTOR, "#display-vm")).select_by_value("tiny")
        b.find_element(By.CSS_SELECTOR, "#display-set").click()
        wait(lambda d: "shows tiny" in d.find_element(By.CSS_SELECTOR, "#machine-msg").text, what="the switch back")
        vm.wait_serial("display: now tiny (asked for through the panel)", 60)
        screenshot(b, "machine-installed")
    finally:
        b.quit()


def test_uefi_upgrades_fall_back_from_a_broken_slot_and_boot_a_good_one(installed, work):
    d, disk = work["dir"], installed["disk"]
    with open(os.path.join(d, "version"), "w") as f:
        f.write("9.9.9-uefi-e2e\n")
    good = remaster(work["iso"], os.path.join(d, "good.iso"), {"/boot/version": os.path.join(d, "version")})
    with open(os.path.join(d, "broken-version"), "w") as f:
        f.write("6.6.6-uefi-broken\n")
    with open(os.path.join(d, "junk.img"), "wb") as f:
        f.write(os.urandom(1 << 20))
    broken = remaster(work["iso"], os.path.join(d, "broken.iso"),
                      {"/boot/version": os.path.join(d, "broken-version"), "/boot/initramfs.img": os.path.join(d, "junk.img")})

    def upgrade(vm, auth, iso):
        with open(iso, "rb") as f:
            status, t = raw(vm, auth, "POST", "/system/upgrade", f.read())
        assert status == 202, t
        t = wait_task(vm, auth, t["id"])
        assert t["state"] == "succeeded" and t["result"]["slot"] == "b", t

    # 1. slot a runs; the broken ISO goes into slot b
    vm = boot_disk(disk, "up1")
    try:
        auth, host = up(vm)
        system = host["system"]
        assert system["running"] == "a" and system["slots"][0]["good"], system
        first_version = system["slots"][0]["version"]
        upgrade(vm, auth, broken)
        _, host = api(vm, auth, "GET", "/host")
        b = host["system"]["slots"][1]
        assert b["version"] == "6.6.6-uefi-broken" and b["next"], host["system"]
        shutdown(vm, auth)
    finally:
        vm.cleanup()
    # 2. slot b's trial boot panics and reboots (QEMU exits: -no-reboot)
    vm = boot_disk(disk, "up2")
    try:
        vm.proc.wait(timeout=300)
        log = vm.serial()
        assert "cloudbios.slot=b cloudbios.trial=1" in log and "Kernel panic" in log, log[-3000:]
    finally:
        vm.cleanup()
    # 3. the boot after it is slot a, by itself; the panel says the upgrade fell back; a good ISO goes into b
    vm = boot_disk(disk, "up3")
    try:
        auth, host = up(vm)
        log = vm.serial()
        assert "cloudbios.slot=a" in log and "cloudbios.trial=1" not in log, log[-3000:]
        system = host["system"]
        assert system["running"] == "a" and system["slots"][0]["version"] == first_version, system
        assert system["upgrade"]["state"] == "fell-back" and system["upgrade"]["slot"] == "b", system
        assert system["slots"][1]["failed"] and system["slots"][0]["good"], system
        upgrade(vm, auth, good)
        shutdown(vm, auth)
    finally:
        vm.cleanup()
    # 4. slot b's trial boot reaches the panel and becomes the good slot
    vm = boot_disk(disk, "up4")
    try:
        auth, host = up(vm)
        assert "cloudbios.slot=b cloudbios.trial=1" in vm.serial(), vm.serial()[-3000:]
        system = host["system"]
        assert system["running"] == "b" and system["upgrade"]["state"] == "booted", system
        a, b = system["slots"]
        assert b["good"] and b["running"] and b["version"] == "9.9.9-uefi-e2e", system
        assert a["version"] == first_version and not a["good"], system
        status, images = api(vm, auth, "GET", "/images")
        assert any(i["name"] == "kept-image" for i in images), images
    finally:
        vm.cleanup()
