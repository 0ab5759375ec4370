"""The PE fetches its config from `cloudbios.config=https://…` with its own
HTTP client, after DHCP, and checks the server's certificate: a server whose
CA the PE trusts (SSL_CERT_FILE on the kernel command line, the PEM file in
an initramfs appended to the PXE one) gives the config; the same server
against the PE's own CA bundle is refused with the reason on the console,
and the daemon starts with defaults."""
import http.server
import os
import shutil
import ssl
import subprocess
import threading

import pytest

import qemu

BOOT_TIMEOUT = 300  # TCG, nested
CA_IN_PE = "/etc/cloudbios-e2e/ca.pem"


@pytest.fixture
def config_server(tmp_path):
    """An https server on the host's loopback, which QEMU's user network
    shows the guest as 10.0.2.2: its certificate names that address."""
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=cloudbios-e2e-config", "-addext", "subjectAltName=IP:10.0.2.2"],
                   check=True, capture_output=True)
    config = b"version: 1\nhostname: from-https\n"
    seen = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("User-Agent")))
            if self.path != "/pe/cloudbios.yaml":
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(config)))
            self.end_headers()
            self.wfile.write(config)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield {"url": f"https://10.0.2.2:{srv.server_address[1]}/pe/cloudbios.yaml", "cert": cert, "seen": seen}
    srv.shutdown()


def initramfs_with_ca(iso, cert, tmp_path):
    """images/out/initramfs.img (PXE: the core and the payload) after a
    small uncompressed archive holding the CA, as a PXE loader may load two
    (the way early microcode travels)."""
    root = tmp_path / "extra"
    os.makedirs(root / os.path.dirname(CA_IN_PE.lstrip("/")))
    shutil.copy(cert, root / CA_IN_PE.lstrip("/"))
    files = subprocess.run(["find", ".", "-mindepth", "1"], cwd=root, check=True, capture_output=True).stdout
    extra = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=root, input=files, check=True, capture_output=True).stdout
    combined = tmp_path / "initramfs-with-ca.img"
    with open(os.path.join(os.path.dirname(iso), "initramfs.img"), "rb") as f, open(combined, "wb") as out:
        out.write(extra)
        out.write(b"\0" * (-out.tell() % 4))
        shutil.copyfileobj(f, out)
    return str(combined)


def boot(vm_factory, iso, initrd, append, name):
    out = os.path.dirname(iso)
    vm = vm_factory(name=name, kernel=os.path.join(out, "vmlinuz"), initrd=initrd,
                    append="console=ttyS0,115200 " + append, memory=1024)
    vm.start()
    return vm, vm.wait_serial("cloudbios: hostname: ", BOOT_TIMEOUT)


def test_config_from_https_with_a_trusted_certificate(vm_factory, iso, tmp_path, config_server):
    initrd = initramfs_with_ca(iso, config_server["cert"], tmp_path)
    url = config_server["url"]
    vm, log = boot(vm_factory, iso, initrd, f"cloudbios.config={url} SSL_CERT_FILE={CA_IN_PE}", "pe-config-https")
    assert f"cloudbios: config: using /run/cloudbios/config/cloudbios.yaml from {url}" in log, log[-3000:]
    assert "cloudbios: hostname: from-https" in vm.wait_serial("cloudbios: hostname: from-https", 30)
    assert ("/pe/cloudbios.yaml", "cloudbios") in config_server["seen"]


def test_config_from_https_with_an_unknown_issuer_is_refused(vm_factory, iso, tmp_path, config_server):
    url = config_server["url"]
    vm, log = boot(vm_factory, iso, os.path.join(os.path.dirname(iso), "initramfs.img"), f"cloudbios.config={url}",
                   "pe-config-untrusted")
    assert (f"cloudbios: config: ERROR: cannot download the config from {url}: TLS handshake failed: "
            "The certificate is NOT trusted. The certificate issuer is unknown.") in log, log[-3000:]
    assert "cloudbios: hostname: cloudbios" in log
    # refused during the handshake: no request was ever sent
    assert config_server["seen"] == []
