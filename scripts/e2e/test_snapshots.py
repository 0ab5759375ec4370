"""Snapshots, templates and clones with a real guest OS: the cached Debian 12
image booted once through the REST API (cloud-init, an SSH forward, the guest
agent) and shared by the tests of this module, which run in order.

A file written in the guest and a process started, a snapshot with RAM, the
file changed, a revert: the old content is back, the same boot and the same
process go on. A disks-only snapshot of the running guest is quiesced through
its agent (and the filesystems are thawed after). Deleting a snapshot hangs
its children from its parent. Stopped: qemu-img snapshots, and a revert of
the RAM snapshot starts the guest where it was. The VM becomes a template
that never starts; a linked clone over its disk boots with its own hostname,
MAC and cloud-init instance; a full clone is a copy standing alone; the
template cannot be deleted while the linked clone depends on it. Hostile
input changes nothing."""
import json
import os
import subprocess
import time

import pytest

from cbdaemon import Daemon, free_port
import debian_guest
from debian_guest import BOOT_TIMEOUT, ClientNetns

VM = "snap1"
# this module's own client namespace: another module's (or worker's) never removes it
CLIENT = ClientNetns("cbsnap-client", "cbs-host", "10.250.7")


def ssh(key, port, command, timeout=60):
    return CLIENT.ssh(key, port, command, timeout=timeout)


def wait_ssh(key, port, deadline):
    return CLIENT.wait_ssh(key, port, deadline)


@pytest.fixture(scope="module")
def daemon():
    d = Daemon()
    d.start()
    d.login()
    yield d
    d.teardown()


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return debian_guest.make_key(tmp_path_factory.mktemp("ssh"))


@pytest.fixture(scope="module")
def client_netns():
    CLIENT.up()
    yield CLIENT.ns
    CLIENT.down()


@pytest.fixture(scope="module")
def guest(daemon, key, client_netns):
    """The Debian guest VM, booted and logged into once: its SSH port and
    what it said of itself before any snapshot."""
    st, img = daemon.upload("debian-12", debian_guest.debian_image())
    assert st == 201, img
    port = free_port()
    pub = open(key + ".pub").read().strip()
    daemon.json("POST", "/api/v1/vms", {
        "name": VM, "memory": 1024, "cpus": 2, "network": "nat",
        "disks": [{"id": "root", "image": "debian-12", "size": "4G"}],
        "cloud_init": {"ssh_authorized_keys": [pub]}, "forwards": [{"host": port, "guest": 22}]}, expect=201)
    t0 = time.time()
    daemon.json("POST", f"/api/v1/vms/{VM}/start")
    assert wait_ssh(key, port, t0 + BOOT_TIMEOUT) == VM
    print(f"boot to SSH login: {time.time() - t0:.0f} s")
    r = ssh(key, port, "cat /sys/class/net/e*/address; sudo -n cat /var/lib/cloud/data/instance-id")
    assert r.returncode == 0, r.stderr
    mac, iid = r.stdout.split()[:2]
    return {"port": port, "mac": mac, "iid": iid, "pub": pub}


def wait_task(daemon, task, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        t = daemon.json("GET", "/api/v1/tasks/" + task["id"])
        if t["state"] in ("succeeded", "failed"):
            return t
        time.sleep(0.5)
    raise AssertionError(f"task {task['id']} did not end: {t}")


def take(daemon, name, memory, vm=VM):
    t = daemon.json("POST", f"/api/v1/vms/{vm}/snapshots", {"name": name, "memory": memory}, expect=202)
    assert t["kind"] == "snapshot", t
    t = wait_task(daemon, t)
    assert t["state"] == "succeeded", t
    return t["result"]


def revert(daemon, name, vm=VM):
    t = wait_task(daemon, daemon.json("POST", f"/api/v1/vms/{vm}/snapshots/{name}/revert", expect=202))
    assert t["state"] == "succeeded", t
    return t


def snapshots(daemon, vm=VM):
    return {s["name"]: s for s in daemon.json("GET", f"/api/v1/vms/{vm}/snapshots")}


def disk(daemon, vm, disk_id="root"):
    return os.path.join(daemon.state, "disks", vm, disk_id + ".qcow2")


def stop(daemon, vm=VM):
    daemon.json("POST", f"/api/v1/vms/{vm}/stop")
    assert daemon.json("GET", f"/api/v1/vms/{vm}")["state"] == "stopped"


def test_a_snapshot_with_ram_brings_the_old_file_back_without_a_reboot(daemon, key, guest):
    port = guest["port"]
    r = ssh(key, port, "echo before-snapshot > ~/data.txt; (setsid sleep 100000 >/dev/null 2>&1 &); sleep 1; "
                       "pgrep -x sleep; cat /proc/sys/kernel/random/boot_id; cut -d. -f1 /proc/uptime")
    assert r.returncode == 0, r.stderr
    pid, boot_id, uptime = r.stdout.split()
    guest.update(pid=pid, boot_id=boot_id)
    t0 = time.time()
    rec = take(daemon, "s1", True)
    print(f"snapshot with RAM: {time.time() - t0:.1f} s")
    assert rec["memory"] is True and rec["consistency"] == "memory" and rec["parent"] is None, rec
    assert rec["disks"] == ["root"] and rec["spec"]["memory"] == 1024, rec
    assert ssh(key, port, "echo changed > ~/data.txt; cat ~/data.txt").stdout.strip() == "changed"
    t0 = time.time()
    revert(daemon, "s1")
    print(f"revert with RAM: {time.time() - t0:.1f} s")
    assert daemon.json("GET", f"/api/v1/vms/{VM}")["state"] == "running"
    r = ssh(key, port, f"cat ~/data.txt; cat /proc/sys/kernel/random/boot_id; kill -0 {pid} && echo alive; cut -d. -f1 /proc/uptime")
    assert r.returncode == 0, r.stderr
    content, boot_after, alive, uptime_after = r.stdout.split()
    assert content == "before-snapshot", r.stdout
    assert boot_after == boot_id and alive == "alive", r.stdout  # the same boot, the same process
    assert int(uptime_after) >= int(uptime), r.stdout
    listed = snapshots(daemon)
    assert listed["s1"]["current"] is True


def test_a_disks_only_snapshot_of_the_running_guest_is_quiesced_by_its_agent(daemon, key, guest):
    # the agent answers (it reports the guest's address)
    deadline = time.time() + 120
    while time.time() < deadline and not [a for a in daemon.json("GET", f"/api/v1/vms/{VM}")["addresses"] if a["source"] == "agent"]:
        time.sleep(2)
    rec = take(daemon, "s2", False)
    assert rec["memory"] is False and rec["quiesced"] is True and rec["consistency"] == "quiesced", rec
    assert rec["parent"] == "s1", rec
    # thawed again: the guest writes
    r = ssh(key, guest["port"], "echo written > ~/after.txt && sync; cat ~/after.txt", timeout=30)
    assert r.stdout.strip() == "written", r.stdout + r.stderr
    listed = snapshots(daemon)
    assert listed["s2"]["current"] is True and listed["s1"]["current"] is False
    # the disk holds both, as qcow2 internal snapshots
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", disk(daemon, VM)],
                                     capture_output=True, text=True, check=True).stdout)
    assert {"s1", "s2"} <= {s["name"] for s in info.get("snapshots", [])}, info


def test_deleting_a_snapshot_hangs_its_children_from_its_parent(daemon, guest):
    take(daemon, "s3", False)
    assert snapshots(daemon)["s3"]["parent"] == "s2"
    left = {s["name"]: s for s in daemon.json("DELETE", f"/api/v1/vms/{VM}/snapshots/s2")}
    assert set(left) == {"s1", "s3"} and left["s3"]["parent"] == "s1" and left["s3"]["current"] is True, left
    daemon.json("DELETE", f"/api/v1/vms/{VM}/snapshots/s3")
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output=json", disk(daemon, VM)],
                                     capture_output=True, text=True, check=True).stdout)
    assert [s["name"] for s in info.get("snapshots", [])] == ["s1"], info
    assert snapshots(daemon)["s1"]["current"] is True  # s3's parent, once s3 went


def test_a_stopped_vm_is_snapshotted_and_reverted_with_qemu_img(daemon, guest):
    stop(daemon)
    status, raw, _ = daemon.request("POST", f"/api/v1/vms/{VM}/snapshots", {"name": "ram", "memory": True})
    assert status == 409 and b"memory: false" in raw, raw
    rec = take(daemon, "offline", False)
    assert rec["consistency"] == "stopped" and rec["quiesced"] is False and rec["parent"] == "s1", rec
    path = disk(daemon, VM)
    # bytes written past the guest's partitions (the disk grew from 2G to 4G): gone after the revert
    io = lambda cmd: subprocess.run(["qemu-io", "-f", "qcow2", "-c", cmd, path], capture_output=True, text=True)  # noqa: E731
    assert "Pattern verification failed" not in io("read -P 0 3G 64k").stdout
    io("write -P 0xa5 3G 64k")
    assert "Pattern verification failed" not in io("read -P 0xa5 3G 64k").stdout
    revert(daemon, "offline")
    r = io("read -P 0 3G 64k")
    assert r.returncode == 0 and "Pattern verification failed" not in r.stdout, r.stdout + r.stderr
    assert daemon.json("GET", f"/api/v1/vms/{VM}")["state"] == "stopped"


def test_reverting_a_ram_snapshot_of_a_stopped_vm_starts_it_where_it_was(daemon, key, guest):
    revert(daemon, "s1")
    assert daemon.json("GET", f"/api/v1/vms/{VM}")["state"] == "running"
    r = ssh(key, guest["port"], f"cat ~/data.txt; cat /proc/sys/kernel/random/boot_id; kill -0 {guest['pid']} && echo alive; sync")
    assert r.stdout.split() == ["before-snapshot", guest["boot_id"], "alive"], r.stdout + r.stderr
    assert snapshots(daemon)["s1"]["current"] is True


def test_a_template_never_starts_and_its_linked_clone_boots_as_itself(daemon, key, guest):
    stop(daemon)
    spec = daemon.json("GET", f"/api/v1/vms/{VM}")
    spec["template"] = True
    assert daemon.json("PUT", f"/api/v1/vms/{VM}", spec)["template"] is True
    status, raw, _ = daemon.request("POST", f"/api/v1/vms/{VM}/start")
    assert status == 409 and b"template" in raw, raw
    port = free_port()
    t0 = time.time()
    task = daemon.json("POST", f"/api/v1/vms/{VM}/clone", {"name": "snapc", "forwards": [{"host": port, "guest": 22}]}, expect=202)
    t = wait_task(daemon, task)
    assert t["state"] == "succeeded" and t["result"]["name"] == "snapc", t
    made = time.time() - t0
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", disk(daemon, "snapc")],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["backing-filename"] == disk(daemon, VM), info
    clone = daemon.json("GET", "/api/v1/vms/snapc")
    assert clone["state"] == "stopped" and not clone.get("template") and clone["forwards"][0]["host"] == port, clone
    t1 = time.time()
    daemon.json("POST", "/api/v1/vms/snapc/start")
    assert wait_ssh(key, port, t1 + BOOT_TIMEOUT) == "snapc"
    print(f"linked clone made in {made:.2f} s; boot to SSH login {time.time() - t1:.0f} s")
    r = ssh(key, port, "cat /sys/class/net/e*/address; sudo -n cat /var/lib/cloud/data/instance-id; cat ~/data.txt")
    mac, iid, content = r.stdout.split()
    assert mac != guest["mac"] and iid != guest["iid"], (r.stdout, guest)
    assert content == "before-snapshot", r.stdout  # the template's disk, read through the clone
    # the template stays while the clone depends on it
    status, raw, _ = daemon.request("DELETE", f"/api/v1/vms/{VM}")
    assert status == 409 and b"snapc" in raw, raw
    spec["template"] = False
    status, raw, _ = daemon.request("PUT", f"/api/v1/vms/{VM}", spec)
    assert status == 409 and b"snapc" in raw, raw
    status, raw, _ = daemon.request("POST", f"/api/v1/vms/{VM}/snapshots", {"name": "late", "memory": False})
    assert status == 409 and b"snapc" in raw, raw
    assert daemon.json("GET", f"/api/v1/vms/{VM}")["template"] is True
    stop(daemon, "snapc")


def test_a_full_clone_is_a_copy_standing_alone(daemon, guest):
    t = wait_task(daemon, daemon.json("POST", f"/api/v1/vms/{VM}/clone", {"name": "snapf", "linked": False, "memory": 512}, expect=202))
    assert t["state"] == "succeeded", t
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", disk(daemon, "snapf")],
                                     capture_output=True, text=True, check=True).stdout)
    assert "backing-filename" not in info and info["format"] == "qcow2" and info.get("snapshots") is None, info
    r = subprocess.run(["qemu-img", "compare", "-f", "qcow2", "-F", "qcow2", disk(daemon, VM), disk(daemon, "snapf")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    full = daemon.json("GET", "/api/v1/vms/snapf")
    assert full["memory"] == 512 and full["disks"] == [{"id": "root", "size": "4G"}] and full["forwards"] == [], full
    assert full["cloud_init"]["ssh_authorized_keys"] == [guest["pub"]]
    # the full clone does not hold the template; the linked one does, until it goes
    daemon.json("DELETE", "/api/v1/vms/snapc", expect=204)
    daemon.json("DELETE", f"/api/v1/vms/{VM}/snapshots/s1")
    left = daemon.json("DELETE", f"/api/v1/vms/{VM}/snapshots/offline")
    assert left == [] and snapshots(daemon) == {}


def test_hostile_input_is_refused_and_changes_nothing(daemon, guest):
    def refused(method, path, body, status, text):
        st, raw, _ = daemon.request(method, path, body)
        assert st == status and text.encode() in raw, (method, path, st, raw)
    before = daemon.json("GET", "/api/v1/vms/snapf/snapshots")
    refused("POST", "/api/v1/vms/snapf/snapshots", {"name": "1st"}, 400, "starting with a letter")
    refused("POST", "/api/v1/vms/snapf/snapshots", {"name": "a b"}, 400, "snapshot name")
    refused("POST", "/api/v1/vms/snapf/snapshots", {"name": "x" * 41}, 400, "snapshot name")
    refused("POST", "/api/v1/vms/snapf/snapshots", {"name": "ok", "memory": "yes"}, 400, "memory")
    refused("POST", "/api/v1/vms/snapf/snapshots", {"name": "ok", "extra": 1}, 400, "unknown key")
    refused("POST", "/api/v1/vms/snapf/snapshots/..%2Fetc/revert", None, 400, "")
    refused("POST", "/api/v1/vms/snapf/snapshots/nope/revert", None, 404, "no snapshot named 'nope'")
    refused("DELETE", "/api/v1/vms/snapf/snapshots/nope", None, 404, "no snapshot named 'nope'")
    refused("GET", "/api/v1/vms/nosuch/snapshots", None, 404, "no VM")
    refused("POST", "/api/v1/vms/snapf/clone", {"name": VM}, 409, "already exists")
    refused("POST", "/api/v1/vms/snapf/clone", {"name": "Bad_Name"}, 400, "VM name")
    refused("POST", "/api/v1/vms/snapf/clone", {"name": "c9", "disks": []}, 422, "disks")
    refused("POST", "/api/v1/vms/snapf/clone", {"name": "c9", "memroy": 1}, 422, "memroy")
    refused("POST", "/api/v1/vms/snapf/clone", {"name": "c9"}, 409, "template")  # linked needs a template
    refused("POST", "/api/v1/vms/nosuch/clone", {"name": "c9"}, 404, "no VM")
    assert daemon.json("GET", "/api/v1/vms/snapf/snapshots") == before
    assert "c9" not in [v["name"] for v in daemon.json("GET", "/api/v1/vms")]
    # a VM without disks, and one whose disk is raw: nothing to snapshot, said plainly
    daemon.json("POST", "/api/v1/vms", {"name": "nodisk", "memory": 128}, expect=201)
    refused("POST", "/api/v1/vms/nodisk/snapshots", {"name": "s"}, 409, "no disk")
    daemon.json("POST", "/api/v1/vms", {"name": "rawdisk", "memory": 128, "disks": [{"id": "d", "size": "16M"}]}, expect=201)
    os.makedirs(os.path.dirname(disk(daemon, "rawdisk", "d")), exist_ok=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", disk(daemon, "rawdisk", "d"), "16M"], check=True)
    refused("POST", "/api/v1/vms/rawdisk/snapshots", {"name": "s"}, 422, "is raw; snapshots need qcow2")
    assert daemon.json("GET", "/api/v1/vms/rawdisk/snapshots") == []


def test_the_cli_takes_lists_reverts_and_deletes_snapshots_and_clones(daemon, guest):
    from cbdaemon import PASSWORD, binary
    env = dict(os.environ, CLOUDBIOS_PASSWORD=PASSWORD)
    env.pop("CLOUDBIOS_TOKEN", None)

    def cli(*args, ok=True):
        r = subprocess.run([binary(), "vm", *args, "--url", daemon.url, "--state-dir", daemon.state, "--user", "admin"],
                           capture_output=True, text=True, env=env, timeout=120)
        assert (r.returncode == 0) == ok, r.stdout + r.stderr
        return r.stdout + r.stderr

    assert "taken (stopped)" in cli("snapshot", "take", "snapf", "c1")
    assert "taken (stopped)" in cli("snapshot", "take", "snapf", "c2")
    cli("snapshot", "revert", "snapf", "c1")
    assert "taken (stopped)" in cli("snapshot", "take", "snapf", "c3")
    rows = [line.split() for line in cli("snapshot", "list", "snapf").splitlines()[1:]]
    # a tree: c2 and c3 both under c1, c3 current
    names = {r[0]: r for r in rows}
    assert set(names) == {"c1", "c2", "c3"} and names["c3"][1] == "*", rows
    listed = snapshots(daemon, "snapf")
    assert listed["c2"]["parent"] == "c1" and listed["c3"]["parent"] == "c1" and listed["c3"]["current"], listed
    assert "no snapshot named 'zz'" in cli("snapshot", "revert", "snapf", "zz", ok=False)
    assert "starting with a letter" in cli("snapshot", "take", "snapf", "9x", ok=False)
    cli("snapshot", "delete", "snapf", "c1")
    assert {s["name"]: s["parent"] for s in snapshots(daemon, "snapf").values()} == {"c2": None, "c3": None}
    assert "made as a full clone of 'snapf'" in cli("clone", "snapf", "snapg", "--full")
    assert "template" in cli("clone", "snapf", "snaph", ok=False)
    assert daemon.json("GET", "/api/v1/vms/snapg")["disks"] == [{"id": "root", "size": "4G"}]
    table = {line.split()[0]: line.split()[1] for line in cli("list").splitlines()[1:]}
    assert table[VM] == "stopped/template" and table["snapg"] == "stopped", table
