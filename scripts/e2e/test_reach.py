"""The machines users boot on, as QEMU emulates them: the ISO as the CD of a
VM that has disks behind every storage controller a server may have (NVMe,
virtio-blk, virtio-scsi, VMware PVSCSI, MegaRAID SAS, AHCI, USB storage on
xHCI) and four NICs (virtio-net, e1000, e1000e, vmxnet3), each on its own
user network with its own forwarded port. Every disk is seen (by its size,
through the API), the panel answers through every NIC, and the CBCONFIG
volume is found behind the controller it sits on, rotated between boots.
The first boot has no config at all: a blank virtio and a blank SATA disk
beside the CD ("CloudBIOS inside CloudBIOS") must not keep the boot medium
from being mounted for both the config search and the payload. Boot media
as users use them: the ISO as a virtio boot disk with a serial console
only, and real PXE (iPXE, TFTP, HTTP). `cloudbios.config=metadata` reads
the config from an EC2-style metadata service."""
import json
import os
import re

import pytest

import qemu

BOOT_TIMEOUT = 300
PANEL_TIMEOUT = 240
CODE_RE = re.compile(r"setup code ([0-9A-Z]{4}-[0-9A-Z]{4})")
USER, PASSWORD = "admin", "reach-Secret-42"

# controller -> QEMU arguments for one disk behind it (DRIVE: the -drive id)
CONTROLLERS = {
    "nvme": lambda d: ["-device", f"nvme,drive={d},serial=RNVME"],
    "virtio-blk": lambda d: ["-device", f"virtio-blk-pci,drive={d}"],
    "virtio-scsi": lambda d: ["-device", "virtio-scsi-pci,id=vscsi", "-device", f"scsi-hd,drive={d},bus=vscsi.0"],
    "pvscsi": lambda d: ["-device", "pvscsi,id=pvscsi", "-device", f"scsi-hd,drive={d},bus=pvscsi.0"],
    "megasas": lambda d: ["-device", "megasas-gen2,id=mega", "-device", f"scsi-hd,drive={d},bus=mega.0"],
    "ahci": lambda d: ["-device", "ahci,id=sata", "-device", f"ide-hd,drive={d},bus=sata.0"],
    "usb": lambda d: ["-device", "qemu-xhci,id=xhci", "-device", f"usb-storage,drive={d},bus=xhci.0"],
}
# the drivers each controller and NIC needs (as /proc/modules names them)
DRIVERS = {"nvme": "nvme", "virtio-blk": "virtio_blk", "virtio-scsi": "virtio_scsi", "pvscsi": "vmw_pvscsi",
           "megasas": "megaraid_sas", "ahci": "ahci", "usb": "usb_storage",
           "e1000": "e1000", "e1000e": "e1000e", "vmxnet3": "vmxnet3", "virtio-net": "virtio_net"}
NICS = {"e1000": "10.0.3", "e1000e": "10.0.4", "vmxnet3": "10.0.5"}  # beside the harness's virtio-net on 10.0.2


def machine(tmp_path, config_on=None, config=None):
    """QEMU arguments for a disk behind every controller (each a blank raw
    image of its own size, or the CBCONFIG volume behind `config_on`), the
    three extra NICs, and {controller: disk size}."""
    args, sizes = [], {}
    for i, (name, device) in enumerate(CONTROLLERS.items()):
        if name == config_on:
            path = qemu.make_cbconfig(str(tmp_path / "cbconfig.img"), {"cloudbios.yaml": config})
        else:
            path = str(tmp_path / f"{name}.img")
            with open(path, "wb") as f:
                f.truncate((40 + i) << 20)
        sizes[name] = os.path.getsize(path)
        drive = f"d{i}"
        args += ["-drive", f"if=none,id={drive},format=raw,file={path}"] + device(drive)
    return args, sizes


def add_nics(vm):
    """The extra NICs, each with its forward: vm.https(..., port=MODEL)."""
    for model, net in NICS.items():
        port = qemu.free_port()
        vm.args += ["-nic", f"user,model={model},net={net}.0/24,hostfwd=tcp:127.0.0.1:{port}-{net}.15:8443"]
        vm.forwards[model] = port


def assert_every_disk_and_driver(vm, sizes, token):
    status, raw = vm.https("/api/v1/disks", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert status == 200, raw
    seen = sorted(d["size"] for d in json.loads(raw))
    missing = {c: s for c, s in sizes.items() if s not in seen}
    assert not missing, f"disks not seen: {missing}; seen sizes {seen}\n{vm.serial()[-4000:]}"
    loaded = " ".join(re.findall(r"cloudbios: modules: \d+ device aliases; loaded \d+: (.*)", vm.serial()))
    for dev, drv in DRIVERS.items():
        assert drv in loaded.split(), f"{dev}: {drv} not loaded ({loaded})"


def assert_panel_on_every_nic(vm):
    for model in ("virtio-net",) + tuple(NICS):
        port = 8443 if model == "virtio-net" else model
        body = json.loads(vm.wait_https("/api/v1/health", 90, port=port))
        assert body["status"] == "ok", (model, body)


@pytest.mark.parametrize("firmware", ["bios", "uefi"])
def test_cd_beside_blank_disks_on_every_controller_first_run(vm_factory, iso, tmp_path, firmware):
    """No config anywhere: the config search reads the CD and the payload is
    mounted from it, with blank disks behind every controller; the panel's
    first run answers on every NIC and, once set up, lists every disk."""
    args, sizes = machine(tmp_path)
    vm = vm_factory(name=f"reach-blank-{firmware}", iso=iso, firmware=firmware, memory=1024,
                    forwards={8443: qemu.free_port()}, extra=args)
    add_nics(vm)
    vm.start()
    vm.wait_serial("enter the setup code ", BOOT_TIMEOUT)
    log = vm.wait_serial("cloudbios: payload: copied to RAM", 180)
    assert "Device or resource busy" not in log, log[-4000:]
    assert "payload: ERROR" not in log, log[-4000:]
    assert re.search(r"cloudbios: payload: /run/cloudbios/media/CLOUDBIOS/boot/cloudbios\.sqfs \(/dev/sr0\) mounted", log), log[-4000:]
    assert len(re.findall(r"cloudbios: started daemon \(pid ", log)) == 1, log[-4000:]
    assert_panel_on_every_nic(vm)
    code = CODE_RE.findall(vm.serial())[-1]
    status, raw = vm.https("/api/v1/setup", method="POST", timeout=60,
                           body={"code": code, "user": USER, "password": PASSWORD, "save": False})
    assert status == 201, raw
    status, raw = vm.https("/api/v1/login", method="POST", body={"user": USER, "password": PASSWORD})
    assert status == 200, raw
    assert_every_disk_and_driver(vm, sizes, json.loads(raw)["token"])
    # the daemon is still the first one: no restart loop
    assert len(re.findall(r"cloudbios: started daemon \(pid ", vm.serial())) == 1, vm.serial()[-4000:]


@pytest.mark.parametrize("config_on,firmware", [("megasas", "uefi"), ("pvscsi", "bios")])
def test_config_behind_a_raid_or_pvscsi_controller(vm_factory, iso, tmp_path, config_on, firmware):
    """CBCONFIG behind MegaRAID SAS, then behind PVSCSI: found, its admin
    logs in, every other controller's disk is listed too."""
    config = f"""version: 1
hostname: behind-{config_on}
panel:
  users:
    - name: {USER}
      password_hash: "{qemu.password_hash(PASSWORD)}"
"""
    args, sizes = machine(tmp_path, config_on=config_on, config=config)
    vm = vm_factory(name=f"reach-{config_on}", iso=iso, firmware=firmware, memory=1024,
                    forwards={8443: qemu.free_port()}, extra=args)
    vm.start()
    log = vm.wait_serial("cloudbios: boot: complete", BOOT_TIMEOUT)
    assert re.search(r"config: using /run/cloudbios/media/CBCONFIG/cloudbios\.yaml from LABEL=CBCONFIG \(/dev/sd\w+\)", log), log[-4000:]
    assert f"cloudbios: hostname: behind-{config_on}" in log
    vm.wait_https("/api/v1/health", PANEL_TIMEOUT)
    status, raw = vm.https("/api/v1/login", method="POST", body={"user": USER, "password": PASSWORD})
    assert status == 200, raw
    token = json.loads(raw)["token"]
    status, raw = vm.https("/api/v1/disks", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    seen = sorted(d["size"] for d in json.loads(raw))
    assert all(s in seen for s in sizes.values()), (sizes, seen)


IMDS = r'''
import base64, sys, time
log, config, cloud = sys.argv[1], open(sys.argv[2], "rb").read(), sys.argv[3]
inp, out = sys.stdin.buffer, sys.stdout.buffer
line = inp.readline().decode("latin-1").strip()
headers = {}
while True:
    h = inp.readline().decode("latin-1").strip()
    if not h:
        break
    k, _, v = h.partition(":")
    headers[k.strip().lower()] = v.strip()
method, path = line.split(" ")[:2]
with open(log, "a") as f:
    f.write(f"{method} {path} token={headers.get('x-aws-ec2-metadata-token', '-')}\n")
status, body = 404, b"not found"
if cloud == "EC2":
    if method == "PUT" and path == "/latest/api/token" and headers.get("x-aws-ec2-metadata-token-ttl-seconds"):
        status, body = 200, b"imds-token-e2e"
    elif method == "GET" and path == "/latest/user-data":
        status, body = (200, config) if headers.get("x-aws-ec2-metadata-token") == "imds-token-e2e" else (401, b"")
elif cloud == "OpenStack":
    if method == "GET" and path == "/openstack/latest/user_data":
        status, body = 200, config
elif cloud == "GCE":
    if method == "GET" and path == "/computeMetadata/v1/instance/attributes/user-data":
        status, body = (200, config) if headers.get("metadata-flavor") == "Google" else (403, b"")
elif cloud == "Azure":
    if method == "GET" and path == "/metadata/instance/compute/userData?api-version=2021-01-01&format=text":
        status, body = (200, base64.b64encode(config)) if headers.get("metadata") == "true" else (400, b"")
out.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % (status, len(body)) + body)
out.flush()
'''


USER_DATA_URL = {
    "EC2": "/latest/user-data",
    "OpenStack": "/openstack/latest/user_data",
    "GCE": "/computeMetadata/v1/instance/attributes/user-data",
    "Azure": "/metadata/instance/compute/userData?api-version=2021-01-01&format=text",
}


@pytest.mark.parametrize("cloud", ["EC2", "OpenStack", "GCE", "Azure"])
def test_config_from_the_clouds_user_data(vm_factory, iso, tmp_path, cloud):
    """`cloudbios.config=metadata`: a cloud's metadata service at
    169.254.169.254 as each cloud serves it (EC2's IMDSv2 token first,
    OpenStack's plain user_data, GCE's Metadata-Flavor header, Azure's
    base64 userData behind its Metadata header), served by QEMU's guestfwd
    from a local program that answers only that cloud's way; the PE takes
    its config from the user-data: its hostname, and its admin logs in."""
    import sys
    script, reqlog, userdata = tmp_path / "imds.py", tmp_path / "requests.log", tmp_path / "user-data"
    script.write_text(IMDS)
    userdata.write_text(f"""version: 1
hostname: from-imds
panel:
  users:
    - name: {USER}
      password_hash: "{qemu.password_hash(PASSWORD)}"
""")
    out = os.path.dirname(iso)
    vm = vm_factory(name="reach-imds", kernel=os.path.join(out, "vmlinuz"), initrd=os.path.join(out, "initramfs.img"),
                    append="console=ttyS0,115200 cloudbios.config=metadata", memory=1024,
                    forwards={8443: qemu.free_port()})
    # the metadata address must be inside the user network for guestfwd
    i = next(i for i, a in enumerate(vm.args) if a.startswith("user,model=virtio-net-pci"))
    vm.args[i] += (",net=169.254.169.0/24,guestfwd=tcp:169.254.169.254:80-cmd:"
                   f"{sys.executable} {script} {reqlog} {userdata} {cloud}")
    vm.start()
    log = vm.wait_serial("cloudbios: hostname: ", BOOT_TIMEOUT)
    assert ("cloudbios: config: using /run/cloudbios/config/cloudbios.yaml from metadata: "
            f"{cloud} http://169.254.169.254{USER_DATA_URL[cloud]}") in log, log[-4000:]
    assert "cloudbios: hostname: from-imds" in log
    if cloud == "EC2":
        assert "cloudbios: config: metadata: EC2: IMDSv2 token received" in log, log[-4000:]
        assert reqlog.read_text().splitlines()[-2:] == ["PUT /latest/api/token token=-",
                                                        "GET /latest/user-data token=imds-token-e2e"]
    else:
        # the clouds before it were asked and answered 404; its own URL was the last request
        assert reqlog.read_text().splitlines()[-1].startswith(f"GET {USER_DATA_URL[cloud]} "), reqlog.read_text()
    vm.wait_https("/api/v1/health", PANEL_TIMEOUT)
    status, raw = vm.https("/api/v1/login", method="POST", body={"user": USER, "password": PASSWORD})
    assert status == 200, raw


def test_iso_as_a_virtio_boot_disk_with_a_serial_console_only(vm_factory, iso):
    """A cloud VM's boot disk: the ISO image as a virtio disk, no display
    adapter at all; GRUB and the PE on the serial console show the setup
    code, and the panel answers."""
    vm = vm_factory(name="reach-serial", drives=[f"file={iso},format=raw,if=virtio,snapshot=on"], memory=1024,
                    forwards={8443: qemu.free_port()})
    vm.args[vm.args.index("-vga") + 1] = "none"
    vm.start()
    log = vm.wait_serial("enter the setup code ", BOOT_TIMEOUT)
    assert CODE_RE.search(log), log[-4000:]
    # the boot medium is the virtio disk (its ISO 9660 filesystem)
    assert re.search(r"cloudbios: payload: /run/cloudbios/media/CLOUDBIOS\S*/boot/cloudbios\.sqfs \(/dev/vda\d*\) mounted", log), log[-4000:]
    health = json.loads(vm.wait_https("/api/v1/health", PANEL_TIMEOUT))
    assert health["status"] == "ok" and health["setup_required"] is True


def test_real_pxe_ipxe_fetches_the_kernel_and_initramfs(vm_factory, iso, tmp_path):
    """Network boot as a PXE server does it: the NIC's iPXE ROM gets its
    address and boot file from QEMU's DHCP and TFTP, the boot file is an
    iPXE script that fetches images/out/vmlinuz and initramfs.img over
    HTTP from a server on the host; the PE comes up with the payload from
    the initramfs and the panel answers."""
    import functools
    import http.server
    import threading
    out = os.path.dirname(iso)
    fetched = []

    class H(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            fetched.append(self.path)
            super().do_GET()

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(H, directory=out))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        tftp = tmp_path / "tftp"
        tftp.mkdir()
        base = f"http://10.0.2.2:{srv.server_address[1]}"
        (tftp / "boot.ipxe").write_text(f"""#!ipxe
kernel {base}/vmlinuz console=ttyS0,115200 initrd=initramfs.img
initrd {base}/initramfs.img
boot
""")
        vm = vm_factory(name="reach-pxe", memory=1024, forwards={8443: qemu.free_port()}, extra=["-boot", "n"])
        i = next(i for i, a in enumerate(vm.args) if a.startswith("user,model=virtio-net-pci"))
        vm.args[i] += f",tftp={tftp},bootfile=boot.ipxe"
        vm.start()
        log = vm.wait_serial("enter the setup code ", BOOT_TIMEOUT)
        assert fetched[:2] == ["/vmlinuz", "/initramfs.img"], fetched
        assert "cloudbios: payload: in the initramfs" in log, log[-4000:]
        health = json.loads(vm.wait_https("/api/v1/health", PANEL_TIMEOUT))
        assert health["status"] == "ok"
    finally:
        srv.shutdown()


def test_secure_boot_enforced_through_debians_signed_shim_grub_and_kernel(vm_factory, iso, tmp_path):
    """OVMF with Secure Boot enforced and Microsoft's keys enrolled: the
    ISO boots through Debian's signed shim and GRUB to the signed kernel,
    which says Secure Boot is on and locks itself down; PID 1 loads its
    (signed) modules and the panel answers, with nothing refused by the
    lockdown."""
    import shutil
    vars_copy = str(tmp_path / "OVMF_VARS.ms.fd")
    shutil.copy("/usr/share/OVMF/OVMF_VARS_4M.ms.fd", vars_copy)
    vm = vm_factory(name="reach-secboot", iso=iso, memory=1024, forwards={8443: qemu.free_port()},
                    extra=["-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on",
                           "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
                           "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"])
    vm.start()
    log = vm.wait_serial("enter the setup code ", BOOT_TIMEOUT)
    assert "secureboot: Secure boot enabled" in log, log[:6000]
    assert "Kernel is locked down from EFI Secure Boot" in log, log[:6000]
    # the signed GRUB is never refused a module (its own are built in)
    assert "prohibited by secure boot policy" not in log, log[:6000]
    assert re.search(r"cloudbios: modules: \d+ device aliases; loaded \d+: .*virtio_net", log), log[-4000:]
    health = json.loads(vm.wait_https("/api/v1/health", PANEL_TIMEOUT))
    assert health["status"] == "ok"
    log = vm.wait_serial("cloudbios: payload: copied to RAM", 120)
    # (the kernel's own "swapper/0: hibernation is restricted" is expected)
    refused = [l for l in log.splitlines() if ("is restricted; see man kernel_lockdown.7" in l and "swapper/" not in l)
               or "module verification failed" in l or "Loading of unsigned module" in l]
    assert not refused, refused
