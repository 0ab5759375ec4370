"""Apps inside the PE: the ISO carries what pulling and running an app needs
(mkfs.erofs, GNU tar, QEMU's microvm firmware, the kernel apps boot and the
modules of their initramfs), and a PE booted from the ISO runs an app from
an OCI archive in its image store (no registry is reachable: the archive
comes on the CBCONFIG volume with the config that names it in `images:` and
runs it from `apps:`): the app's web root answers through the PE's
forwarded port and a command runs in it."""
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import oci_registry  # noqa: E402
import qemu  # noqa: E402

USER, PASSWORD = "admin", "e2e-Secret-42"


def test_the_iso_carries_what_apps_need(iso, tmp_path):
    for f in ("initramfs.img", "cloudbios.sqfs"):
        subprocess.run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", f"/boot/{f}", str(tmp_path / f)],
                       check=True, capture_output=True)
    core = subprocess.run(f"zstd -dc {tmp_path / 'initramfs.img'} | cpio -it --quiet", shell=True, check=True,
                          capture_output=True, text=True).stdout.split()
    payload = subprocess.run(["unsquashfs", "-lc", "-d", "", str(tmp_path / "cloudbios.sqfs")], check=True,
                             capture_output=True, text=True).stdout.split("\n")
    files = [p.lstrip("./") for p in core] + [p.split("/usr/lib/cloudbios/payload/", 1)[-1].lstrip("/") for p in payload]
    for want in ("usr/bin/mkfs.erofs", "usr/bin/tar", "usr/share/qemu/bios-microvm.bin"):
        assert want in files, want
    # one kernel on the ISO: apps boot the medium's /boot/vmlinuz (the PE copies it to RAM on first use)
    assert not any(p.startswith("boot/vmlinuz") for p in files)
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/boot/vmlinuz", str(tmp_path / "vmlinuz")],
                   check=True, capture_output=True)
    for mod in ("virtio_mmio", "virtio_blk", "virtio_net", "virtio_console", "erofs", "overlay"):
        assert any(os.path.basename(p).split(".ko")[0] == mod for p in files if ".ko" in p), mod


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """busybox:1 as an OCI archive (the layout the registry tests push)."""
    work = tmp_path_factory.mktemp("oci")
    layout = oci_registry.Layout(str(work / "layout"))
    layout.tag("1", layout.image(oci_registry.busybox_layers(), cmd=["httpd", "-f", "-p", "8080", "-h", "/www"]))
    out = str(work / "busybox.tar")
    subprocess.run(["skopeo", "copy", "--quiet", f"oci:{layout.path}:1", f"oci-archive:{out}"], check=True,
                   capture_output=True, timeout=120)
    return out


def test_a_pe_runs_an_app_from_an_oci_archive(vm_factory, iso, tmp_path, archive):
    config = f"""version: 1
hostname: apps-pe
panel:
  users:
    - name: {USER}
      password_hash: "{qemu.password_hash(PASSWORD)}"
images:
  - name: busybox.tar
    file: busybox.tar
apps:
  - name: web
    image: store:busybox.tar
    ports: [{{host: 8080, guest: 8080}}]
    memory: 128M
    restart: always
"""
    vol = qemu.make_cbconfig(str(tmp_path / "cbconfig.img"), {"cloudbios.yaml": config, "busybox.tar": ("copy", archive)})
    vm = vm_factory(name="pe-apps", iso=iso, drives=[vol], memory=2048, forwards={8443: qemu.free_port(), 8080: qemu.free_port()})
    vm.start()
    vm.wait_https("/api/v1/health", 300)
    status, raw = vm.https("/api/v1/login", method="POST", body={"user": USER, "password": PASSWORD})
    assert status == 200, raw
    auth = {"Authorization": "Bearer " + json.loads(raw)["token"]}
    # the app (a microVM under TCG inside the PE under TCG) answers on the PE's port
    deadline = time.monotonic() + 600
    app, last = None, None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{vm.forwards[8080]}/index.html", timeout=10) as r:
                body = r.read()
            break
        except Exception as e:  # noqa: BLE001 - pulling, booting
            last = e
        status, raw = vm.https("/api/v1/apps", headers=auth, timeout=10)
        app = json.loads(raw) if status == 200 else raw
        if isinstance(app, list) and app and app[0]["state"] == "failed":
            break
        time.sleep(3)
    else:
        body = None
    assert body == b"hello from the cloudbios app image\n", f"{last}; apps: {app}; serial:\n{vm.serial()[-3000:]}"
    assert "apps: kernel " in vm.serial() and "copied from /run/cloudbios/" in vm.serial()
    status, raw = vm.https("/api/v1/apps/web", headers=auth)
    web = json.loads(raw)
    assert web["state"] == "running" and web["image"] == "store:busybox.tar" and web["digest"].startswith("sha256:")
    status, raw = vm.https("/api/v1/apps/web/exec", method="POST", body={"cmd": ["cat", "/etc/os-release"]},
                           headers=auth, timeout=120)
    assert status == 200, raw
    r = json.loads(raw)
    assert r["exit_code"] == 0 and 'NAME="CloudBIOS test busybox"' in r["stdout"]
