#!/usr/bin/env python3
"""Boots the Debian guest image made by make-debian-guest.py and checks it.

Usage: scripts/lib/check-debian-guest.py IMAGE [--firmware bios,uefi]

For each firmware (SeaBIOS, then OVMF on q35), on a fresh qcow2 overlay of
IMAGE with a NoCloud seed (volume "cidata": hostname guest1, user debian with
a new ed25519 key and passwordless sudo), under TCG: waits for the login
prompt on the serial console, then over ssh (forwarded port) expects
"guest1", "sudo-ok" and "active" (qemu-guest-agent), and pings the agent on
its virtio-serial socket. QEMU is always killed; one QEMU at a time.
Prints the times; exits non-zero on any failure.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"
BOOT_TIMEOUT = 900      # seconds to the login prompt (TCG on shared cores)
SSH_TIMEOUT = 300       # seconds from the prompt to a passing ssh check
EXPECTED = ["guest1", "sudo-ok", "active"]
REMOTE = "hostname; sudo -n true && echo sudo-ok; systemctl is-active qemu-guest-agent"
LOGIN_RE = re.compile(rb"^\S+ login: ?", re.M)

TOOLS = {"qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils", "cloud-localds": "cloud-image-utils",
         "ssh": "openssh-client", "ssh-keygen": "openssh-client"}


def log(msg):
    print(f"check-debian-guest: {msg}", file=sys.stderr, flush=True)


def ensure_tools():
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if not os.path.exists(OVMF_CODE):
        missing.append("ovmf")
    if missing:
        log("installing " + " ".join(missing))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends"] + missing,
                       check=True, env=env, stdout=subprocess.DEVNULL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_seed(tmp):
    key = os.path.join(tmp, "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "check-debian-guest", "-f", key], check=True)
    with open(key + ".pub") as f:
        pub = f.read().strip()
    with open(os.path.join(tmp, "user-data"), "w") as f:
        f.write(f"""#cloud-config
users:
  - name: debian
    shell: /bin/bash
    lock_passwd: true
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    ssh_authorized_keys:
      - {pub}
""")
    with open(os.path.join(tmp, "meta-data"), "w") as f:
        f.write("instance-id: iid-test-1\nlocal-hostname: guest1\n")
    seed = os.path.join(tmp, "seed.iso")
    subprocess.run(["cloud-localds", seed, os.path.join(tmp, "user-data"), os.path.join(tmp, "meta-data")], check=True)
    return key, seed


def qga_ping(sock_path):
    """guest-sync then guest-ping on the agent's channel; True if it answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(15)
            s.connect(sock_path)
            s.sendall(b'{"execute":"guest-sync","arguments":{"id":4242}}\n')
            buf = b""
            while b'"return": 4242' not in buf and b'"return":4242' not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                buf += chunk
            s.sendall(b'{"execute":"guest-ping"}\n')
            buf = b""
            while b"\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                buf += chunk
            return json.loads(buf.split(b"\n")[0]).get("return") == {}
    except (OSError, ValueError):
        return False


def boot(firmware, image, key, seed, tmp):
    """Boots once; returns (seconds to login prompt, ssh output). Raises on failure."""
    run_dir = os.path.join(tmp, firmware)
    os.makedirs(run_dir)
    overlay = os.path.join(run_dir, "overlay.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", os.path.abspath(image), "-F", "qcow2", overlay],
                   check=True)
    serial = os.path.join(run_dir, "serial.log")
    qga = os.path.join(run_dir, "qga.sock")
    port = free_port()
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "2", "-no-reboot",
           "-drive", f"file={overlay},if=virtio,format=qcow2",
           "-drive", f"file={seed},if=virtio,format=raw",
           "-nic", f"user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:{port}-:22",
           "-device", "virtio-serial",
           "-chardev", f"socket,id=qga,path={qga},server=on,wait=off",
           "-device", "virtserialport,chardev=qga,name=org.qemu.guest_agent.0",
           "-serial", f"file:{serial}", "-display", "none"]
    if firmware == "uefi":
        vars_copy = os.path.join(run_dir, "OVMF_VARS.fd")
        shutil.copy(OVMF_VARS, vars_copy)
        cmd += ["-machine", "q35",
                "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
    log(f"{firmware}: " + " ".join(cmd))
    qemu_log = open(os.path.join(run_dir, "qemu.log"), "wb")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=qemu_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def serial_text():
            try:
                with open(serial, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                return b""

        while True:
            if LOGIN_RE.search(serial_text()):
                break
            if proc.poll() is not None:
                raise RuntimeError(f"QEMU exited ({proc.returncode}) before the login prompt")
            if time.monotonic() - t0 > BOOT_TIMEOUT:
                raise RuntimeError(f"no login prompt on the serial console after {BOOT_TIMEOUT} s")
            time.sleep(1)
        boot_s = time.monotonic() - t0
        prompt = LOGIN_RE.search(serial_text()).group(0).decode(errors="replace").strip()
        log(f"{firmware}: login prompt {prompt!r} after {boot_s:.0f} s")

        ssh = ["ssh", "-i", key, "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "LogLevel=ERROR", "debian@127.0.0.1", REMOTE]
        t1 = time.monotonic()
        out = ""
        while True:
            try:
                r = subprocess.run(ssh, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)
            except subprocess.TimeoutExpired:
                r = subprocess.CompletedProcess(ssh, -1, "", "ssh timed out")
            out = r.stdout
            if out.split() == EXPECTED:
                break
            if proc.poll() is not None:
                raise RuntimeError(f"QEMU exited ({proc.returncode}) during the ssh check")
            if time.monotonic() - t1 > SSH_TIMEOUT:
                raise RuntimeError(f"ssh check failed after {SSH_TIMEOUT} s: rc {r.returncode}, "
                                   f"stdout {r.stdout!r}, stderr {r.stderr.strip()!r}")
            time.sleep(5)
        ssh_s = time.monotonic() - t1
        if not qga_ping(qga):
            raise RuntimeError("qemu-guest-agent does not answer guest-ping on its virtio-serial channel")
        log(f"{firmware}: ssh ok {ssh_s:.0f} s after the prompt; guest agent answers guest-ping")
        return boot_s, out
    except Exception:
        text = serial_text().decode(errors="replace").splitlines()
        print(f"--- {firmware} serial log (last 60 lines) ---", file=sys.stderr)
        print("\n".join(text[-60:]), file=sys.stderr)
        raise
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        qemu_log.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("image")
    ap.add_argument("--firmware", default="bios,uefi", help="comma-separated: bios, uefi (default both)")
    a = ap.parse_args()
    if not os.path.isfile(a.image):
        raise SystemExit(f"check-debian-guest: no image {a.image}")
    ensure_tools()
    info_path = os.path.join(os.path.dirname(os.path.abspath(a.image)), "debian12.json")
    info = {}
    if os.path.exists(info_path):
        with open(info_path) as f:
            info = json.load(f)
    tmp = tempfile.mkdtemp(prefix="check-debian-guest-")
    results, failed = {}, []
    try:
        key, seed = make_seed(tmp)
        for fw in [f.strip() for f in a.firmware.split(",") if f.strip()]:
            if fw not in ("bios", "uefi"):
                raise SystemExit(f"check-debian-guest: unknown firmware {fw}")
            try:
                results[fw] = boot(fw, a.image, key, seed, tmp)
            except Exception as e:  # noqa: BLE001 - report and go on with the other firmware
                log(f"{fw}: FAILED: {e}")
                failed.append(fw)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"image: {os.path.abspath(a.image)} ({os.path.getsize(a.image) / 2**20:.0f} MiB)")
    if "build_seconds" in info:
        print(f"image build: {info['build_seconds']} s (built {info.get('built', '?')})")
    for fw, (boot_s, out) in results.items():
        print(f"{fw}: boot to login prompt {boot_s:.0f} s; ssh output:")
        for line in out.splitlines():
            print(f"  {line}")
    for fw in failed:
        print(f"{fw}: FAILED")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
