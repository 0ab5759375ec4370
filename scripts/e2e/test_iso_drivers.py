"""The ISO carries the drivers of the machines users boot on: every storage
and NIC driver DESIGN.md's Reach section names is inside the built ISO, in
the core initramfs or the payload squashfs, together with every module it
depends on (by the modules.dep the core carries); the drivers that find the
config volume and bring up a cloud's network are in the core, which GRUB
loads, not only in the payload mounted later. No VM is booted: the ISO's
files are read with xorriso, cpio and unsquashfs."""
import os
import re
import subprocess

import pytest

# DESIGN.md, "Reach": module name -> must it be in the core?
REQUIRED = {
    # AWS, GCP, Azure/Hyper-V, Xen, VMware
    "ena": True, "nvme": True, "gve": True,
    "hv_vmbus": True, "hv_netvsc": True, "hv_storvsc": True,
    "xen-netfront": True, "xen-blkfront": True,
    "vmxnet3": True, "vmw_pvscsi": True,
    # RAID/HBA controllers and USB storage hold the config volume
    "megaraid_sas": True, "mpt3sas": True, "usb-storage": True, "uas": True,
    # NICs of physical servers: the payload is enough
    "mlx4_en": False, "mlx5_core": False,
    "e1000e": False, "igb": False, "igc": False, "ixgbe": False, "i40e": False, "ice": False,
    "tg3": False, "bnxt_en": False, "r8169": False,
}


def norm(name):
    return name.replace("-", "_")


@pytest.fixture(scope="module")
def contents(iso, tmp_path_factory):
    """(core file list, payload file list, core modules.dep text)."""
    d = tmp_path_factory.mktemp("isofiles")
    for f in ("initramfs.img", "cloudbios.sqfs"):
        subprocess.run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", f"/boot/{f}", str(d / f)],
                       check=True, capture_output=True)
    core = subprocess.run(f"zstd -dc {d / 'initramfs.img'} | cpio -it --quiet", shell=True, check=True,
                          capture_output=True, text=True).stdout.split()
    payload = subprocess.run(["unsquashfs", "-lc", "-d", "", str(d / "cloudbios.sqfs")], check=True,
                             capture_output=True, text=True).stdout.split("\n")
    dep_path = next(p for p in core if p.endswith("/modules.dep"))
    dep = subprocess.run(f"zstd -dc {d / 'initramfs.img'} | cpio -i --to-stdout --quiet {dep_path}", shell=True,
                         check=True, capture_output=True, text=True).stdout
    return core, payload, dep_path, dep


def kos(paths):
    """module name -> path relative to /lib/modules/KVER/ of each .ko."""
    out = {}
    for p in paths:
        m = re.search(r"lib/modules/[^/]+/(kernel/.*/([^/]+)\.ko(?:\.\w+)?)$", p.strip())
        if m:
            out[norm(m.group(2))] = m.group(1)
    return out


def test_every_required_driver_and_its_dependencies_is_on_the_iso(contents):
    core, payload, dep_path, dep = contents
    # the core holds a symlink for every payload module: only regular files
    # count as "in the core", so ask the payload listing what it holds
    in_payload = kos(payload)
    in_core = {n: p for n, p in kos(core).items() if n not in in_payload}
    assert len(in_core) > 20 and len(in_payload) > 10, (len(in_core), len(in_payload))
    deps = {}
    for line in dep.splitlines():
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
    missing, misplaced, broken = [], [], []
    for name, core_needed in REQUIRED.items():
        n = norm(name)
        if n not in in_core and n not in in_payload:
            missing.append(name)
            continue
        if core_needed and n not in in_core:
            misplaced.append(name)
        path = in_core.get(n) or in_payload[n]
        for d in deps.get(path, [None]):
            if d is None:
                broken.append(f"{name}: not in {dep_path}")
                continue
            dn = norm(re.sub(r"\.ko(\.\w+)?$", "", os.path.basename(d)))
            if dn not in in_core and dn not in in_payload:
                broken.append(f"{name} needs {d}")
            elif core_needed and dn not in in_core:
                broken.append(f"{name} (core) needs {d} from the payload")
    assert not missing, f"drivers missing from the ISO: {missing}"
    assert not misplaced, f"drivers needed before the payload is mounted but only in the payload: {misplaced}"
    assert not broken, broken
