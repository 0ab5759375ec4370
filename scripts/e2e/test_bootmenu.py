"""GRUB's per-VM entries follow the VMs on an ISO boot: CloudBIOS writes
boot-menu.cfg on the CBCONFIG volume its config came from, one entry per VM
(the config's, then one created through the API and kept on a CB-DATA data
disk, and one made from an OVA as soon as its import ends); the next boot of the same disks shows the entries in GRUB's menu (read on the serial console), and
choosing one with the keyboard boots the host with that VM on the local
display, and the VM runs."""
import json
import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request

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


OVF = """<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References><File ovf:id="file1" ovf:href="disk1.vmdk"/></References>
  <DiskSection><Disk ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:capacity="16777216"/></DiskSection>
  <VirtualSystem ovf:id="appliance"><Name>appliance</Name>
    <VirtualHardwareSection>
      <Item><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>128</rasd:VirtualQuantity></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
"""


def make_ova(d):
    """A small OVA: an OVF descriptor and a 16 MiB VMDK, in a tar."""
    src = os.path.join(d, "ova-src")
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(src, "appliance.ovf"), "w") as f:
        f.write(OVF)
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", os.path.join(src, "disk1.vmdk"), "16M"], check=True)
    out = os.path.join(d, "appliance.ova")
    subprocess.run(["tar", "-cf", out, "-C", src, "appliance.ovf", "disk1.vmdk"], check=True)
    return out


def put_image(vm, auth, name, path):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with open(path, "rb") as f:
        data = f.read()
    req = urllib.request.Request(f"https://127.0.0.1:{vm.forwards[8443]}/api/v1/images/{name}", data=data, method="PUT",
                                 headers={**auth, "Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


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
    # a VM made from an OVA (a task, not a create) gets its entry as soon as the import ends
    status, r = put_image(vm, auth, "appliance.ova", make_ova(str(tmp_path)))
    assert status in (200, 201), r
    status, r = api(vm, auth, "POST", "/vms/import", {"image": "appliance.ova", "name": "fromova"})
    assert status == 202, r
    vm.wait_serial("entries for fromova, second, tiny", 60)
    status, _ = api(vm, auth, "DELETE", "/vms/fromova")
    assert status in (200, 204)
    deadline = time.monotonic() + 30
    while "entries for second, tiny" not in vm.serial().split("entries for fromova, second, tiny")[-1]:
        assert time.monotonic() < deadline, "the deleted OVA VM's entry stays:\n" + vm.serial()[-3000:]
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
