"""A real guest OS, not one of ours: Debian 12 built from Debian's packages
(mmdebstrap: cloud-init, openssh-server, qemu-guest-agent, GRUB for BIOS and
UEFI on GPT; cached, keyed by its inputs) is uploaded to the image store as
qcow2 and run through the REST API the way a user would: a disk with an id
grown to 4G over the image, a cloud-init seed with an SSH key, a forward of a
host port to its sshd. A real `ssh` from another network namespace logs in;
cloud-init applied the hostname and key; the guest sees its grown disk; the
agent reports its address; an ACPI shutdown stops it. The same image boots
on UEFI too, where a variable the guest writes to its NVRAM is still there
after a clean reboot and after a stop and a new start."""
import json
import os
import subprocess
import time

import pytest

from cbdaemon import Daemon, free_port
from debian_guest import BOOT_TIMEOUT, ClientNetns, debian_image as build_debian_image, make_key

NS = "cbguest-client"
CLIENT = ClientNetns(NS, "cbg-host", "10.250.0")


@pytest.fixture(scope="module")
def debian_image():
    return build_debian_image()


@pytest.fixture(scope="module")
def client_netns():
    """A network namespace on a veth pair: the SSH client stands there, as
    another machine would; the host side is 10.250.0.1."""
    CLIENT.up()
    yield NS
    CLIENT.down()


@pytest.fixture(scope="module")
def daemon():
    d = Daemon()
    d.start()
    d.login()
    yield d
    d.teardown()


@pytest.fixture(scope="module")
def uploaded(daemon, debian_image):
    """The image in the daemon's store, as qcow2 (format and size as qemu-img reads them)."""
    status, image = daemon.upload("debian-12", debian_image)
    assert status == 201, image
    listed = {i["name"]: i for i in daemon.json("GET", "/api/v1/images")}
    assert listed["debian-12"]["format"] == "qcow2" and listed["debian-12"]["virtual_size"] == 2 << 30, listed
    return "debian-12"


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    return make_key(tmp_path_factory.mktemp("ssh"))


def ssh(key, port, command, timeout=60):
    return CLIENT.ssh(key, port, command, timeout)


def wait_ssh(key, port, deadline):
    return CLIENT.wait_ssh(key, port, deadline)


CONSOLE_PASSWORD = "serial-console-pw"
NVRAM_VAR = "/sys/firmware/efi/efivars/CloudBIOSTest-6c0b2e4a-8f3d-4c61-9a57-2f1e0d9b7c35"
NVRAM_VALUE = "kept-nv1"


def vm_spec(name, firmware, pub, port):
    pw = subprocess.run(["openssl", "passwd", "-6", CONSOLE_PASSWORD], capture_output=True, text=True, check=True).stdout.strip()
    return {"name": name, "memory": 1024, "cpus": 2, "firmware": firmware, "network": "nat",
            "disks": [{"id": "root", "image": "debian-12", "size": "4G"}],
            "cloud_init": {"ssh_authorized_keys": [pub], "password_hash": pw},
            "forwards": [{"host": port, "guest": 22}]}


def terminal_login(daemon, vm):
    """Logs in on the VM's serial console through the panel's terminal
    WebSocket, as the /terminal page does, and runs `hostname`."""
    import ssl
    import websocket
    ws = websocket.create_connection(daemon.url.replace("https://", "wss://") + f"/api/v1/vms/{vm}/terminal",
                                     sslopt={"cert_reqs": ssl.CERT_NONE}, subprotocols=["binary"],
                                     header=["Authorization: Bearer " + daemon.token], timeout=5)
    seen = b""

    def until(marker, send=None, timeout=60):
        nonlocal seen
        if send is not None:
            ws.send_binary(send.encode())
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                seen += ws.recv() or b""
            except websocket.WebSocketTimeoutException:
                if send is not None and marker == b"login:":
                    ws.send_binary(b"\r")
                continue
            if marker in seen:
                return
        raise AssertionError(f"{marker!r} not seen on the serial console: {seen[-1500:]!r}")
    try:
        until(b"login:", send="\r")
        seen = b""
        until(b"Password:", send="debian\r")
        seen = b""
        until(b"$ ", send=CONSOLE_PASSWORD + "\r")
        seen = b""
        until(b"serial-ok-" + vm.encode(), send="echo serial-ok-$(hostname)\r")
    finally:
        ws.close()


def test_debian_cloud_image_with_cloud_init_ssh_agent_and_acpi(daemon, uploaded, client_netns, key):
    pub = open(key + ".pub").read().strip()
    port = free_port()
    daemon.json("POST", "/api/v1/vms", vm_spec("web1", "bios", pub, port), expect=201)
    # bad input changes nothing: a forward taken by another VM, a shrink
    status, raw, _ = daemon.request("POST", "/api/v1/vms", {**vm_spec("web9", "bios", pub, port), "name": "web9"})
    assert status == 409 and b"web1" in raw, raw
    t0 = time.time()
    daemon.json("POST", "/api/v1/vms/web1/start")
    assert wait_ssh(key, port, t0 + BOOT_TIMEOUT) == "web1"
    boot = time.time() - t0
    r = ssh(key, port, "cat /sys/block/vda/size; sudo -n true && echo sudo-ok; systemctl is-active qemu-guest-agent")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0] == str(4 << 30 >> 9), r.stdout  # 4G in 512-byte sectors
    assert "sudo-ok" in lines and "active" in lines, r.stdout
    # the agent's address of the guest (QEMU user networking gives 10.0.2.15)
    deadline = time.time() + 90
    addrs = []
    while time.time() < deadline:
        vm = daemon.json("GET", "/api/v1/vms/web1")
        addrs = [a["address"] for a in vm.get("addresses", []) if a["source"] == "agent"]
        if "10.0.2.15" in addrs:
            break
        time.sleep(3)
    assert "10.0.2.15" in addrs, vm
    # a larger disk, live: the guest sees it grow; a smaller one is refused
    spec = daemon.json("GET", "/api/v1/vms/web1")
    spec["disks"][0]["size"] = "5G"
    daemon.json("PUT", "/api/v1/vms/web1", spec)
    deadline = time.time() + 60
    while time.time() < deadline and ssh(key, port, "cat /sys/block/vda/size").stdout.strip() != str(5 << 30 >> 9):
        time.sleep(2)
    assert ssh(key, port, "cat /sys/block/vda/size").stdout.strip() == str(5 << 30 >> 9)
    spec["disks"][0]["size"] = "4G"
    status, raw, _ = daemon.request("PUT", "/api/v1/vms/web1", spec)
    assert status == 422 and b"cannot shrink" in raw, raw
    assert daemon.json("GET", "/api/v1/vms/web1")["disks"][0]["size"] == "5G"
    # an ISO inserted while the guest runs is read by it; ejected again
    iso_dir = os.path.join(daemon.dir, "iso")
    os.makedirs(iso_dir)
    with open(os.path.join(iso_dir, "hello.txt"), "w") as f:
        f.write("hello from the image store\n")
    iso = os.path.join(daemon.dir, "tools.iso")
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", "-V", "CBTOOLS", "-o", iso, iso_dir], check=True)
    assert daemon.upload("tools-iso", iso)[0] == 201
    assert daemon.json("POST", "/api/v1/vms/web1/cdrom", {"image": "tools-iso"})["cdrom"] == "tools-iso"
    r = ssh(key, port, "sudo mount -o ro /dev/sr0 /mnt && cat /mnt/hello.txt; sudo umount /mnt")
    assert "hello from the image store" in r.stdout, r.stdout + r.stderr
    assert "cdrom" not in daemon.json("POST", "/api/v1/vms/web1/cdrom", {"image": None})
    status, raw, _ = daemon.request("POST", "/api/v1/vms/web1/cdrom", {"image": "no-such-image"})
    assert status == 422, raw
    # the serial console, interactive, through the panel's terminal WebSocket
    terminal_login(daemon, "web1")
    # ACPI shutdown: the guest powers itself off
    daemon.json("POST", "/api/v1/vms/web1/shutdown")
    deadline = time.time() + 180
    while time.time() < deadline and daemon.json("GET", "/api/v1/vms/web1")["state"] != "stopped":
        time.sleep(2)
    assert daemon.json("GET", "/api/v1/vms/web1")["state"] == "stopped"
    print(f"BIOS boot to SSH login: {boot:.0f} s")


def test_the_same_image_boots_on_uefi(daemon, uploaded, client_netns, key):
    pub = open(key + ".pub").read().strip()
    port = free_port()
    daemon.json("POST", "/api/v1/vms", vm_spec("web2", "uefi", pub, port), expect=201)
    t0 = time.time()
    daemon.json("POST", "/api/v1/vms/web2/start")
    assert wait_ssh(key, port, t0 + BOOT_TIMEOUT) == "web2"
    r = ssh(key, port, "test -d /sys/firmware/efi && echo efi; cat /proc/sys/kernel/random/boot_id")
    assert r.stdout.split()[0] == "efi", r.stdout + r.stderr
    boot_id = r.stdout.split()[1]
    # a non-volatile UEFI variable set by the guest (attributes NV|BS|RT, then the data)
    r = ssh(key, port, f"printf '\\007\\000\\000\\000{NVRAM_VALUE}' | sudo tee {NVRAM_VAR} >/dev/null && tail -c 8 {NVRAM_VAR}")
    assert r.stdout == NVRAM_VALUE, r.stdout + r.stderr
    # a clean reboot (through the agent): the guest comes back, the NVRAM kept
    daemon.json("POST", "/api/v1/vms/web2/reboot")
    deadline = time.time() + BOOT_TIMEOUT
    again = None
    while time.time() < deadline:
        r = ssh(key, port, "cat /proc/sys/kernel/random/boot_id", timeout=30)
        if r.returncode == 0 and r.stdout.strip() and r.stdout.strip() != boot_id:
            again = r.stdout.strip()
            break
        time.sleep(5)
    assert again, "the guest did not come back after the reboot"
    assert daemon.json("GET", "/api/v1/vms/web2")["state"] == "running"
    boot = time.time() - t0
    # the VM's own NVRAM lasts across a stop and a start (a new QEMU process)
    daemon.json("POST", "/api/v1/vms/web2/shutdown")
    deadline = time.time() + 180
    while time.time() < deadline and daemon.json("GET", "/api/v1/vms/web2")["state"] != "stopped":
        time.sleep(2)
    assert daemon.json("GET", "/api/v1/vms/web2")["state"] == "stopped"
    t1 = time.time()
    daemon.json("POST", "/api/v1/vms/web2/start")
    assert wait_ssh(key, port, t1 + BOOT_TIMEOUT) == "web2"
    r = ssh(key, port, f"tail -c 8 {NVRAM_VAR}")
    assert r.stdout == NVRAM_VALUE, r.stdout + r.stderr
    daemon.json("POST", "/api/v1/vms/web2/stop")
    print(f"UEFI boot to SSH login: {boot:.0f} s; again after a stop: {time.time() - t1:.0f} s")
