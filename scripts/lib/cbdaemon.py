"""A `cloudbios daemon` on the host for end-to-end tests: temp state dir,
config with a panel user, REST helpers, and a teardown that leaves no
process behind (daemons and the QEMUs they started)."""
import json
import hashlib
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

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PASSWORD = "e2e-secret"


def binary():
    b = os.environ.get("CLOUDBIOS_BIN")
    if b and os.path.exists(b):
        return b
    for c in (".build-release/release/cloudbios", ".build/release/cloudbios", ".build-vm/release/cloudbios",
              ".build-vm/debug/cloudbios", ".build/debug/cloudbios"):
        p = os.path.join(REPO, c)
        if os.path.exists(p):
            return p
    raise RuntimeError("no cloudbios binary: set CLOUDBIOS_BIN or build it")


def guest():
    script = os.path.join(REPO, "scripts/lib/make-guest.sh")
    # one cache per version of the script: checkouts with other versions share the machine
    with open(script, "rb") as f:
        version = hashlib.sha256(f.read()).hexdigest()[:12]
    out = f"/tmp/cloudbios-test-guest-{version}"
    subprocess.run(["sh", script, out], check=True, timeout=300)
    return os.path.join(out, "vmlinuz"), os.path.join(out, "initrd.img")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def password_hash(pw):
    r = subprocess.run([binary(), "passwd"], input=pw + "\n", capture_output=True, text=True, timeout=30)
    if r.returncode == 0 and r.stdout.strip().startswith("$"):
        return r.stdout.strip().splitlines()[-1]
    import crypt  # fallback
    return crypt.crypt(pw, crypt.mksalt(crypt.METHOD_SHA512))


class Daemon:
    def __init__(self, extra_config="", tls=True, env=None):
        self.env = env
        self.dir = tempfile.mkdtemp(prefix="cbe2e-", dir="/tmp")
        self.state = os.path.join(self.dir, "s")
        self.port = free_port()
        self.tls = tls
        self.config = os.path.join(self.dir, "cloudbios.yaml")
        with open(self.config, "w") as f:
            f.write(f"""version: 1
panel:
  listen: "127.0.0.1:{self.port}"
  tls: {"self-signed" if tls else "off"}
  users:
    - name: admin
      password_hash: "{password_hash(PASSWORD)}"
{extra_config}""")
        self.procs = []
        self.qemu_pids = set()
        self.token = None
        self.log = os.path.join(self.dir, "daemon.log")

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self, timeout=30):
        logf = open(self.log, "a")
        p = subprocess.Popen([binary(), "daemon", "--config", self.config, "--state-dir", self.state],
                             stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                             env=dict(os.environ, **(self.env or {})))
        self.procs.append(p)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if p.poll() is not None:
                raise RuntimeError(f"daemon exited {p.returncode}: {open(self.log).read()[-2000:]}")
            try:
                if self.request("GET", "/api/v1/health", auth=False)[0] == 200:
                    return p
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("daemon did not come up: " + open(self.log).read()[-2000:])

    def ssl_context(self):
        ctx = ssl.create_default_context(cafile=os.path.join(self.state, "tls", "cert.pem"))
        ctx.check_hostname = False
        return ctx

    def request(self, method, path, body=None, auth=True, raw=None, headers=None, timeout=60):
        h = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if raw is not None:
            data = raw
        if auth and self.token:
            h["Authorization"] = "Bearer " + self.token
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context() if self.tls else None) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def json(self, method, path, body=None, expect=200):
        st, b, _ = self.request(method, path, body)
        assert st == expect, f"{method} {path}: {st} {b[:300]!r}"
        return json.loads(b) if b else None

    def login(self):
        st, b, _ = self.request("POST", "/api/v1/login", {"user": "admin", "password": PASSWORD}, auth=False)
        assert st == 200, b
        self.token = json.loads(b)["token"]

    def upload(self, name, path):
        size = os.path.getsize(path)

        def chunks():
            with open(path, "rb") as f:
                while True:
                    c = f.read(1 << 16)
                    if not c:
                        return
                    yield c
        req = urllib.request.Request(self.url + f"/api/v1/images/{name}", data=chunks(), method="PUT",
                                     headers={"Authorization": "Bearer " + self.token, "Content-Length": str(size),
                                              "Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=120, context=self.ssl_context() if self.tls else None) as r:
            return r.status, json.loads(r.read())

    def wait_serial(self, vm, text, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            st, b, _ = self.request("GET", f"/api/v1/vms/{vm}/serial")
            if st == 200 and text.encode() in b:
                return True
            time.sleep(0.3)
        return False

    def kill9(self, p):
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)

    def teardown(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        run = os.path.join(self.state, "run")
        for vm in os.listdir(run) if os.path.isdir(run) else []:
            try:
                self.qemu_pids.add(int(open(os.path.join(run, vm, "qemu.pid")).read().strip()))
            except (OSError, ValueError):
                pass
        for pid in self.qemu_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def png_pixels(data):
    """Decodes an 8-bit RGB/RGBA PNG (what QEMU writes) into (w, h, rows of bytes, bytes per pixel)."""
    import struct
    import zlib
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, w, h = 8, b"", 0, 0
    bpp = 3
    while pos < len(data):
        (n,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6), (depth, ctype)
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(h):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if f == 1:
                line[x] = (line[x] + a) & 255
            elif f == 2:
                line[x] = (line[x] + b) & 255
            elif f == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, rows, bpp


def colour_share(png, rgb, tolerance=8):
    w, h, rows, bpp = png_pixels(png)
    match = total = 0
    for row in rows[::4]:
        for x in range(0, w * bpp, bpp * 4):
            total += 1
            if all(abs(row[x + k] - rgb[k]) <= tolerance for k in range(3)):
                match += 1
    return match / max(total, 1), w, h
