"""The cached real Debian guest for end-to-end tests: the image (built by
make-debian-guest.py, cached, keyed by its inputs), a network namespace an
SSH client stands in (as another machine would), and real `ssh` logins
through a VM's port forward."""
import os
import subprocess
import time

from cbdaemon import REPO

CACHE = os.environ.get("CLOUDBIOS_GUEST_CACHE", "/var/cache/cloudbios-test/guest")
BOOT_TIMEOUT = 420  # a Debian boot with cloud-init under TCG on a busy 2-core machine


def debian_image():
    """The image's path (built on the first call, then from the cache)."""
    r = subprocess.run(["python3", os.path.join(REPO, "scripts", "lib", "make-debian-guest.py"), CACHE],
                       capture_output=True, text=True, timeout=3000)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    path = r.stdout.strip().splitlines()[-1]
    assert os.path.exists(path), r.stdout
    return path


def make_key(directory):
    k = os.path.join(str(directory), "id_ed25519")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e@cloudbios", "-f", k], check=True)
    return k


class ClientNetns:
    """A network namespace on a veth pair: the host side is `prefix`.1, the
    client `prefix`.2 (a /30)."""

    def __init__(self, ns, host_if, prefix):
        self.ns, self.host_if, self.prefix = ns, host_if, prefix
        self.host_ip = prefix + ".1"

    def up(self):
        self.down()
        peer = self.host_if + "-c"
        for cmd in (["ip", "netns", "add", self.ns],
                    ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", peer],
                    ["ip", "link", "set", peer, "netns", self.ns],
                    ["ip", "addr", "add", self.prefix + ".1/30", "dev", self.host_if],
                    ["ip", "link", "set", self.host_if, "up"],
                    ["ip", "-n", self.ns, "addr", "add", self.prefix + ".2/30", "dev", peer],
                    ["ip", "-n", self.ns, "link", "set", peer, "up"],
                    ["ip", "-n", self.ns, "link", "set", "lo", "up"]):
            subprocess.run(cmd, check=True)
        return self

    def down(self):
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)

    def ssh(self, key, port, command, timeout=60):
        """One ssh command from the namespace; a hung attempt (a guest
        rebooting behind the forward accepts and then says nothing) is a failed one."""
        argv = ["ip", "netns", "exec", self.ns, "ssh", "-i", key, "-p", str(port),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "debian@" + self.host_ip, command]
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(argv, 255, e.stdout or "", f"timed out after {timeout} s")

    def wait_ssh(self, key, port, deadline):
        """Waits for a login (and cloud-init's end); the guest's hostname."""
        last = None
        while time.time() < deadline:
            last = self.ssh(key, port, "cloud-init status --wait >/dev/null 2>&1; hostname")
            if last.returncode == 0:
                return last.stdout.strip()
            time.sleep(5)
        raise AssertionError(f"no SSH login: {last.stderr if last else ''}")
