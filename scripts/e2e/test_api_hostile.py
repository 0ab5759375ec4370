"""Hostile input against the real `cloudbios daemon`: every call is refused
with a clear 4xx and a JSON error, the daemon stays up, and nothing that
existed before is lost. TLS is the default self-signed certificate; the
client pins the fingerprint the daemon wrote to <state-dir>/tls/fingerprint
(what the console shows)."""

import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PASSWORD = "correct horse battery"


def cloudbios_bin():
    for c in (os.environ.get("CLOUDBIOS_BIN"), os.path.join(ROOT, ".build-release/release/cloudbios"),
              os.path.join(ROOT, ".build/release/cloudbios"), os.path.join(ROOT, ".build/debug/cloudbios")):
        if c and os.access(c, os.X_OK):
            return c
    pytest.skip("no cloudbios binary (set CLOUDBIOS_BIN or run scripts/build)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, binary, workdir):
        self.binary = binary
        self.dir = workdir
        self.state = os.path.join(workdir, "state")
        self.port = free_port()
        # The hash comes from `cloudbios passwd` (password on stdin).
        out = subprocess.run([binary, "passwd"], input=PASSWORD + "\n", capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        self.hash = out.stdout.strip()
        assert self.hash.startswith("$6$"), self.hash
        self.config = os.path.join(workdir, "cloudbios.yaml")
        with open(self.config, "w") as f:
            f.write(f"""version: 1
hostname: e2e-host
panel:
  listen: "127.0.0.1:{self.port}"
  tls: self-signed
  users:
    - name: admin
      password_hash: "{self.hash}"
""")
        self.log = open(os.path.join(workdir, "daemon.log"), "wb")
        self.proc = subprocess.Popen([binary, "daemon", "--config", self.config, "--state-dir", self.state],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.token = None
        deadline = time.time() + 60
        while True:
            assert self.proc.poll() is None, "daemon exited:\n" + self.log_text()
            try:
                if self.request("GET", "/api/v1/health")[0] == 200:
                    break
            except (OSError, ssl.SSLError, http.client.HTTPException):
                pass
            assert time.time() < deadline, "daemon did not answer within 60 s:\n" + self.log_text()
            time.sleep(0.2)

    def log_text(self):
        self.log.flush()
        with open(os.path.join(self.dir, "daemon.log"), "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def context(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # pinned below by fingerprint instead
        return ctx

    def fingerprint(self):
        with open(os.path.join(self.state, "tls", "fingerprint")) as f:
            return f.read().strip()

    def connect(self):
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        s = self.context().wrap_socket(raw, server_hostname="e2e-host")
        der = s.getpeercert(binary_form=True)
        got = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
        assert got == self.fingerprint(), "the served certificate is not the one whose fingerprint was written"
        return s

    def request(self, method, path, body=None, headers=None, auth=True):
        h = {"Host": f"127.0.0.1:{self.port}", "Connection": "close"}
        if auth and self.token:
            h["Authorization"] = "Bearer " + self.token
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        elif isinstance(body, str):
            body = body.encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30, context=self.context())
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def json(self, method, path, body=None, **kw):
        status, headers, data = self.request(method, path, body, **kw)
        try:
            return status, headers, json.loads(data) if data else None
        except ValueError:
            return status, headers, data

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.log.close()


@pytest.fixture(scope="module")
def daemon():
    workdir = tempfile.mkdtemp(prefix="cloudbios-hostile-")
    d = Daemon(cloudbios_bin(), workdir)
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def snapshot(d):
    s1, _, vms = d.json("GET", "/api/v1/vms")
    s2, _, images = d.json("GET", "/api/v1/images")
    assert s1 == 200 and s2 == 200
    return (sorted(json.dumps(v, sort_keys=True) for v in vms),
            sorted((i["name"], i["size"]) for i in images))


def test_tls_and_public_endpoints(daemon):
    fp = daemon.fingerprint()
    assert len(fp) == 95 and fp.count(":") == 31 and fp == fp.upper()
    key = os.path.join(daemon.state, "tls", "key.pem")
    assert os.stat(key).st_mode & 0o777 == 0o600
    status, headers, body = daemon.json("GET", "/api/v1/health", auth=False)
    assert status == 200 and body["status"] == "ok" and body["version"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["strict-transport-security"].startswith("max-age=")
    # Plain HTTP on the TLS port gets nothing useful.
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as s:
        s.sendall(b"GET /api/v1/vms HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        try:
            data = s.recv(1024)
        except (ConnectionResetError, socket.timeout):
            data = b""
        assert b'"name"' not in data


PROTECTED = [("GET", "/api/v1/vms"), ("POST", "/api/v1/vms"), ("GET", "/api/v1/host"), ("GET", "/api/v1/images"),
             ("PUT", "/api/v1/images/x"), ("DELETE", "/api/v1/vms/x"), ("POST", "/api/v1/vms/x/start"),
             ("GET", "/api/v1/vms/x/serial"), ("GET", "/api/v1/vms/x/screenshot"), ("GET", "/api/v1/disks"),
             ("POST", "/api/v1/install"), ("GET", "/api/v1/tasks/abc"), ("GET", "/metrics"), ("GET", "/api/v1/session")]


@pytest.mark.parametrize("method,path", PROTECTED)
def test_unauthenticated_is_401(daemon, method, path):
    status, _, body = daemon.json(method, path, auth=False)
    assert status == 401, (method, path, body)
    assert isinstance(body, dict) and body.get("error")
    assert daemon.alive()


def test_login_and_baseline(daemon):
    status, headers, body = daemon.json("POST", "/api/v1/login", {"user": "admin", "password": PASSWORD}, auth=False)
    assert status == 200, body
    assert body["token"] and body["csrf"] and body["expires"]
    cookie = headers["set-cookie"]
    for attr in ("cloudbios_session=", "HttpOnly", "SameSite=Strict", "Secure", "Path=/"):
        assert attr in cookie, cookie
    daemon.token = body["token"]
    daemon.csrf = body["csrf"]
    # Something to lose: an image and a VM using it.
    payload = os.urandom(1 << 20)
    status, _, data = daemon.request("PUT", "/api/v1/images/keep-kernel", payload,
                                     headers={"Content-Type": "application/octet-stream"})
    assert status in (200, 201), data
    status, _, body = daemon.json("POST", "/api/v1/vms", {"name": "keep", "memory": 64, "kernel": "keep-kernel"})
    assert status == 201, body
    daemon.baseline = snapshot(daemon)
    assert ("keep-kernel", 1 << 20) in daemon.baseline[1]


LONG = "a" * 80
HOSTILE = [
    # path parameters
    ("GET", "/api/v1/vms/..%2Fx", None, 400),
    ("GET", "/api/v1/vms/a,b", None, 400),
    ("DELETE", "/api/v1/vms/a,b", None, 400),
    ("GET", f"/api/v1/vms/{LONG}", None, 400),
    ("DELETE", "/api/v1/vms/%2e%2e%2fkeep", None, 400),
    ("POST", "/api/v1/vms/%2e%2e/start", None, 400),
    ("PUT", "/api/v1/vms/KEEP", {"name": "KEEP"}, 400),
    ("PUT", "/api/v1/images/..%2F..%2Fetc%2Fpasswd", b"x", 400),
    ("PUT", "/api/v1/images/a,file=%2Fetc%2Fpasswd", b"x", 400),
    ("PUT", "/api/v1/images/-drive", b"x", 400),
    ("DELETE", "/api/v1/images/..", None, 400),
    ("DELETE", "/api/v1/images/%2e%2e%2fkeep-kernel", None, 400),
    ("GET", "/%2e%2e/%2e%2e/etc/passwd", None, 400),
    ("GET", "/novnc/..%2F..%2F..%2Fetc%2Fpasswd", None, 400),
    ("GET", "/api/v1/tasks/..%2F..", None, 400),
    ("GET", "/api/v1/vms/keep/serial?offset=-5", None, 400),
    # bodies
    ("POST", "/api/v1/vms", {"name": "../x"}, (400, 422)),
    ("POST", "/api/v1/vms", {"name": "a,b"}, (400, 422)),
    ("POST", "/api/v1/vms", {"name": LONG}, (400, 422)),
    ("POST", "/api/v1/vms", {"name": "neg", "memory": -1}, (400, 422)),
    ("POST", "/api/v1/vms", {"name": "huge", "memory": 10 ** 15}, (400, 422)),
    ("POST", "/api/v1/vms", {"name": "nan", "memory": "lots"}, (400, 422)),
    ("POST", "/api/v1/vms", {"name": "typo", "memroy": 256}, (400, 422)),
    ("POST", "/api/v1/vms", {"name": "inj", "kernel": "x,file=/etc/passwd"}, (400, 422)),
    ("POST", "/api/v1/vms", {"name": "trav", "kernel": "../../etc/shadow"}, (400, 422)),
    ("POST", "/api/v1/vms", {"name": "nl", "kernel": "keep-kernel", "append": "a\nb"}, (400, 422)),
    ("POST", "/api/v1/vms", {"name": "cpus", "cpus": 100000}, (400, 422)),
    ("POST", "/api/v1/vms", {"name": "keep"}, 409),
    ("POST", "/api/v1/vms", '{"name": "x", ', 400),
    ("POST", "/api/v1/vms", '{"name": "x"} {"name": "y"}', 400),
    ("POST", "/api/v1/vms", "\x00\x01\x02", 400),
    ("POST", "/api/v1/vms", "[" * 100000, (400, 413)),
    ("POST", "/api/v1/install", '{"disk": ', 400),
    ("POST", "/api/v1/login", '{"user": 5}', 400),
    # routes and methods
    ("GET", "/api/v1/nope", None, 404),
    ("DELETE", "/api/v1/vms", None, 405),
    ("PATCH", "/api/v1/vms/keep", None, 405),
    ("GET", "/api/v1/vms/nothere", None, 404),
    ("DELETE", "/api/v1/images/nothere", None, 404),
]


@pytest.mark.parametrize("method,path,body,want", HOSTILE, ids=[f"{m} {p[:60]}" for m, p, _, _ in HOSTILE])
def test_hostile_is_refused(daemon, method, path, body, want):
    assert daemon.token, "login failed earlier"
    status, _, data = daemon.json(method, path, body)
    wants = want if isinstance(want, tuple) else (want,)
    assert status in wants, (status, data)
    assert isinstance(data, dict) and isinstance(data.get("error"), str) and data["error"], data
    assert daemon.alive(), daemon.log_text()
    assert daemon.request("GET", "/api/v1/health")[0] == 200


def test_wrong_content_type_is_415(daemon):
    status, _, data = daemon.request("POST", "/api/v1/vms", b"name=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415, data


def test_cookie_without_csrf_is_403(daemon):
    cookie = {"Cookie": "cloudbios_session=" + daemon.token}
    status, _, _ = daemon.request("GET", "/api/v1/vms", headers=cookie, auth=False)
    assert status == 200
    status, _, data = daemon.request("POST", "/api/v1/vms/keep/pause", headers=cookie, auth=False)
    assert status == 403, data
    status, _, data = daemon.request("DELETE", "/api/v1/vms/keep", headers=cookie, auth=False)
    assert status == 403, data


def test_64_mib_body_is_413(daemon):
    s = daemon.connect()
    head = (f"POST /api/v1/vms HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\nAuthorization: Bearer {daemon.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {64 << 20}\r\nConnection: close\r\n\r\n").encode()
    s.sendall(head)
    chunk = b" " * (1 << 20)
    try:
        for _ in range(64):
            s.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError, socket.timeout):
        pass  # refused before the body was read: expected
    data = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except (ConnectionResetError, ssl.SSLError, socket.timeout):
        pass
    s.close()
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    assert daemon.alive()


def test_failed_logins_hit_429(daemon):
    statuses = []
    for _ in range(8):
        status, headers, body = daemon.json("POST", "/api/v1/login", {"user": "admin", "password": "wrong"}, auth=False)
        statuses.append(status)
        if status == 429:
            assert 1 <= int(headers["retry-after"]) <= 60
            assert "too many" in body["error"]
    assert statuses[:5] == [401] * 5 and statuses[-1] == 429, statuses
    # The right password is refused too while throttled.
    status, _, _ = daemon.json("POST", "/api/v1/login", {"user": "admin", "password": PASSWORD}, auth=False)
    assert status == 429
    # Existing sessions keep working.
    assert daemon.json("GET", "/api/v1/vms")[0] == 200


GARBAGE = [
    os.urandom(4096),
    b"GET / HTTP/9.9\r\n\r\n",  # 505 from the HTTP library: the one allowed 5xx
    b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n",
    b"GET /api/v1/health HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(500)) + b"\r\n",
    b"GET /\x00/../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzzzz\r\n",
    b"PUT /api/v1/images/x HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"GET /api/v1/vms/x/console HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: !!!!\r\n\r\n",
    b"POST /api/v1/vms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"na",
]


@pytest.mark.parametrize("raw", GARBAGE, ids=[f"garbage{i}" for i in range(len(GARBAGE))])
def test_garbage_does_not_hurt(daemon, raw):
    s = daemon.connect()
    try:
        s.sendall(raw)
        s.settimeout(5)
        data = s.recv(4096)
    except (OSError, ssl.SSLError):
        data = b""
    finally:
        s.close()
    # Whatever came back is a clean HTTP answer: an error (or, for a request
    # that is merely odd, the harmless page), never a crash, never a file
    # from outside the web root.
    if data:
        status = data[9:12]
        assert data.startswith(b"HTTP/1.1 ") and (status[:1] == b"4" or status in (b"200", b"505")), data[:120]
        assert b"root:" not in data
    assert daemon.alive(), daemon.log_text()
    assert daemon.request("GET", "/api/v1/health")[0] == 200


def test_many_connections(daemon):
    socks = []
    for _ in range(150):
        socks.append(socket.create_connection(("127.0.0.1", daemon.port), timeout=10))
    for s in socks[::2]:
        s.sendall(b"\x16\x03\x01\x00")  # a TLS hello that never finishes
    for s in socks:
        s.close()
    assert daemon.alive()
    assert daemon.request("GET", "/api/v1/health")[0] == 200


def test_nothing_lost(daemon):
    assert daemon.alive(), daemon.log_text()
    assert snapshot(daemon) == daemon.baseline
    # No file escaped the state dir.
    assert not os.path.exists(os.path.join(daemon.dir, "x"))
    assert sorted(os.listdir(daemon.dir)) == ["cloudbios.yaml", "daemon.log", "state"]
