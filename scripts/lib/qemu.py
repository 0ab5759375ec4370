"""QEMU harness for the CloudBIOS end-to-end tests.

Starts a VM with the given drives, firmware and forwarded ports (always TCG),
talks QMP (screendump, send-key, quit), waits for text on the serial log, and
always kills QEMU on teardown.
"""
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(REPO, "images", "out")
OVMF_CODE = "/usr/share/OVMF/OVMF_CODE_4M.fd"
OVMF_VARS = "/usr/share/OVMF/OVMF_VARS_4M.fd"


def free_port():
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QMP:
    """A QMP client: greeting, qmp_capabilities, then commands."""

    def __init__(self, path, timeout=10):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        greeting = self._read()
        assert "QMP" in greeting, greeting
        self.execute("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("QMP socket closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command, **arguments):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"QMP {command}: {reply['error']}")

    def screendump(self, path):
        self.execute("screendump", filename=path)

    def send_key(self, *keys):
        self.execute("send-key", keys=[{"type": "qcode", "data": k} for k in keys])

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class VM:
    """One QEMU process under test. Use as a context manager."""

    def __init__(self, name="vm", iso=None, drives=(), firmware="bios", memory=1024, cpus=2,
                 forwards=None, kernel=None, initrd=None, append=None, extra=(), resolver=None):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"cloudbios-{name}-")
        self.serial_path = os.path.join(self.dir, "serial.log")
        self.qmp_path = os.path.join(self.dir, "qmp.sock")
        self.forwards = dict(forwards or {})  # guest port -> host port
        self.proc = None
        self.qmp = None
        # No emulated SVM: KVM on an emulated CPU is not a path users meet, and
        # tearing down a KVM guest on it can lock the whole VM up. (QEMU's
        # "max" model with svm=off breaks glibc start-up in the guest, so the
        # baseline model is used.)
        args = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "qemu64,svm=off,rdrand=on", "-smp", str(cpus), "-m", str(memory),
                "-display", "none", "-vga", "std", "-no-reboot",
                "-serial", f"file:{self.serial_path}",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        if firmware == "uefi":
            vars_copy = os.path.join(self.dir, "OVMF_VARS.fd")
            shutil.copy(OVMF_VARS, vars_copy)
            args += ["-machine", "q35", "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                     "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
        if iso:
            # boot the CD first: a FAT volume's boot sector would otherwise
            # win on BIOS and wait for a key forever
            args += ["-drive", f"file={iso},media=cdrom,if=none,id=cd0,readonly=on",
                     "-device", "ide-cd,drive=cd0,bootindex=0"]
        for d in drives:
            args += ["-drive", d if "=" in d else f"file={d},format=raw,if=virtio"]
        # a guest port, or "ADDRESS:PORT" for one guest address
        fwd = "".join(f",hostfwd=tcp:127.0.0.1:{h}-{g if isinstance(g, str) else f':{g}'}" for g, h in self.forwards.items())
        args += ["-nic", f"user,model=virtio-net-pci{fwd}"]
        if kernel:
            args += ["-kernel", kernel]
        if initrd:
            args += ["-initrd", initrd]
        if append:
            args += ["-append", append]
        self.args = args + list(extra)
        if resolver:
            # QEMU's user networking answers the guest's DNS through the
            # host's resolv.conf: give this QEMU alone (a mount namespace)
            # one naming the test's own server, so no query leaves the machine
            conf = os.path.join(self.dir, "resolv.conf")
            with open(conf, "w") as f:
                f.write(f"nameserver {resolver}\n")
            self.args = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"', conf] + self.args

    def start(self):
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "qemu.stderr"), "wb"),
                                     start_new_session=True)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.qmp_path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"QEMU did not start: {self.stderr()}")
            time.sleep(0.05)
        # the socket's file may be there a moment before QEMU listens on it
        while True:
            try:
                self.qmp = QMP(self.qmp_path)
                return self
            except ConnectionRefusedError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stderr(self):
        try:
            return open(os.path.join(self.dir, "qemu.stderr"), errors="replace").read()
        except OSError:
            return ""

    def serial(self):
        try:
            with open(self.serial_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_serial(self, text, timeout):
        """Waits until `text` appears on the serial console; returns the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.serial()
            if text in log:
                return log
            if self.proc.poll() is not None:
                raise AssertionError(f"QEMU exited ({self.proc.returncode}) before {text!r}:\n{log[-4000:]}")
            time.sleep(0.25)
        raise AssertionError(f"{text!r} not on the serial console after {timeout} s:\n{self.serial()[-4000:]}")

    def https(self, path, port=8443, method="GET", body=None, headers=None, timeout=5):
        """One HTTPS request to a forwarded port (certificate not verified):
        (status, body bytes)."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"https://127.0.0.1:{self.forwards[port]}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def wait_https(self, path, timeout, port=8443):
        """Polls until the path answers 200; returns the body."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                status, body = self.https(path, port=port, timeout=3)
                if status == 200:
                    return body
                last = f"HTTP {status}: {body[:200]!r}"
            except (OSError, ssl.SSLError, ConnectionError) as e:
                last = repr(e)
            if self.proc.poll() is not None:
                break
            time.sleep(1)
        raise AssertionError(f"{path} did not answer within {timeout} s (last: {last}); serial tail:\n"
                             f"{self.serial()[-5000:]}")

    def type_text(self, text):
        """Types `text` on the VM's keyboard through QMP send-key (letters,
        digits, '.', '/', '-', ' ' and '\n' for Enter)."""
        names = {".": "dot", "/": "slash", "-": "minus", " ": "spc", "\n": "ret", ":": ["shift", "semicolon"]}
        for ch in text:
            k = names.get(ch, ch.lower() if ch.isalnum() else None)
            if k is None:
                raise ValueError(f"cannot type {ch!r}")
            keys = k if isinstance(k, list) else (["shift", k] if ch.isupper() else [k])
            self.qmp.execute("send-key", keys=[{"type": "qcode", "data": x} for x in keys])
            time.sleep(0.15)

    def kill(self):
        if self.qmp:
            self.qmp.close()
            self.qmp = None
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)

    def cleanup(self):
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()


def make_cbconfig(path, files):
    """A FAT volume labelled CBCONFIG with `files` ({name: text or bytes or
    source path for binaries via ('copy', path)}) at its root."""
    src = tempfile.mkdtemp(prefix="cbconfig-")
    try:
        for name, content in files.items():
            dest = os.path.join(src, name)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if isinstance(content, tuple) and content[0] == "copy":
                shutil.copy(content[1], dest)
            else:
                with open(dest, "wb") as f:
                    f.write(content.encode() if isinstance(content, str) else content)
        subprocess.run([os.path.join(REPO, "scripts", "lib", "make-cbconfig.sh"), path, src], check=True)
    finally:
        shutil.rmtree(src, ignore_errors=True)
    return path


def password_hash(password):
    return subprocess.run(["openssl", "passwd", "-6", password], check=True, capture_output=True,
                          text=True).stdout.strip()
