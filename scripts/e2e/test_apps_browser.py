"""The panel's Apps page in a real browser against a real daemon: headless
Chromium runs a busybox app from a registry on loopback through the form,
sees it running in the list, its web root answering on the forwarded port,
its logs and a command run in it on the app's page, then stops and removes
it from the list (nothing of it left). Screenshots in images/out/screenshots/."""
import os
import sys
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from panel_daemon import PASSWORD, USER, PanelDaemon  # noqa: E402
from browser import chromium, screenshot, el, wait as browser_wait  # noqa: E402
import oci_registry  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/qemu-system-x86_64"), reason="needs QEMU")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = oci_registry.busybox_registry(str(tmp_path_factory.mktemp("registry")))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def daemon():
    d = PanelDaemon()
    d.start()
    try:
        d.login()
        yield d
    finally:
        try:
            for a in d.api("GET", "/api/v1/apps").json():
                d.api("DELETE", "/api/v1/apps/" + a["name"])
        finally:
            d.stop()


@pytest.fixture(scope="module")
def browser(daemon):
    b = chromium()
    try:
        yield b
    finally:
        b.quit()


def wait(browser, cond, timeout=20, what="condition"):
    return browser_wait(browser, cond, timeout, what, poll=0.2, shot="failed-apps-")




def row_text(browser, name):
    rows = browser.find_elements(By.CSS_SELECTOR, 'tr[data-app="%s"]' % name)
    return rows[0].text if rows else ""


def http_get(port, path, timeout):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=3) as r:
                return r.status, r.read()
        except Exception as e:  # noqa: BLE001 - booting
            last = e
            time.sleep(0.2)
    raise AssertionError("no answer on port %d: %s" % (port, last))


def test_run_see_logs_exec_stop_and_remove_an_app(daemon, registry, browser):
    browser.get(daemon.url + "/")
    wait(browser, lambda b: el(b, "#login-user").is_displayed(), what="login page")
    el(browser, "#login-user").send_keys(USER)
    el(browser, "#login-password").send_keys(PASSWORD)
    el(browser, "#login-submit").click()
    wait(browser, lambda b: el(b, "#shell").is_displayed(), what="the shell after login")
    browser.get(daemon.url + "/#/apps")
    wait(browser, lambda b: el(b, "#app-form").is_displayed(), what="the apps page")
    # a bad port is refused by the form, nothing sent
    el(browser, "#app-image").send_keys(registry.host + "/busybox:1")
    el(browser, "#app-ports").send_keys("80")
    el(browser, "#app-run").click()
    wait(browser, lambda b: "HOST:GUEST" in el(b, "#app-form .msg").text, what="the form's port message")
    assert daemon.api("GET", "/api/v1/apps").json() == []
    # run it
    port = oci_registry.free_port()
    el(browser, "#app-ports").clear()
    el(browser, "#app-ports").send_keys("%d:8080" % port)
    el(browser, "#app-name").send_keys("webui")
    el(browser, "#app-env").send_keys("GREETING=from-the-panel")
    el(browser, "#app-cmd").send_keys("httpd -f -v -p 8080 -h /www")
    el(browser, "#app-memory").clear()
    el(browser, "#app-memory").send_keys("128")
    Select(el(browser, "#app-restart")).select_by_value("on-failure")
    el(browser, "#app-run").click()
    wait(browser, lambda b: "running" in row_text(b, "webui"), timeout=180, what="the app running in the list")
    text = row_text(browser, "webui")
    assert registry.host + "/busybox:1" in text and "%d→8080" % port in text, text
    screenshot(browser, "apps-list")
    app = daemon.api("GET", "/api/v1/apps/webui").json()
    assert app["memory"] == 128 and app["restart"] == "on-failure" and app["env"] == {"GREETING": "from-the-panel"}
    status, body = http_get(port, "/index.html", 120)
    assert status == 200 and body == b"hello from the cloudbios app image\n"
    # its page: the request above in its logs (httpd -v), a command run in it
    el(browser, 'tr[data-app="webui"] a').click()
    wait(browser, lambda b: "running" in el(b, "#app-state").text, what="the app's page")
    wait(browser, lambda b: "response:200" in el(b, "#app-log").text, timeout=30, what="the request in the app's logs")
    el(browser, "#app-exec-cmd").send_keys("cat /etc/os-release")
    el(browser, "#app-exec button").click()
    wait(browser, lambda b: "[exit 0]" in el(b, "#app-exec-out").text, timeout=60, what="the exec output")
    assert 'NAME="CloudBIOS test busybox"' in el(browser, "#app-exec-out").text
    el(browser, "#app-exec-cmd").clear()
    el(browser, "#app-exec-cmd").send_keys("env")
    el(browser, "#app-exec button").click()
    wait(browser, lambda b: "GREETING=from-the-panel" in el(b, "#app-exec-out").text and "[exit 0]" in el(b, "#app-exec-out").text,
         timeout=60, what="the app's environment through exec")
    screenshot(browser, "apps-detail")
    # back to the list: stop, then remove
    pid = app["pid"]
    browser.get(daemon.url + "/#/apps")
    wait(browser, lambda b: "running" in row_text(b, "webui"), what="the list again")
    stop = [b for b in browser.find_elements(By.CSS_SELECTOR, 'tr[data-app="webui"] button') if b.text == "Stop"]
    stop[0].click()
    wait(browser, lambda b: "stopped" in row_text(b, "webui"), timeout=60, what="the app stopped")
    assert not os.path.exists("/proc/%d" % pid) or "zombie" in open("/proc/%d/status" % pid).read().lower()
    remove = [b for b in browser.find_elements(By.CSS_SELECTOR, 'tr[data-app="webui"] button') if b.text == "Remove"]
    remove[0].click()
    wait(browser, lambda b: b.find_elements(By.CSS_SELECTOR, "dialog [data-confirm]"), what="the remove dialog")
    el(browser, "dialog [data-confirm]").click()
    wait(browser, lambda b: not row_text(b, "webui") and "No apps." in el(b, "#app-rows").text, timeout=30,
         what="the app gone from the list")
    assert daemon.api("GET", "/api/v1/apps").json() == []
    assert not os.path.exists(os.path.join(daemon.state, "s", "apps", "run", "webui"))
