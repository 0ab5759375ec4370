"""Image import from a URL against a real HTTP server: a body larger than
the download's ring of blocks, with a size that is no whole number of disk
sectors, chunked and with a Content-Length, lands in the store byte for
byte with the sha256 the caller gave; a server that stops early fails the
task and leaves nothing. Bounded: well under a minute."""
import hashlib
import http.server
import os
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from cbdaemon import Daemon  # noqa: E402

# past the 32 MiB ring (each slot reused), and 4 MiB blocks + a ragged tail
SIZE = (45 << 20) + 4097


@pytest.fixture(scope="module")
def served():
    data = os.urandom(SIZE)

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if self.path == "/short":
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data[:len(data) // 3])
                return
            chunked = self.path == "/chunked"
            self.send_response(200)
            self.send_header("Transfer-Encoding" if chunked else "Content-Length", "chunked" if chunked else str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            step, i = 99991, 0
            while i < len(data):
                piece = data[i:i + step]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                i += len(piece)
                step = step * 7 % 1048573 + 1   # odd piece sizes
            if chunked:
                self.wfile.write(b"0\r\n\r\n")

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    d = Daemon()
    d.start()
    d.login()
    yield d, f"http://127.0.0.1:{srv.server_address[1]}", data
    d.teardown()
    srv.shutdown()


def wait(d, task):
    deadline = time.time() + 120
    while time.time() < deadline:
        t = d.json("GET", "/api/v1/tasks/" + task["id"])
        if t["state"] in ("succeeded", "failed"):
            return t
        time.sleep(0.2)
    raise AssertionError(t)


@pytest.mark.parametrize("path", ["/plain", "/chunked"])
def test_a_large_import_is_stored_byte_for_byte(served, path):
    d, base, data = served
    sha = hashlib.sha256(data).hexdigest()
    name = "big" + path.strip("/")
    t = wait(d, d.json("POST", f"/api/v1/images/{name}/import", {"url": base + path, "sha256": sha}, expect=202))
    assert t["state"] == "succeeded" and t["progress"] == 100, t
    info = [i for i in d.json("GET", "/api/v1/images") if i["name"] == name][0]
    assert info["size"] == SIZE and info["sha256"] == sha, info
    with open(os.path.join(d.state, "images", name), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == sha
    assert os.listdir(os.path.join(d.state, "images", ".incoming")) == []


def test_a_short_body_fails_and_leaves_nothing(served):
    d, base, _ = served
    t = wait(d, d.json("POST", "/api/v1/images/cut/import", {"url": base + "/short"}, expect=202))
    assert t["state"] == "failed", t
    assert "cut" not in [i["name"] for i in d.json("GET", "/api/v1/images")]
    assert os.listdir(os.path.join(d.state, "images", ".incoming")) == []
