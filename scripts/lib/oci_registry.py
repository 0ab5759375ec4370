"""A local container registry for the apps tests: Debian's docker-registry on
loopback with its own config and storage, OCI image layouts written by hand
(busybox-static's binary, an os-release, a web root), pushed with skopeo, and
a token gate in front of the registry that answers like Docker Hub's
(401 + `WWW-Authenticate: Bearer realm=…`, a token, then the registry)."""
import gzip
import hashlib
import http.server
import io
import json
import os
import socket
import subprocess
import tarfile
import threading
import time
import urllib.request

BUSYBOX = "/bin/busybox"
APPLETS = ["sh", "cat", "echo", "ls", "httpd", "sleep", "env", "id", "false", "true", "wget", "ps", "mount", "uname"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tar_gz(entries):
    """A gzip'd tar of (name, kind, data_or_target, mode) entries, reproducible."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            info.mode = mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            elif kind == "link":
                info.type = tarfile.SYMTYPE
                info.linkname = data
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def busybox_layers():
    """Two layers: busybox with a web root and an os-release, then one that
    removes a file (whiteout), hides a directory's old content (opaque) and
    adds a file."""
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    base = [("bin", "dir", None, 0o755), ("bin/busybox", "file", busybox, 0o755)]
    base += [(f"bin/{a}", "link", "busybox", 0o777) for a in APPLETS]
    base += [
        ("etc", "dir", None, 0o755),
        ("etc/os-release", "file", b'NAME="CloudBIOS test busybox"\nID=cbtest\nVERSION_ID=1\n', 0o644),
        ("etc/gone.txt", "file", b"removed by the second layer\n", 0o644),
        ("www", "dir", None, 0o755),
        ("www/index.html", "file", b"hello from the cloudbios app image\n", 0o644),
        ("opaque", "dir", None, 0o755),
        ("opaque/old.txt", "file", b"hidden by the opaque marker\n", 0o644),
        ("tmp", "dir", None, 0o1777),
    ]
    top = [
        ("etc", "dir", None, 0o755),
        ("etc/.wh.gone.txt", "file", b"", 0o644),
        ("opaque", "dir", None, 0o755),
        ("opaque/.wh..wh..opq", "file", b"", 0o644),
        ("opaque/new.txt", "file", b"from the second layer\n", 0o644),
    ]
    return [_tar_gz(base), _tar_gz(top)]


class Layout:
    """An OCI image layout directory being written."""

    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, "blobs", "sha256"), exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        self.index = []

    def blob(self, data, media_type):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        with open(os.path.join(self.path, "blobs", "sha256", digest[7:]), "wb") as f:
            f.write(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def image(self, layers, arch="amd64", cmd=None, env=None):
        """Writes one image's config and manifest; returns the manifest's descriptor."""
        diff_ids = ["sha256:" + hashlib.sha256(gzip.decompress(l)).hexdigest() for l in layers]
        config = {
            "architecture": arch, "os": "linux",
            "config": {"Cmd": cmd or ["sh"], "Env": env or ["PATH=/bin"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        manifest = {
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": self.blob(json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"),
            "layers": [self.blob(l, "application/vnd.oci.image.layer.v1.tar+gzip") for l in layers],
        }
        d = self.blob(json.dumps(manifest).encode(), manifest["mediaType"])
        d["platform"] = {"os": "linux", "architecture": arch}
        return d

    def tag(self, name, descriptor):
        entry = dict(descriptor)
        entry["annotations"] = {"org.opencontainers.image.ref.name": name}
        self.index.append(entry)
        self._write_index()

    def tag_index(self, name, manifests):
        """Tags an image index of several platforms' manifests."""
        idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
        self.tag(name, self.blob(json.dumps(idx).encode(), idx["mediaType"]))

    def _write_index(self):
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump({"schemaVersion": 2, "manifests": self.index}, f)


class LocalRegistry:
    """docker-registry serving from `storage` on 127.0.0.1:`port`."""

    def __init__(self, workdir, port=None, tls=False, storage=None):
        self.port = port or free_port()
        self.storage = storage or os.path.join(workdir, "registry-storage")
        self.config = os.path.join(workdir, f"registry-{self.port}.yml")
        self.scheme = "https" if tls else "http"
        os.makedirs(self.storage, exist_ok=True)
        tls_conf = ""
        if tls:
            cert, key = os.path.join(workdir, "registry-cert.pem"), os.path.join(workdir, "registry-key.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                            "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", key, "-out", cert], check=True, capture_output=True)
            tls_conf = f"  tls:\n    certificate: {cert}\n    key: {key}\n"
        with open(self.config, "w") as f:
            f.write(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {self.storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{self.port}
{tls_conf}""")
        self.log = open(os.path.join(workdir, f"registry-{self.port}.log"), "w")
        self.proc = subprocess.Popen(["docker-registry", "serve", self.config], stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while True:
            try:
                import ssl
                urllib.request.urlopen(f"{self.scheme}://127.0.0.1:{self.port}/v2/", timeout=2,
                                       context=ssl._create_unverified_context()).read()
                break
            except Exception:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("docker-registry did not start")
                time.sleep(0.2)

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def push(self, layout, tag, repo, all_platforms=False):
        cmd = ["skopeo", "copy", "--quiet", "--dest-tls-verify=false"]
        if all_platforms:
            cmd.append("--all")
        subprocess.run(cmd + [f"oci:{layout.path}:{tag}", f"docker://{self.host}/{repo}"], check=True,
                       capture_output=True, timeout=120)

    def blob_file(self, digest):
        """Where the registry keeps a blob's bytes."""
        hexd = digest[7:]
        return os.path.join(self.storage, "docker", "registry", "v2", "blobs", "sha256", hexd[:2], hexd, "data")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def busybox_registry(work):
    """A local registry at `work` holding busybox:1 (two layers, its command
    busybox httpd on port 8080 serving /www); stop() it when done."""
    reg = LocalRegistry(work)
    layout = Layout(os.path.join(work, "layout"))
    layout.tag("1", layout.image(busybox_layers(), cmd=["httpd", "-f", "-p", "8080", "-h", "/www"]))
    reg.push(layout, "1", "busybox:1")
    return reg


class TokenGate:
    """A proxy in front of `upstream` that wants a bearer token, as Docker Hub
    does: without one it answers 401 with a Bearer challenge whose realm is
    its own /token, which hands out a token for the asked scope."""

    TOKEN = "cbtest-token-0123456789"

    def __init__(self, upstream_port):
        self.port = free_port()
        self.token_requests = []
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path.startswith("/token?"):
                    gate.token_requests.append(self.path)
                    body = json.dumps({"token": gate.TOKEN}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if self.headers.get("Authorization") != "Bearer " + gate.TOKEN:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate",
                                     f'Bearer realm="http://127.0.0.1:{gate.port}/token",service="cbtest",'
                                     f'scope="repository:busybox:pull"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                req = urllib.request.Request(f"http://127.0.0.1:{upstream_port}{self.path}",
                                             headers={"Accept": self.headers.get("Accept", "*/*")})
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        body, status, headers = r.read(), r.status, r.headers
                except urllib.error.HTTPError as e:
                    body, status, headers = e.read(), e.code, e.headers
                self.send_response(status)
                for k in ("Content-Type", "Docker-Content-Digest"):
                    if headers.get(k):
                        self.send_header(k, headers[k])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def host(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
