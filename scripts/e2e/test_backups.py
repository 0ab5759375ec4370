"""Backups of a real guest OS, through the REST API the way a user takes
them: the cached Debian guest runs; a full backup is taken live (the guest
never stops); 8 MiB written in the guest make the next backup an
incremental far smaller than the full one (QEMU's persistent dirty
bitmaps); the daemon killed with -9 during a backup leaves the earlier
backups whole and listed, and the next backup is full and says why; an
incremental that another builds on is merged into it when deleted (the rest
stays restorable, checked block for block), a full one with dependents is
refused with 409; a stopped VM is backed up too; the chain restored into a
new VM boots with its own hostname and the 8 MiB file's checksum; a
corrupted file is named by verify."""
import json
import os
import signal
import subprocess
import time

import pytest

from cbdaemon import PASSWORD, Daemon, binary, free_port
from debian_guest import BOOT_TIMEOUT, ClientNetns, debian_image, make_key

CLIENT = ClientNetns("cbbackup-client", "cbbk-host", "10.251.0")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    target = str(tmp_path_factory.mktemp("target"))
    d = Daemon(extra_config=f"""backups:
  target: {target}
  keep: {{last: 20, daily: 7, weekly: 4}}
""")
    d.target = target
    d.start()
    d.login()
    yield d
    d.teardown()


@pytest.fixture(scope="module")
def guest(daemon, tmp_path_factory):
    """VM bk1: the Debian guest, booted, an SSH login away."""
    CLIENT.up()
    key = make_key(tmp_path_factory.mktemp("ssh"))
    status, image = daemon.upload("debian-12", debian_image())
    assert status == 201, image
    port = free_port()
    pub = open(key + ".pub").read().strip()
    daemon.json("POST", "/api/v1/vms", {"name": "bk1", "memory": 1024, "cpus": 2, "network": "nat",
                                        "disks": [{"id": "root", "image": "debian-12", "size": "4G"}],
                                        "cloud_init": {"ssh_authorized_keys": [pub]},
                                        "forwards": [{"host": port, "guest": 22}]}, expect=201)
    t0 = time.time()
    daemon.json("POST", "/api/v1/vms/bk1/start")
    assert CLIENT.wait_ssh(key, port, t0 + BOOT_TIMEOUT) == "bk1"
    yield {"key": key, "port": port, "pub": pub}
    CLIENT.down()


def run_task(daemon, method, path, body=None, timeout=600):
    t = daemon.json(method, path, body, expect=202)
    deadline = time.time() + timeout
    while time.time() < deadline:
        t = daemon.json("GET", "/api/v1/tasks/" + t["id"])
        if t["state"] in ("succeeded", "failed"):
            return t
        time.sleep(0.5)
    raise AssertionError(f"task {t} did not end")


def backup(daemon, vm, mode):
    t = run_task(daemon, "POST", f"/api/v1/vms/{vm}/backups", {"mode": mode})
    assert t["state"] == "succeeded", t
    return t


def listed(daemon, vm=None):
    return {b["id"]: b for b in daemon.json("GET", "/api/v1/backups" + (f"?vm={vm}" if vm else ""))}


STATE = {}


def cli(daemon, *args, ok=True):
    """The CLI against the daemon, as a user runs it."""
    env = dict(os.environ, CLOUDBIOS_PASSWORD=PASSWORD)
    env.pop("CLOUDBIOS_TOKEN", None)
    r = subprocess.run([binary(), *args, "--url", daemon.url, "--state-dir", daemon.state, "--user", "admin"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert (r.returncode == 0) == ok, r.stdout + r.stderr
    return r.stdout + r.stderr


def test_full_then_incremental_of_a_running_guest(daemon, guest):
    key, port = guest["key"], guest["port"]
    t0 = time.time()
    full = backup(daemon, "bk1", "full")
    full_s = time.time() - t0
    f = full["result"]
    assert f["kind"] == "full" and f["parent"] is None and f["vm"] == "bk1", full
    assert "/s" in full["message"], full  # throughput is reported
    assert daemon.json("GET", "/api/v1/vms/bk1")["state"] == "running"
    # the record on the target describes the backup on its own
    rec = json.load(open(os.path.join(daemon.target, f["id"], "backup.json")))
    assert rec["spec"]["name"] == "bk1" and [d["id"] for d in rec["disks"]] == ["root"], rec
    assert rec["disks"][0]["virtual_size"] == 4 << 30 and "sha256" not in rec["disks"][0], rec
    # its checksum is xxHash's XXH3-128 of the file, as xxHash's own tool computes it
    out = subprocess.run(["xxhsum", "-H2", os.path.join(daemon.target, f["id"], "root.qcow2")], capture_output=True, text=True, check=True)
    assert rec["disks"][0]["xxh128"] == out.stdout.split()[0], (rec, out.stdout)
    # 8 MiB of new data in the guest, on its disk
    r = CLIENT.ssh(key, port, "sudo dd if=/dev/urandom of=/var/tmp/data.bin bs=1M count=8 status=none && sync && sha256sum /var/tmp/data.bin")
    assert r.returncode == 0, r.stderr
    STATE["sha"] = r.stdout.split()[0]
    t0 = time.time()
    inc = backup(daemon, "bk1", "auto")
    inc_s = time.time() - t0
    i = inc["result"]
    assert i["kind"] == "incremental" and i["parent"] == f["id"], inc
    assert i["size"] >= 8 << 20, inc
    assert i["size"] * 10 < f["size"], (i["size"], f["size"])
    assert i["bytes_copied"] * 10 < f["bytes_copied"], (i, f)
    assert listed(daemon, "bk1").keys() == {f["id"], i["id"]}
    # ?vm= filters
    assert listed(daemon, "nobody") == {}
    STATE.update(full=f["id"], inc=i["id"])
    print(f"full backup: {f['size'] >> 20} MiB in {full_s:.1f} s; incremental: {i['size'] >> 20} MiB in {inc_s:.1f} s")


def test_daemon_killed_during_a_backup(daemon, guest):
    before = listed(daemon, "bk1")
    t = daemon.json("POST", "/api/v1/vms/bk1/backups", {"mode": "full"}, expect=202)
    deadline = time.time() + 120
    while time.time() < deadline:
        t = daemon.json("GET", "/api/v1/tasks/" + t["id"])
        if "started" in t["message"] or t["progress"] > 0 or t["state"] != "running" and t["state"] != "pending":
            break
        time.sleep(0.05)
    assert t["state"] == "running", t
    daemon.kill9(daemon.procs[-1])
    partials = [p for p in os.listdir(daemon.target) if p.startswith(".partial-")]
    assert partials, "the backup had not begun writing"
    daemon.start()
    daemon.login()
    # the interrupted one is not listed; the earlier ones are whole
    assert listed(daemon, "bk1") == before
    assert daemon.json("GET", "/api/v1/vms/bk1")["state"] == "running"
    nxt = backup(daemon, "bk1", "auto")
    assert nxt["result"]["kind"] == "full", nxt
    assert "interrupted" in nxt["message"] and "full backup instead of incremental" in nxt["message"], nxt
    assert not [p for p in os.listdir(daemon.target) if p.startswith(".partial-")]
    STATE["full2"] = nxt["result"]["id"]
    for b in before:
        v = run_task(daemon, "POST", f"/api/v1/backups/{b}/verify")
        assert v["state"] == "succeeded" and v["result"]["ok"], v


def test_delete_merges_an_incremental_and_refuses_a_base(daemon, guest):
    key, port = guest["key"], guest["port"]
    r = CLIENT.ssh(key, port, "sudo dd if=/dev/urandom of=/var/tmp/more.bin bs=1M count=2 status=none && sync")
    assert r.returncode == 0, r.stderr
    i2 = backup(daemon, "bk1", "auto")["result"]
    assert i2["kind"] == "incremental" and i2["parent"] == STATE["full2"], i2
    r = CLIENT.ssh(key, port, "sudo dd if=/dev/urandom of=/var/tmp/more.bin bs=1M count=1 seek=4 conv=notrunc status=none && sync")
    i3 = backup(daemon, "bk1", "auto")["result"]
    assert i3["parent"] == i2["id"], i3
    # what i3 restores to, before the merge
    top = os.path.join(daemon.target, i3["id"], "root.qcow2")
    ref = os.path.join(daemon.dir, "i3-before.qcow2")
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", top, ref], check=True)
    # a full backup others build on: 409, nothing changed
    status, raw, _ = daemon.request("DELETE", f"/api/v1/backups/{STATE['full2']}")
    assert status == 409 and i2["id"].encode() in raw, raw
    # the incremental between: merged into its child
    status, raw, _ = daemon.request("DELETE", f"/api/v1/backups/{i2['id']}")
    assert status == 204, raw
    now = listed(daemon, "bk1")
    assert i2["id"] not in now and now[i3["id"]]["parent"] == STATE["full2"], now
    r = subprocess.run(["qemu-img", "compare", "-q", ref, top], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    v = run_task(daemon, "POST", f"/api/v1/backups/{i3['id']}/verify")
    assert v["state"] == "succeeded" and v["result"]["ok"] and v["result"]["files"] == 2, v
    assert daemon.request("DELETE", "/api/v1/backups/20000101-000000-ffff")[0] == 404


def test_restore_boots_with_the_data(daemon, guest):
    key = guest["key"]
    # a stopped VM is backed up too (its disks opened by a paused QEMU)
    daemon.json("POST", "/api/v1/vms/bk1/shutdown")
    deadline = time.time() + 180
    while time.time() < deadline and daemon.json("GET", "/api/v1/vms/bk1")["state"] != "stopped":
        time.sleep(2)
    assert daemon.json("GET", "/api/v1/vms/bk1")["state"] == "stopped"
    out = cli(daemon, "vm", "backup", "bk1", "--json")
    stopped = json.loads(out.strip().splitlines()[-1])["result"]
    assert stopped["kind"] == "incremental", out
    table = cli(daemon, "backup", "list", "--vm", "bk1").splitlines()
    assert table[0].split() == ["ID", "VM", "TIME", "KIND", "SIZE", "PARENT"], table
    assert table[1].split()[0] == stopped["id"] and table[1].split()[3] == "incremental", table
    # bad input: no name, a name taken, disks overridden, an unknown backup
    assert daemon.request("POST", f"/api/v1/backups/{STATE['inc']}/restore", {})[0] == 400
    assert daemon.request("POST", f"/api/v1/backups/{STATE['inc']}/restore", {"name": "bk1"})[0] == 409
    assert daemon.request("POST", f"/api/v1/backups/{STATE['inc']}/restore", {"name": "x", "disks": []})[0] == 400
    assert daemon.request("POST", "/api/v1/backups/20000101-000000-ffff/restore", {"name": "x"})[0] == 404
    port = free_port()
    t = run_task(daemon, "POST", f"/api/v1/backups/{STATE['inc']}/restore", {"name": "bk1r", "forwards": [{"host": port, "guest": 22}]})
    assert t["state"] == "succeeded", t
    vm = daemon.json("GET", "/api/v1/vms/bk1r")
    assert vm["disks"] == [{"id": "root", "size": "4G"}] and vm["forwards"][0]["host"] == port, vm
    t0 = time.time()
    daemon.json("POST", "/api/v1/vms/bk1r/start")
    assert CLIENT.wait_ssh(key, port, t0 + BOOT_TIMEOUT) == "bk1r"
    r = CLIENT.ssh(key, port, "sha256sum /var/tmp/data.bin; test -e /var/tmp/more.bin && echo later-data")
    assert r.stdout.split()[0] == STATE["sha"], r.stdout + r.stderr
    assert "later-data" not in r.stdout  # as of that backup, not after
    daemon.json("POST", "/api/v1/vms/bk1r/stop")
    print(f"restored VM to SSH login: {time.time() - t0:.0f} s")


def test_verify_names_a_corrupted_file(daemon, guest):
    f = os.path.join(daemon.target, STATE["full"], "root.qcow2")
    with open(f, "r+b") as fh:
        fh.seek(os.path.getsize(f) // 2)
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 0xff]))
    out = cli(daemon, "backup", "verify", STATE["inc"], ok=False)
    assert f"{STATE['full']}/root.qcow2" in out and "mismatch" in out, out
    v = run_task(daemon, "POST", f"/api/v1/backups/{STATE['inc']}/verify")
    assert v["state"] == "failed" and v["result"]["ok"] is False, v
    assert f"{STATE['full']}/root.qcow2" in v["message"], v
    assert [m["file"] for m in v["result"]["mismatch"]] == [f"{STATE['full']}/root.qcow2"], v


def test_a_target_by_label_is_mounted(tmp_path):
    """backups.target: LABEL=NAME finds the volume by its label, mounts it
    and keeps the backups there; a label no volume has is a clear 503."""
    from cbdaemon import guest as tiny_guest
    label = "CBBK" + os.urandom(3).hex().upper()
    img = str(tmp_path / "target.img")
    subprocess.run(["truncate", "-s", "96M", img], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-L", label, img], check=True)
    loop = subprocess.run(["losetup", "-f", "--show", img], capture_output=True, text=True, check=True).stdout.strip()
    kernel, initrd = tiny_guest()
    d = Daemon(extra_config=f"backups:\n  target: LABEL={label}\n")
    missing = Daemon(extra_config="backups:\n  target: LABEL=CBNOSUCHLABEL\n")
    mount = None
    try:
        d.start()
        d.login()
        for n, p in (("vmlinuz", kernel), ("initrd", initrd)):
            assert d.upload(n, p)[0] == 201
        d.json("POST", "/api/v1/vms", {"name": "lbl", "memory": 128, "kernel": "vmlinuz", "initrd": "initrd",
                                       "network": "none", "accel": "tcg", "disks": [{"id": "data", "size": "16M"}]}, expect=201)
        d.json("POST", "/api/v1/vms/lbl/start")
        d.json("POST", "/api/v1/vms/lbl/stop")
        b = backup(d, "lbl", "full")["result"]
        mount = os.path.join(d.state, "backup-target", label)
        assert os.path.ismount(mount)
        src = subprocess.run(["findmnt", "-n", "-o", "SOURCE", mount], capture_output=True, text=True).stdout.strip()
        assert src == loop, src
        assert os.path.exists(os.path.join(mount, "cloudbios-backups", b["id"], "backup.json"))
        assert [x["id"] for x in d.json("GET", "/api/v1/backups")] == [b["id"]]
        # no volume of that label: refused, saying so
        missing.start()
        missing.login()
        status, raw, _ = missing.request("GET", "/api/v1/backups")
        assert status == 503 and b"no volume labelled CBNOSUCHLABEL" in raw, raw
    finally:
        if mount:
            subprocess.run(["umount", mount], capture_output=True)
        d.teardown()
        missing.teardown()
        subprocess.run(["losetup", "-d", loop], capture_output=True)
