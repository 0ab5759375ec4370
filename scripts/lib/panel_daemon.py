"""A real `cloudbios daemon` for end-to-end tests of the panel and the API.

Starts the daemon on 127.0.0.1 with a free port, a self-signed certificate,
a short state directory and one user; stops it (and every QEMU it started)
on exit. The binary is $CLOUDBIOS_BIN, else the first one built.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import requests
import urllib3

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
USER = "admin"
PASSWORD = "panel-test-pw"
# vga=0x344: the kernel's VESA framebuffer, on which the guest paints #1E90FF
GUEST_APPEND = "console=ttyS0 console=tty1 vga=0x344"


def binary():
    env = os.environ.get("CLOUDBIOS_BIN")
    if env:
        return env
    for rel in (".build-release/release/cloudbios", ".build/release/cloudbios", ".build/debug/cloudbios"):
        p = os.path.join(REPO, rel)
        if os.access(p, os.X_OK):
            return p
    raise RuntimeError("no cloudbios binary: build it (swift build) or set CLOUDBIOS_BIN")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def password_hash(pw):
    out = subprocess.run(["openssl", "passwd", "-6", "-salt", "cbpaneltest", pw],
                         check=True, capture_output=True, text=True, timeout=10)
    return out.stdout.strip()


def make_guest(outdir):
    """The tiny test guest (vmlinuz + initrd.img) in outdir."""
    subprocess.run(["sh", os.path.join(REPO, "scripts/lib/make-guest.sh"), outdir], check=True, timeout=300)
    return os.path.join(outdir, "vmlinuz"), os.path.join(outdir, "initrd.img")


class PanelDaemon:
    def __init__(self, extra_config=""):
        self.state = tempfile.mkdtemp(prefix="cbw", dir="/tmp")
        self.port = free_port()
        self.url = "https://127.0.0.1:%d" % self.port
        self.config = os.path.join(self.state, "cloudbios.yaml")
        with open(self.config, "w") as f:
            f.write("version: 1\nhostname: paneltest\npanel:\n  listen: \"127.0.0.1:%d\"\n  tls: self-signed\n"
                    "  users:\n    - name: %s\n      password_hash: \"%s\"\n%s"
                    % (self.port, USER, password_hash(PASSWORD), extra_config))
        self.log_path = os.path.join(self.state, "daemon.log")
        self.proc = None
        self.token = None

    def start(self, timeout=30):
        try:
            return self._start(timeout)
        except BaseException:
            log = self.log()
            self.stop()
            if log:
                print("daemon log:\n" + log)
            raise

    def _start(self, timeout):
        log = open(self.log_path, "wb")
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            [binary(), "daemon", "--config", self.config, "--state-dir", os.path.join(self.state, "s"),
             "--web-root", os.path.join(REPO, "web")],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("daemon exited with %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                if requests.get(self.url + "/api/v1/health", verify=False, timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("daemon did not answer /api/v1/health in %d s:\n%s" % (timeout, self.log()))

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-6000:]
        except OSError:
            return ""

    # ------------------------------------------------------------ API client

    def api(self, method, path, **kw):
        """A request with the bearer token (after login())."""
        headers = kw.pop("headers", {})
        if self.token:
            headers.setdefault("Authorization", "Bearer " + self.token)
        kw.setdefault("timeout", 30)
        return requests.request(method, self.url + path, headers=headers, verify=False, **kw)

    def login(self):
        r = requests.post(self.url + "/api/v1/login", json={"user": USER, "password": PASSWORD}, verify=False, timeout=10)
        r.raise_for_status()
        self.token = r.json()["token"]
        return r

    def upload(self, name, path):
        with open(path, "rb") as f:
            r = self.api("PUT", "/api/v1/images/" + name, data=f, headers={"Content-Type": "application/octet-stream"}, timeout=120)
        assert r.status_code in (200, 201), r.text
        return r.json()

    def create_tiny_vm(self, name, kernel="tiny-kernel", initrd="tiny-initrd", start=True):
        spec = {"name": name, "memory": 256, "cpus": 1, "kernel": kernel, "initrd": initrd,
                "append": GUEST_APPEND, "network": "none", "accel": "tcg"}
        r = self.api("POST", "/api/v1/vms", json=spec)
        assert r.status_code in (200, 201), r.text
        if start:
            r = self.api("POST", "/api/v1/vms/%s/start" % name, json={})
            assert r.status_code in (200, 202, 204), r.text
        return spec

    def wait_serial(self, name, text, timeout=120):
        deadline = time.time() + timeout
        log = ""
        while time.time() < deadline:
            r = self.api("GET", "/api/v1/vms/%s/serial" % name)
            log = r.text if r.status_code == 200 else log
            if text in log:
                return log
            time.sleep(1)
        raise AssertionError("%r not in the serial log of %s after %d s; log ends:\n%s" % (text, name, timeout, log[-2000:]))

    # ------------------------------------------------------------ teardown

    def stop(self):
        if self.proc and self.proc.poll() is None and self.token:
            try:
                vms = self.api("GET", "/api/v1/vms", timeout=5).json()
                for vm in vms if isinstance(vms, list) else []:
                    if vm.get("state") in ("running", "paused", "starting"):
                        self.api("POST", "/api/v1/vms/%s/stop" % vm["name"], json={}, timeout=10)
            except (requests.RequestException, ValueError):
                pass
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self._kill_qemus()
        shutil.rmtree(self.state, ignore_errors=True)

    def _kill_qemus(self):
        """QEMU runs daemonized (it outlives the daemon by design): end the
        ones whose pidfile is in this state directory."""
        for root, _dirs, files in os.walk(self.state):
            for fn in files:
                if not fn.endswith(".pid"):
                    continue
                try:
                    pid = int(open(os.path.join(root, fn)).read().strip())
                    with open("/proc/%d/cmdline" % pid, "rb") as f:
                        cmd = f.read()
                except (OSError, ValueError):
                    continue
                if b"qemu" in cmd and self.state.encode() in cmd:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def cookie_session(d):
    """A requests.Session logged in like the browser: the cookie and the CSRF token."""
    s = requests.Session()
    s.verify = False
    plain = s.request
    # a per-request verify=False: the session attribute loses to REQUESTS_CA_BUNDLE
    s.request = lambda method, url, **kw: plain(method, url, **dict(kw, verify=False))
    r = s.post(d.url + "/api/v1/login", json={"user": USER, "password": PASSWORD}, timeout=10)
    r.raise_for_status()
    return s, r.json().get("csrf")


if __name__ == "__main__":
    # Manual use: python3 scripts/lib/panel_daemon.py  -> runs until Ctrl-C
    with PanelDaemon() as d:
        print(json.dumps({"url": d.url, "user": USER, "password": PASSWORD, "state": d.state}), flush=True)
        try:
            while d.proc.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
