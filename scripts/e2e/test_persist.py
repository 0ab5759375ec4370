"""State that lasts on an ISO boot: with no data partition the host says its
state lives in RAM; a second disk made a data disk (CB-DATA) through the API
(refused while it holds a filesystem, made with wipe; the boot medium and a
disk in use refused) takes the state over at once; an image uploaded and a
VM created then are still there after the machine reboots (a new QEMU run
of the same disks), and the data partition is what holds them."""
import json
import os
import ssl
import subprocess
import time
import urllib.request

import qemu

USER, PASSWORD = "admin", "e2e-Persist-42"
BOOT_TIMEOUT = 300
PANEL_TIMEOUT = 240


def config():
    return f"""version: 1
hostname: persist-host
panel:
  users:
    - name: {USER}
      password_hash: "{qemu.password_hash(PASSWORD)}"
"""


def login(vm):
    status, raw = vm.https("/api/v1/login", method="POST", body={"user": USER, "password": PASSWORD})
    assert status == 200, raw
    return {"Authorization": "Bearer " + json.loads(raw)["token"]}



def api(vm, auth, method, path, body=None, timeout=10):
    status, raw = vm.https("/api/v1" + path, method=method, body=body, headers=auth, timeout=timeout)
    return status, (json.loads(raw) if raw else None)


def put_raw(vm, auth, path, data):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(f"https://127.0.0.1:{vm.forwards[8443]}/api/v1{path}", data=data, method="PUT",
                                 headers={**auth, "Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
        return r.status, json.loads(r.read())


def wait_task(vm, auth, task_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, t = api(vm, auth, "GET", f"/tasks/{task_id}")
        assert status == 200, t
        if t["state"] in ("succeeded", "failed"):
            return t
        time.sleep(0.5)
    raise AssertionError(f"task {task_id} still {t} after {timeout} s")


def boot(vm_factory, iso, name, drives):
    vm = vm_factory(name=name, iso=iso, drives=drives, memory=1024, forwards={8443: qemu.free_port()},
                    extra=["-device", "virtio-blk-pci,drive=data,serial=PERSIST-DATA"])
    vm.start()
    vm.wait_https("/api/v1/health", PANEL_TIMEOUT)
    return vm


def test_a_data_disk_made_through_the_api_keeps_images_and_vms_across_a_reboot(vm_factory, iso, guest, tmp_path):
    cbconfig = qemu.make_cbconfig(str(tmp_path / "cbconfig.img"), {"cloudbios.yaml": config()})
    data = str(tmp_path / "data.img")
    # a disk that holds something: a filesystem with a file on it
    subprocess.run(["truncate", "-s", "1G", data], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "OLDSTUFF", data], check=True)
    drives = [cbconfig, f"file={data},format=raw,if=none,id=data"]

    vm = boot(vm_factory, iso, "persist1", drives)
    auth = login(vm)
    status, host = api(vm, auth, "GET", "/host")
    assert status == 200 and host["storage"]["kind"] == "ram" and host["storage"]["persistent"] is False, host
    assert "RAM" in host["storage"]["note"]
    assert "storage: no data partition (CB-DATA)" in vm.serial()

    status, disks = api(vm, auth, "GET", "/disks")
    by_serial = {d.get("serial"): d for d in disks}
    name = by_serial["PERSIST-DATA"]["name"]
    boot_medium = next(d for d in disks if d.get("boot_medium"))
    in_use = next(d for d in disks if (d.get("filesystem") or {}).get("label") == "CBCONFIG")  # mounted: the config
    assert in_use["mountpoints"], in_use

    # refused: the boot medium (even with wipe), a disk in use, a disk with data without wipe, no such disk
    status, e = api(vm, auth, "POST", f"/disks/{boot_medium['name']}/init", {"wipe": True})
    assert status == 409 and "boot" in e["error"], e
    status, e = api(vm, auth, "POST", f"/disks/{in_use['name']}/init", {"wipe": True})
    assert status == 409, e
    status, e = api(vm, auth, "POST", f"/disks/{name}/init", {})
    assert status == 409 and "without wipe" in e["error"] and "OLDSTUFF" in e["error"], e
    status, e = api(vm, auth, "POST", "/disks/nosuchdisk/init", {"wipe": True})
    assert status == 404, e
    status, e = api(vm, auth, "POST", f"/disks/{name}/init", {"wipe": "yes"})
    assert status == 400, e
    status, again = api(vm, auth, "GET", "/disks")
    assert [d for d in again if d["name"] == name] == [by_serial["PERSIST-DATA"]]  # nothing changed

    # with wipe: made, and the state moves onto it now (no VM runs)
    status, t = api(vm, auth, "POST", f"/disks/{name}/init", {"wipe": True})
    assert status == 202 and t["kind"] == "disk-init", t
    t = wait_task(vm, auth, t["id"])
    assert t["state"] == "succeeded", t
    assert t["result"]["state"] == "moved" and t["result"]["device"] == f"/dev/{name}1", t
    status, host = api(vm, auth, "GET", "/host")
    st = host["storage"]
    assert st["kind"] == "data-partition" and st["device"] == f"/dev/{name}1" and st["label"] == "CB-DATA", st
    assert st["persistent"] is True and st["size"] > 900 << 20, st

    # an image and a VM made now land on the data partition
    kernel = open(guest["kernel"], "rb").read()
    status, img = put_raw(vm, auth, "/images/tiny-kernel", kernel)
    assert status in (200, 201), img
    spec = {"name": "keeper", "memory": 128, "kernel": "tiny-kernel", "disks": [{"id": "scratch", "size": "64M"}]}
    status, created = api(vm, auth, "POST", "/vms", spec)
    assert status == 201, created
    status, before = api(vm, auth, "GET", "/images")
    before = {i["name"]: i for i in before}

    # a clean reboot (QEMU runs with -no-reboot: it exits), then the same disks again
    status, r = api(vm, auth, "POST", "/system/reboot", None)
    assert status == 202, r
    vm.proc.wait(timeout=120)
    log1 = vm.serial()
    vm.kill()

    vm2 = boot(vm_factory, iso, "persist2", drives)
    log = vm2.serial()
    assert f"storage: /dev/{name}1 mounted at /var/lib/cloudbios" in log, log[-4000:]
    auth = login(vm2)
    status, host = api(vm2, auth, "GET", "/host")
    assert host["storage"]["kind"] == "data-partition", host
    status, images = api(vm2, auth, "GET", "/images")
    after = {i["name"]: i for i in images}
    assert "tiny-kernel" in after and after["tiny-kernel"]["size"] == len(kernel), (images, log1[-3000:])
    assert after["tiny-kernel"].get("sha256") == before["tiny-kernel"].get("sha256")
    status, got = api(vm2, auth, "GET", "/vms/keeper")
    assert status == 200 and got["memory"] == 128 and got["kernel"] == "tiny-kernel", got
    assert [d["id"] for d in got["disks"]] == ["scratch"], got


def test_disks_init_on_the_command_line_refuses_data_without_wipe(tmp_path):
    """`cloudbios disks init IMAGE`: a disk image holding a filesystem is
    refused and unchanged; with --wipe it becomes one CB-DATA partition."""
    from cbdaemon import binary
    img = str(tmp_path / "cli.img")
    subprocess.run(["truncate", "-s", "400M", img], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "KEEPME", img], check=True)
    before = open(img, "rb").read(2 << 20)
    r = subprocess.run([binary(), "disks", "init", img], capture_output=True, text=True)
    assert r.returncode != 0 and "REFUSED" in r.stderr and "KEEPME" in r.stderr, (r.returncode, r.stdout, r.stderr)
    assert open(img, "rb").read(2 << 20) == before
    r = subprocess.run([binary(), "disks", "init", "--wipe", "--json", img], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["label"] == "CB-DATA"
    listed = json.loads(subprocess.run([binary(), "disks", "--json", img], capture_output=True, text=True, check=True).stdout)
    parts = listed[0]["partitions"]
    assert listed[0]["partition_table"] == "gpt" and [p["label"] for p in parts] == ["CB-DATA"], listed
    assert parts[0]["filesystem"] == "ext4" and parts[0]["start"] == 1 << 20
