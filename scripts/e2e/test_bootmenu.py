"""GRUB's per-VM entries follow the VMs on an ISO boot: CloudBIOS writes
boot-menu.cfg on the CBCONFIG volume its config came from, one entry per VM
(the config's, then one created through the API and kept on a CB-DATA data
disk); the next boot of the same disks shows the entries in GRUB's menu (read on the serial console), and
choosing one with the keyboard boots the host with that VM on the local
display, and the VM runs."""
import json
import subprocess
import time

import qemu

USER, PASSWORD = "admin", "e2e-Menu-42"
PANEL_TIMEOUT = 240

CONFIG = """version: 1
hostname: menu-host
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
    network: none
"""



def api(vm, auth, method, path, body=None):
    status, raw = vm.https("/api/v1" + path, method=method, body=body, headers=auth, timeout=10)
    return status, (json.loads(raw) if raw else None)


def login(vm):
    status, raw = vm.https("/api/v1/login", method="POST", body={"user": USER, "password": PASSWORD})
    assert status == 200, raw
    return {"Authorization": "Bearer " + json.loads(raw)["token"]}


def menu_file(img):
    r = subprocess.run(["mtype", "-i", img, "::boot-menu.cfg"], capture_output=True, text=True,
                       env={"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin"})
    return r.stdout if r.returncode == 0 else None


def test_the_stick_menu_follows_the_vms_and_boots_the_chosen_one(vm_factory, iso, guest, tmp_path):
    vol = qemu.make_cbconfig(str(tmp_path / "cbconfig.img"), {
        "cloudbios.yaml": CONFIG.format(user=USER, hash=qemu.password_hash(PASSWORD)),
        "guest/vmlinuz": ("copy", guest["kernel"]),
        "guest/initrd.img": ("copy", guest["initrd"]),
    })
    assert menu_file(vol) is None
    # a data disk keeps the VM created through the API for the next boot
    data = str(tmp_path / "data.img")
    subprocess.run(["truncate", "-s", "512M", data], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "CB-DATA", data], check=True)
    vm = vm_factory(name="menu1", iso=iso, drives=[vol, data], memory=1024, forwards={8443: qemu.free_port()})
    vm.start()
    vm.wait_https("/api/v1/health", PANEL_TIMEOUT)
    vm.wait_serial("boot menu: /run/cloudbios/media/CBCONFIG/boot-menu.cfg: entries for tiny", 60)
    # no VM entries yet: GRUB counted down without drawing its menu
    assert "CloudBIOS: booting; Esc for the boot menu" in vm.serial() and "GNU GRUB" not in vm.serial()
    auth = login(vm)
    spec = {"name": "second", "memory": 128, "kernel": "tiny-kernel", "initrd": "tiny-initrd", "network": "none"}
    status, r = api(vm, auth, "POST", "/vms", spec)
    assert status == 201, r
    vm.wait_serial("boot menu: /run/cloudbios/media/CBCONFIG/boot-menu.cfg: entries for second, tiny", 30)
    # a VM created and deleted: its entry comes and goes
    status, r = api(vm, auth, "POST", "/vms", {**spec, "name": "gone"})
    assert status == 201, r
    status, _ = api(vm, auth, "DELETE", "/vms/gone")
    assert status in (200, 204)
    vm.wait_serial("entries for gone, second, tiny", 30)
    deadline = time.monotonic() + 30
    while "entries for second, tiny" not in vm.serial().split("entries for gone, second, tiny")[-1]:
        assert time.monotonic() < deadline, "the deleted VM's entry stays:\n" + vm.serial()[-3000:]
        time.sleep(0.5)
    status, r = api(vm, auth, "POST", "/system/shutdown", None)
    assert status == 202, r
    vm.proc.wait(timeout=120)
    vm.kill()

    text = menu_file(vol)
    assert text and text.startswith("# CloudBIOS boot menu entries"), text
    assert text.count("menuentry ") == 2, text
    assert 'menuentry "CloudBIOS: dual-run second" --id "vm-second"' in text
    assert "cloudbios.display=second" in text and "cloudbios.display=tiny" in text and "gone" not in text

    # the next boot of the same disks: GRUB lists the VMs; pick "second"
    vm2 = vm_factory(name="menu2", iso=iso, drives=[vol, data], memory=1024, forwards={8443: qemu.free_port()})
    vm2.start()
    vm2.wait_serial("CloudBIOS: dual-run tiny", 120)
    # with VMs listed the menu is drawn; key 1 boots the file's first VM
    assert "GNU GRUB" in vm2.serial()
    vm2.qmp.send_key("1")
    log = vm2.wait_serial("cmdline: ", 180)
    cmdline = log.split("cmdline: ", 1)[1].split("\n", 1)[0]
    assert "cloudbios.display=second" in cmdline, cmdline
    vm2.wait_serial("services: viewer: cloudbios viewer --vm second", 120)
    vm2.wait_https("/api/v1/health", PANEL_TIMEOUT)
    auth = login(vm2)
    deadline = time.monotonic() + 120
    state = None
    while time.monotonic() < deadline:
        status, got = api(vm2, auth, "GET", "/vms/second")
        state = got.get("state")
        if state in ("running", "starting"):
            break
        time.sleep(2)
    assert state in ("running", "starting"), (got, vm2.serial()[-3000:])
