"""End to end: the ISO booted with nothing prepared installs a system that
keeps what the first run set. The ISO boots (BIOS) with no config volume
and a blank disk (serial TARGET01); the first admin is made through the
panel's setup with the code from the serial console, and CloudBIOS is
installed on the blank disk through `POST /api/v1/install`. The installed
disk then boots alone: its panel asks for no first admin, shows no setup
code, and the same user logs in with the same password (a wrong one is
refused)."""
import json
import os

import qemu
from firstrun import CODE_RE, setup_code
from test_install import disks, wait_task

USER, PASSWORD = "owner", "first-run-Install-42"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl e2e@test"


def login(vm, password=PASSWORD):
    return vm.https("/api/v1/login", method="POST", body={"user": USER, "password": password}, timeout=30)


def test_the_first_run_admin_logs_in_to_the_system_installed_from_the_panel(vm_factory, iso, tmp_path):
    target = str(tmp_path / "target.img")
    with open(target, "wb") as f:
        f.truncate(4 << 30)
    vm = vm_factory(name="fr-install", iso=iso, memory=1536, forwards={8443: qemu.free_port()},
                    extra=disks((target, "TARGET01")))
    vm.start()
    code = setup_code(vm)
    health = json.loads(vm.wait_https("/api/v1/health", 240))
    assert health["setup_required"] is True, health
    status, got = vm.https("/api/v1/setup", method="POST", timeout=60,
                           body={"code": code, "user": USER, "password": PASSWORD, "ssh_authorized_keys": [KEY]})
    assert status == 201, got
    assert json.loads(got)["storage"] == "ram", got
    status, got = login(vm)
    assert status == 200, got
    auth = {"Authorization": "Bearer " + json.loads(got)["token"]}
    status, got = vm.https("/api/v1/install", method="POST", body={"disk": {"serial": "TARGET01"}}, headers=auth, timeout=30)
    assert status == 202, got
    t = wait_task(vm, auth, json.loads(got)["id"])
    assert t["state"] == "succeeded", (t, vm.serial()[-3000:])
    status, got = vm.https("/api/v1/system/shutdown", method="POST", headers=auth, timeout=30)
    assert status == 202, got
    vm.proc.wait(timeout=120)
    vm.kill()

    vm = vm_factory(name="fr-installed", memory=1536, forwards={8443: qemu.free_port()}, extra=disks((target, "TARGET01")))
    vm.start()
    health = json.loads(vm.wait_https("/api/v1/health", 300))
    assert health["setup_required"] is False, health
    status, got = login(vm, "not-" + PASSWORD)
    assert status == 401, got
    status, got = login(vm)
    assert status == 200, (got, vm.serial()[-3000:])
    auth = {"Authorization": "Bearer " + json.loads(got)["token"]}
    status, got = vm.https("/api/v1/host", headers=auth, timeout=30)
    assert status == 200, got
    assert json.loads(got)["storage"]["kind"] == "installed", got
    st = json.loads(vm.https("/api/v1/setup")[1])
    assert st["required"] is False and st["storage"] == "config", st
    log = vm.serial()
    assert not CODE_RE.search(log), log[-4000:]
