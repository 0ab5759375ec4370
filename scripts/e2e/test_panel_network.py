"""The panel's network page in a real browser against a real daemon.

The daemon's config has a `network.interfaces` list (a static NIC entry, a
bond, a VLAN on it); GET /api/v1/host reports it as `network.configured`
beside the network in effect, and headless Chromium's network page shows
both: every interface the kernel has (as the API lists them), the gateways
and name servers, and each configured entry with its addresses. (A daemon
that is not PID 1 applies nothing: the host's own network is untouched.)
The dashboard's Machine card offers the local screen's VM, reboot and
shutdown, each reboot or shutdown behind a confirmation.
"""
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from panel_daemon import PASSWORD, USER, PanelDaemon  # noqa: E402
from browser import chromium, screenshot, wait  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

NETWORK = """network:
  interfaces:
    - match: "52:54:00:*"
      addresses: [192.0.2.10/24, "2001:db8::10/64"]
      gateway: 192.0.2.1
      dns: [192.0.2.53]
    - name: bond0
      bond: {members: ["enp9s*"], mode: active-backup}
      dhcp: true
    - name: vlan100
      vlan: {link: bond0, id: 100}
      address: 10.0.100.5/24
"""


@pytest.fixture(scope="module")
def daemon():
    d = PanelDaemon(extra_config=NETWORK)
    d.start()
    try:
        d.login()
        yield d
    finally:
        d.stop()




def test_the_network_page_shows_the_network_in_effect_and_the_configured_interfaces(daemon):
    r = daemon.api("GET", "/api/v1/host")
    assert r.status_code == 200, r.text
    net = r.json()["network"]
    configured = net["configured"]
    assert [e.get("match") or e.get("name") for e in configured] == ["52:54:00:*", "bond0", "vlan100"], configured
    assert configured[0]["addresses"] == ["192.0.2.10/24", "2001:db8::10/64"] and not configured[0]["dhcp"], configured
    assert configured[1]["bond"] == {"members": ["enp9s*"], "mode": "active-backup"} and configured[1]["dhcp"], configured
    assert configured[2]["vlan"] == {"link": "bond0", "id": 100} and configured[2]["addresses"] == ["10.0.100.5/24"], configured
    names = [i["name"] for i in net["interfaces"]]
    assert names, net

    b = chromium()
    try:
        b.get(daemon.url + "/")
        wait(b, lambda b: b.find_element(By.CSS_SELECTOR, "#login-user").is_displayed(), what="login page")
        b.find_element(By.CSS_SELECTOR, "#login-user").send_keys(USER)
        b.find_element(By.CSS_SELECTOR, "#login-password").send_keys(PASSWORD)
        b.find_element(By.CSS_SELECTOR, "#login-submit").click()
        wait(b, lambda b: b.find_element(By.CSS_SELECTOR, "#shell").is_displayed(), what="dashboard")
        b.find_element(By.CSS_SELECTOR, '#nav a[data-nav="network"]').click()
        wait(b, lambda b: b.find_elements(By.CSS_SELECTOR, "#net-effect tr[data-if]")
             and b.find_elements(By.CSS_SELECTOR, "#net-configured tr[data-entry]"), what="network page")
        shown = [e.get_attribute("data-if") for e in b.find_elements(By.CSS_SELECTOR, "#net-effect tr[data-if]")]
        assert sorted(shown) == sorted(names), (shown, names)
        for i in net["interfaces"]:
            row = b.find_element(By.CSS_SELECTOR, '#net-effect tr[data-if="%s"]' % i["name"]).text
            for a in i["addresses"]:
                assert a in row, (a, row)
        routes = b.find_element(By.CSS_SELECTOR, "#net-routes").text
        for g in net["gateways"] + net["dns"]:
            assert g in routes, (g, routes)
        rows = {e.get_attribute("data-entry"): e.text for e in b.find_elements(By.CSS_SELECTOR, "#net-configured tr[data-entry]")}
        assert set(rows) == {"52:54:00:*", "bond0", "vlan100"}, rows
        assert "192.0.2.10/24" in rows["52:54:00:*"] and "2001:db8::10/64" in rows["52:54:00:*"] and "192.0.2.1" in rows["52:54:00:*"]
        assert "192.0.2.53" in rows["52:54:00:*"] and "DHCP" not in rows["52:54:00:*"], rows
        assert "bond (active-backup) of enp9s*" in rows["bond0"] and "DHCP" in rows["bond0"], rows
        assert "VLAN 100 on bond0" in rows["vlan100"] and "10.0.100.5/24" in rows["vlan100"], rows
        assert b.find_element(By.CSS_SELECTOR, '#nav a[data-nav="network"]').get_attribute("class") == "active"
        screenshot(b, "network")
    finally:
        b.quit()


def test_a_config_with_dhcp_shows_dhcp(tmp_path):
    d = PanelDaemon()
    d.start()
    try:
        d.login()
        r = d.api("GET", "/api/v1/host")
        assert r.status_code == 200 and r.json()["network"]["configured"] == "dhcp", r.text
    finally:
        d.stop()


def test_the_machine_card_switches_the_display_and_asks_before_a_reboot(daemon):
    """The dashboard's Machine card: the local screen's VM (the VMs and the
    host console to pick from) and reboot/shutdown behind a confirmation.
    A daemon that is not PID 1 refuses them with the reason, shown on the
    card (on the appliance itself test_install_panel drives them)."""
    r = daemon.api("POST", "/api/v1/vms", json={"name": "idle", "memory": 128, "network": "none"})
    assert r.status_code == 201, r.text
    b = chromium()
    try:
        b.get(daemon.url + "/")
        wait(b, lambda b: b.find_element(By.CSS_SELECTOR, "#login-user").is_displayed(), what="login page")
        b.find_element(By.CSS_SELECTOR, "#login-user").send_keys(USER)
        b.find_element(By.CSS_SELECTOR, "#login-password").send_keys(PASSWORD)
        b.find_element(By.CSS_SELECTOR, "#login-submit").click()
        wait(b, lambda b: [o.get_attribute("value") for o in b.find_elements(By.CSS_SELECTOR, "#display-vm option")] == ["", "idle"],
             what="the machine card's VMs")
        from selenium.webdriver.support.ui import Select
        Select(b.find_element(By.CSS_SELECTOR, "#display-vm")).select_by_value("idle")
        b.find_element(By.CSS_SELECTOR, "#display-set").click()
        wait(b, lambda b: "not run by CloudBIOS" in b.find_element(By.CSS_SELECTOR, "#machine-msg").text, what="the refusal")
        # cancelled: nothing is sent (the card's message, marked, stays)
        b.execute_script("document.getElementById('machine-msg').textContent = 'marker'")
        b.find_element(By.CSS_SELECTOR, "#host-reboot").click()
        wait(b, lambda b: b.find_elements(By.CSS_SELECTOR, "dialog[open]"), what="the confirmation")
        b.find_element(By.CSS_SELECTOR, "dialog button[value=cancel]").click()
        wait(b, lambda b: not b.find_elements(By.CSS_SELECTOR, "dialog[open]"), what="the dialog closed")
        time.sleep(1)
        assert b.find_element(By.CSS_SELECTOR, "#machine-msg").text == "marker"
        # confirmed: asked, and refused here with the reason
        b.find_element(By.CSS_SELECTOR, "#host-shutdown").click()
        wait(b, lambda b: b.find_elements(By.CSS_SELECTOR, "dialog[open] [data-confirm]"), what="the confirmation")
        b.find_element(By.CSS_SELECTOR, "dialog[open] [data-confirm]").click()
        wait(b, lambda b: "not run by CloudBIOS" in b.find_element(By.CSS_SELECTOR, "#machine-msg").text, what="the shutdown's refusal")
        assert daemon.proc.poll() is None
        screenshot(b, "machine-card")
    finally:
        b.quit()
