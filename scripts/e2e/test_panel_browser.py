"""The web panel in a real browser against a real daemon.

Headless Chromium logs in, sees the dashboard list a running VM (the tiny
guest under TCG, uploaded through the API), creates a VM through the form
(with the form's and the daemon's validation messages), uploads an image with
its progress bar, opens /console?vm=NAME and sees the guest's screen in the
canvas (pixels compared with the VM's screenshot PNG), types into the guest
through the console and sees the line in the serial log, and is sent back to
the login when the session ends. Screenshots of each page are saved in
images/out/screenshots/.
"""
import os
import re
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from panel_daemon import PASSWORD, REPO, USER, PanelDaemon, make_guest  # noqa: E402
from browser import chromium, decode_png, pixel, screenshot, wait, el  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

VM = "tiny"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = PanelDaemon()
    d.start()
    try:
        d.login()
        kernel, initrd = make_guest(str(tmp_path_factory.mktemp("guest")))
        d.upload("tiny-kernel", kernel)
        d.upload("tiny-initrd", initrd)
        d.create_tiny_vm(VM)
        d.wait_serial(VM, "CLOUDBIOS-GUEST-READY", timeout=150)
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def browser(daemon):
    b = chromium()
    try:
        yield b
    finally:
        b.quit()






def visible_text(browser, css):
    found = browser.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found and found[0].is_displayed() else ""


def login(browser, daemon, password=PASSWORD):
    browser.get(daemon.url + "/")
    wait(browser, lambda b: el(b, "#login-user").is_displayed() or el(b, "#shell").is_displayed(), what="login page")
    if el(browser, "#shell").is_displayed():
        return
    el(browser, "#login-user").clear()
    el(browser, "#login-user").send_keys(USER)
    el(browser, "#login-password").send_keys(password)
    el(browser, "#login-submit").click()


def test_pages_are_small_and_safe(daemon):
    import requests
    sizes = {f: os.path.getsize(os.path.join(REPO, "web", f)) for f in os.listdir(os.path.join(REPO, "web"))
             if f.endswith((".html", ".js", ".css"))}
    total = sum(sizes.values())
    print("front end: %d bytes in %d files (without noVNC)" % (total, len(sizes)))
    # the whole panel (VMs, consoles, terminal, images, snapshots, backups,
    # nodes, disks, install, network, apps, setup) stays within 128 KiB of
    # source, without noVNC
    assert total < 128 * 1024, sizes
    for page in ("/", "/console?vm=" + VM, "/app.js"):
        r = requests.get(daemon.url + page, verify=False, timeout=10)
        assert r.status_code == 200, (page, r.status_code)
        csp = r.headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp, (page, csp)
        assert "unsafe-inline" not in csp, csp
        assert r.headers.get("X-Content-Type-Options") == "nosniff", page
    for f in sizes:
        if f.endswith(".html"):
            html = open(os.path.join(REPO, "web", f)).read()
            assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), f + ": inline script"
            assert not re.search(r"\son[a-z]+=|\sstyle=|<style", html), f + ": inline handler or style"
    r = requests.get(daemon.url + "/novnc/core/rfb.js", verify=False, timeout=10)
    assert r.status_code == 200 and "class RFB" in r.text, "noVNC is served at /novnc/"


def test_login_and_dashboard_lists_the_running_vm(daemon, browser):
    login(browser, daemon, password="wrong password")
    wait(browser, lambda b: visible_text(b, "#login-msg") != "", what="login error")
    assert "wrong" in el(browser, "#login-msg").text.lower()
    screenshot(browser, "01-login")
    login(browser, daemon)
    wait(browser, lambda b: el(b, "#shell").is_displayed(), what="dashboard after login")
    row = "tr[data-vm='%s']" % VM
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, row), what="the VM row")
    wait(browser, lambda b: el(b, row + " .state").text == "running", what="state running")
    # live statistics arrive with the polls
    wait(browser, lambda b: "%" in el(b, row + " td:nth-child(3)").text, timeout=15, what="CPU figure")
    accel = el(browser, "[data-host=accel]").text
    assert accel in ("KVM", "TCG"), accel
    assert el(browser, "[data-host=version]").text not in ("", "–", "…")
    assert el(browser, "[data-host=uptime]").text not in ("", "–", "…")
    assert el(browser, "[data-host=accel_reason]").text != ""
    buttons = {b.get_attribute("data-action") for b in browser.find_elements(By.CSS_SELECTOR, row + " .actions [data-action]")}
    assert {"shutdown", "stop", "reboot", "pause", "console"} <= buttons, buttons
    time.sleep(4)  # a few samples for the charts
    pts = el(browser, row + " td:nth-child(3) polyline").get_attribute("points")
    assert len(pts.split()) >= 2, "the CPU chart has points: %r" % pts
    screenshot(browser, "02-dashboard")
    browser.set_window_size(390, 844)
    time.sleep(0.5)
    screenshot(browser, "02-dashboard-phone")
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 400, "no sideways scrolling on a phone"
    browser.set_window_size(1280, 900)


def test_pause_and_resume_from_the_dashboard(daemon, browser):
    row = "tr[data-vm='%s']" % VM
    el(browser, row + " [data-action=pause]").click()
    wait(browser, lambda b: el(b, row + " .state").text == "paused", what="paused")
    el(browser, row + " [data-action=resume]").click()
    wait(browser, lambda b: el(b, row + " .state").text == "running", what="running again")


def test_create_vm_through_the_form(daemon, browser):
    browser.get(daemon.url + "/#/vms/new")
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#vm-form #f-kernel option[value='tiny-kernel']"), what="the form with images")
    el(browser, "#f-name").send_keys("Bad Name")
    mem = el(browser, "#f-memory")
    mem.clear()
    mem.send_keys("4")
    el(browser, "#vm-submit").click()
    wait(browser, lambda b: visible_text(b, "#err-name") != "", what="name error")
    assert "lower-case" in el(browser, "#err-name").text
    assert "16" in el(browser, "#err-memory").text
    screenshot(browser, "03-form-errors")
    # the daemon's own refusal is shown at the field or the form
    el(browser, "#f-name").clear()
    el(browser, "#f-name").send_keys(VM)
    mem.clear()
    mem.send_keys("128")
    el(browser, "#vm-submit").click()
    wait(browser, lambda b: visible_text(b, "#form-error") != "" and "correct" not in visible_text(b, "#form-error"),
         what="the daemon's error")
    assert VM in el(browser, "#err-name").text or VM in el(browser, "#form-error").text
    screenshot(browser, "03-form-daemon-error")
    # now a good one
    el(browser, "#f-name").clear()
    el(browser, "#f-name").send_keys("form-vm")
    el(browser, "#f-cpus").clear()
    el(browser, "#f-cpus").send_keys("2")
    Select(el(browser, "#f-kernel")).select_by_value("tiny-kernel")
    Select(el(browser, "#f-initrd")).select_by_value("tiny-initrd")
    el(browser, "#f-append").send_keys("console=ttyS0")
    el(browser, "#add-disk").click()
    size = el(browser, "#f-disks .disk-size")
    size.clear()
    size.send_keys("64M")
    Select(el(browser, "#f-network")).select_by_value("none")
    el(browser, "#f-autostart").click()
    el(browser, "#f-order").send_keys("5")
    screenshot(browser, "04-form-filled")
    el(browser, "#vm-submit").click()
    wait(browser, lambda b: b.current_url.endswith("#/vms/form-vm"), what="the new VM's page")
    r = daemon.api("GET", "/api/v1/vms/form-vm")
    assert r.status_code == 200, r.text
    vm = r.json()
    assert (vm["memory"], vm["cpus"], vm["kernel"], vm["initrd"], vm["network"], vm["autostart"], vm["order"]) == \
        (128, 2, "tiny-kernel", "tiny-initrd", "none", True, 5), vm
    assert len(vm["disks"]) == 1 and "size" in vm["disks"][0], vm["disks"]
    wait(browser, lambda b: visible_text(b, ".state") == "stopped", what="detail page state")
    screenshot(browser, "05-vm-detail-new")
    # edit it: the form comes back filled in, and saving replaces the definition
    browser.get(daemon.url + "/#/vms/form-vm/edit")
    wait(browser, lambda b: el(b, "#f-memory").get_attribute("value") == "128" and
         el(b, "#f-kernel").get_attribute("value") == "tiny-kernel", what="the edit form filled in")
    assert el(browser, "#f-name").get_attribute("readonly") is not None
    el(browser, "#f-memory").clear()
    el(browser, "#f-memory").send_keys("192")
    el(browser, "#vm-submit").click()
    wait(browser, lambda b: b.current_url.endswith("#/vms/form-vm"), what="back on the VM's page")
    vm = daemon.api("GET", "/api/v1/vms/form-vm").json()
    assert vm["memory"] == 192 and vm["cpus"] == 2 and len(vm["disks"]) == 1, vm
    # and it is listed on the dashboard
    browser.get(daemon.url + "/#/")
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "tr[data-vm='form-vm']"), what="form-vm listed")


def test_upload_image_with_progress_bar(daemon, browser, tmp_path):
    path = tmp_path / "upload-test.img"
    size = 24 << 20
    with open(path, "wb") as f:
        f.write(os.urandom(1 << 20) * 24)
    browser.get(daemon.url + "/#/images")
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#image-file"), what="image page")
    # record every value the progress bar shows
    browser.execute_script("""
        window.__progress = [];
        new MutationObserver(() => {
            for (const p of document.querySelectorAll('#uploads progress')) window.__progress.push(Number(p.value));
        }).observe(document.getElementById('uploads'), {subtree: true, childList: true, attributes: true});""")
    # a slow link, so the bar has time to move
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.emulateNetworkConditions",
                            {"offline": False, "latency": 5, "downloadThroughput": -1, "uploadThroughput": 8 << 20})
    el(browser, "#image-name").send_keys("upload-test")
    el(browser, "#image-file").send_keys(str(path))
    wait(browser, lambda b: 10 < (b.execute_script("const p=document.querySelector('#uploads progress'); return p ? p.value : 0") or 0) < 100,
         timeout=30, what="upload under way")
    screenshot(browser, "06-upload-progress")
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "#uploads .upload.done"), timeout=120, what="upload done")
    browser.execute_cdp_cmd("Network.emulateNetworkConditions",
                            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    seen = browser.execute_script("return window.__progress")
    assert any(0 < v < 100 for v in seen) and seen[-1] == 100, seen[:50]
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "tr[data-image='upload-test']"), what="image listed")
    imgs = {i["name"]: i for i in daemon.api("GET", "/api/v1/images").json()}
    assert imgs["upload-test"]["size"] == size
    screenshot(browser, "07-images")


def canvas_samples(browser, points):
    return browser.execute_script("""
        const c = document.querySelector('#screen canvas');
        if (!c || !c.width) return null;
        const g = c.getContext('2d');
        return arguments[0].map(([x, y]) => Array.from(g.getImageData(x, y, 1, 1).data.slice(0, 3)));""", points)


def test_console_shows_the_guest_screen(daemon, browser):
    browser.get(daemon.url + "/console?vm=" + VM)
    wait(browser, lambda b: el(b, "#status").text == "connected", timeout=30, what="console connected")
    wait(browser, lambda b: b.execute_script("const c=document.querySelector('#screen canvas'); return c && c.width > 100"),
         what="a framebuffer")
    time.sleep(2)  # let the first full update land
    png = decode_png(daemon.api("GET", "/api/v1/vms/%s/screenshot" % VM).content)
    w, h = png[0], png[1]
    cw, ch = browser.execute_script("const c=document.querySelector('#screen canvas'); return [c.width, c.height]")
    assert (cw, ch) == (w, h), "canvas %dx%d, screenshot %dx%d" % (cw, ch, w, h)
    pts = [(int(w * (i + .5) / 12), int(h * (j + .5) / 9)) for i in range(12) for j in range(9)]
    pts += [(x, y) for x in range(0, min(w, 400), 7) for y in (8, 24, 40, 56)]  # where text is
    canvas = canvas_samples(browser, pts)
    shot = [pixel(png, x, y) for x, y in pts]
    same = sum(1 for a, b in zip(canvas, shot) if max(abs(p - q) for p, q in zip(a, b)) <= 8)
    screenshot(browser, "08-console")
    assert same >= 0.97 * len(pts), "canvas and screenshot differ at %d of %d points" % (len(pts) - same, len(pts))
    blue = sum(1 for p in canvas if max(abs(a - b) for a, b in zip(p, (0x1E, 0x90, 0xFF))) <= 8)
    print("console: %d/%d points equal to the screenshot; %d dodger-blue" % (same, len(pts), blue))
    assert blue >= 0.5 * len(pts), "the guest paints its screen #1E90FF; the canvas shows it at %d of %d points" % (blue, len(pts))


def test_type_into_the_guest_through_the_console(daemon, browser):
    line = "hello from the panel %d" % (time.time() % 1000)
    el(browser, "#paste").click()
    wait(browser, lambda b: el(b, "#paste-text").is_displayed(), what="paste dialog")
    el(browser, "#paste-text").clear()
    el(browser, "#paste-text").send_keys(line + "\n")
    el(browser, "#paste-type").click()
    wait(browser, lambda b: "typed" in el(b, "#status").text, what="typing done")
    daemon.wait_serial(VM, "typed: " + line, timeout=30)
    # and typing on the keyboard into the canvas reaches the guest too
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    canvas = el(browser, "#screen canvas")
    ActionChains(browser).click(canvas).send_keys("keys 42").send_keys(Keys.ENTER).perform()
    daemon.wait_serial(VM, "typed: keys 42", timeout=30)
    # the combos and buttons exist
    labels = [o.text for o in Select(el(browser, "#keys")).options]
    assert "Ctrl-Alt-F1" in labels and "Ctrl-Alt-F7" in labels, labels
    assert el(browser, "#cad").is_displayed() and el(browser, "#fullscreen").is_displayed()
    screenshot(browser, "09-console-typed")
    # the panel's serial view follows the log and shows the line
    browser.get(daemon.url + "/#/vms/" + VM)
    wait(browser, lambda b: ("typed: " + line) in el(b, "#serial-log").text, timeout=20, what="typed line in the serial view")
    screenshot(browser, "10-vm-detail-serial")


def test_terminal_is_the_serial_console_interactive(daemon, browser):
    """/terminal?vm=NAME: the serial log so far, then live; typed lines reach
    the guest's serial port (the guest echoes them back)."""
    browser.get(daemon.url + "/terminal?vm=" + VM)
    wait(browser, lambda b: el(b, "#status").text.startswith("connected"), timeout=30, what="terminal connected")
    text = lambda b: b.execute_script("return window.cloudbiosTerminal.text")  # noqa: E731
    wait(browser, lambda b: "CLOUDBIOS-GUEST-READY" in text(b), what="the serial log so far")
    line = "from xterm %d" % (time.time() % 1000)
    el(browser, ".xterm-helper-textarea").send_keys(line + "\n")
    wait(browser, lambda b: "serial-typed: " + line in text(b), timeout=30, what="the guest's echo of the typed line")
    assert browser.find_elements(By.CSS_SELECTOR, "#term .xterm canvas, #term .xterm-rows"), "xterm.js draws the terminal"
    screenshot(browser, "11-terminal")


def test_disks_and_tasks_pages(daemon, browser):
    browser.get(daemon.url + "/#/disks")
    wait(browser, lambda b: el(b, "#disks").text.strip() != "", timeout=20, what="disks listed")
    r = daemon.api("GET", "/api/v1/disks")
    if r.status_code == 200 and r.json():
        first = r.json()[0].get("path") or r.json()[0].get("name")
        assert first in el(browser, "#disks").text
    elif r.status_code != 200:
        # the page shows the daemon's message
        wait(browser, lambda b: r.json()["error"] in el(b, "#disks").text, what="the daemon's disks error")
    screenshot(browser, "11-disks")
    browser.get(daemon.url + "/#/tasks")
    wait(browser, lambda b: el(b, "#task-rows").text.strip() != "", timeout=20, what="tasks listed")
    screenshot(browser, "12-tasks")


def test_backups_page_backs_up_and_verifies(daemon, browser):
    spec = {"name": "bk-vm", "memory": 256, "cpus": 1, "kernel": "tiny-kernel", "initrd": "tiny-initrd",
            "network": "none", "accel": "tcg", "disks": [{"id": "data", "size": "16M"}]}
    assert daemon.api("POST", "/api/v1/vms", json=spec).status_code == 201
    # its disk is made at the first start
    assert daemon.api("POST", "/api/v1/vms/bk-vm/start", json={}).status_code == 200
    assert daemon.api("POST", "/api/v1/vms/bk-vm/stop", json={}).status_code == 200
    browser.get(daemon.url + "/#/backups/bk-vm")
    wait(browser, lambda b: "No backups of bk-vm" in el(b, "#backup-list").text, what="an empty backups page")
    Select(el(browser, "#backup-mode")).select_by_value("full")
    el(browser, "#backup-now").click()
    row = "[data-backups-vm='bk-vm'] tr[data-backup]"
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, row), timeout=60, what="the backup listed")
    listed = daemon.api("GET", "/api/v1/backups?vm=bk-vm").json()
    assert len(listed) == 1 and listed[0]["kind"] == "full"
    assert listed[0]["id"] in el(browser, row).text and "full" in el(browser, row).text
    el(browser, row + " [data-action=verify]").click()
    wait(browser, lambda b: "match their checksums" in el(b, "#backup-status").text, timeout=60, what="the verify's result")
    screenshot(browser, "13-backups")
    assert daemon.api("DELETE", "/api/v1/backups/" + listed[0]["id"]).status_code == 204
    assert daemon.api("DELETE", "/api/v1/vms/bk-vm").status_code == 204


def test_snapshot_tree_template_and_clone_on_the_vm_page(daemon, browser):
    spec = {"name": "snapvm", "memory": 128, "kernel": "tiny-kernel", "initrd": "tiny-initrd", "network": "none",
            "accel": "tcg", "disks": [{"id": "root", "size": "16M"}]}
    assert daemon.api("POST", "/api/v1/vms", json=spec).status_code == 201
    # a start makes the disk; stopped again, its snapshots are qemu-img's
    assert daemon.api("POST", "/api/v1/vms/snapvm/start", json={}).status_code == 200
    assert daemon.api("POST", "/api/v1/vms/snapvm/stop", json={}).status_code == 200
    browser.get(daemon.url + "/#/vms/snapvm")
    wait(browser, lambda b: "No snapshots" in el(b, "#snapshot-tree").text, what="the empty snapshot tree")
    for n in ("b1", "b2"):
        el(browser, "#snap-name").send_keys(n)
        el(browser, "#snap-take").click()
        wait(browser, lambda b: "%s ● current" % n in el(b, "#snapshot-tree").text, what="snapshot %s current" % n)
    # b2 hangs under b1
    assert browser.find_elements(By.CSS_SELECTOR, "li[data-snapshot=b1] li[data-snapshot=b2]")
    el(browser, "li[data-snapshot=b1] > [data-snap-action=revert]").click()
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "dialog[open] [data-confirm]"), what="revert confirmation")
    el(browser, "dialog[open] [data-confirm]").click()
    wait(browser, lambda b: "b1 ● current" in el(b, "#snapshot-tree").text, what="b1 current after the revert")
    el(browser, "li[data-snapshot=b2] > [data-snap-action=delete]").click()
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "dialog[open] [data-confirm]"), what="delete confirmation")
    el(browser, "dialog[open] [data-confirm]").click()
    wait(browser, lambda b: not b.find_elements(By.CSS_SELECTOR, "li[data-snapshot=b2]"), what="b2 deleted")
    screenshot(browser, "12b-snapshots")
    assert [s["name"] for s in daemon.api("GET", "/api/v1/vms/snapvm/snapshots").json()] == ["b1"]
    # a template: no start button, marked on the dashboard, cloned linked from its page
    got = daemon.api("GET", "/api/v1/vms/snapvm").json()
    assert daemon.api("PUT", "/api/v1/vms/snapvm", json=dict(got, template=True)).status_code == 200
    browser.get(daemon.url + "/#/")
    row = "tr[data-vm='snapvm']"
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, row) and "template" in el(b, row).text, what="template marked")
    assert not browser.find_elements(By.CSS_SELECTOR, row + " [data-action=start]"), "a template has no start button"
    assert browser.find_elements(By.CSS_SELECTOR, "tr[data-vm='%s']" % VM), "the other VMs are listed as before"
    browser.get(daemon.url + "/#/vms/snapvm")
    wait(browser, lambda b: el(b, "#clone-linked").is_enabled() and el(b, "#clone-linked").is_selected(), what="linked clone offered")
    el(browser, "#clone-name").send_keys("snapvm-c")
    el(browser, "#clone-go").click()
    wait(browser, lambda b: b.current_url.endswith("#/vms/snapvm-c"), what="the clone's page")
    clone = daemon.api("GET", "/api/v1/vms/snapvm-c").json()
    assert clone["disks"] == spec["disks"] and not clone.get("template"), clone
    assert daemon.api("DELETE", "/api/v1/vms/snapvm").status_code == 409  # its clone depends on it
    assert daemon.api("DELETE", "/api/v1/vms/snapvm-c").status_code == 204
    assert daemon.api("DELETE", "/api/v1/vms/snapvm").status_code == 204


def test_delete_with_confirmation(daemon, browser):
    browser.get(daemon.url + "/#/")
    row = "tr[data-vm='form-vm']"
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, row + " [data-action=delete]"), what="delete button")
    el(browser, row + " [data-action=delete]").click()
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "dialog[open]"), what="confirmation")
    screenshot(browser, "13-delete-confirm")
    el(browser, "dialog[open] button[value=cancel]").click()
    time.sleep(0.5)
    assert daemon.api("GET", "/api/v1/vms/form-vm").status_code == 200, "cancel keeps the VM"
    # delete from the VM's own page: one question, then back to the list
    browser.get(daemon.url + "/#/vms/form-vm")
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, ".actions [data-action=delete]"), what="delete on the VM page")
    el(browser, ".actions [data-action=delete]").click()
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "dialog[open] [data-confirm]"), what="confirmation")
    assert len(browser.find_elements(By.CSS_SELECTOR, "dialog[open]")) == 1, "one question"
    el(browser, "dialog[open] [data-confirm]").click()
    wait(browser, lambda b: b.current_url.endswith("#/") and b.find_elements(By.CSS_SELECTOR, "tr[data-vm='%s']" % VM),
         what="back on the dashboard")
    wait(browser, lambda b: not b.find_elements(By.CSS_SELECTOR, row), what="row removed")
    assert daemon.api("GET", "/api/v1/vms/form-vm").status_code == 404


def test_session_expiry_and_logout(daemon, browser):
    browser.get(daemon.url + "/#/")
    wait(browser, lambda b: el(b, "#shell").is_displayed(), what="dashboard")
    # the session ends behind the page's back: the next poll sends it to the login
    browser.delete_all_cookies()
    wait(browser, lambda b: el(b, "#login").is_displayed(), timeout=10, what="login after expiry")
    assert "expired" in el(browser, "#login-msg").text
    screenshot(browser, "14-session-expired")
    login(browser, daemon)
    wait(browser, lambda b: el(b, "#shell").is_displayed(), what="dashboard again")
    el(browser, "#logout").click()
    wait(browser, lambda b: el(b, "#login").is_displayed(), what="login after logout")
    browser.get(daemon.url + "/")
    wait(browser, lambda b: el(b, "#login").is_displayed(), what="still logged out after reload")
