"""The daemon on the host, driven over its REST API: upload the tiny guest,
create and start it under TCG, see its serial output and its screen,
pause/resume, kill -9 the daemon and find the VM running and reattached,
stop, delete. Bounded: each test well under 3 minutes."""
import json
import os
import shutil
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from cbdaemon import Daemon, alive, colour_share, guest  # noqa: E402
from promtool import promtool_problems  # noqa: E402

BLUE = (0x1E, 0x90, 0xFF)


@pytest.fixture
def daemon():
    d = Daemon()
    yield d
    d.teardown()


def state(d, vm):
    return d.json("GET", f"/api/v1/vms/{vm}")["state"]


def test_vm_lifecycle_over_api_survives_daemon_kill(daemon):
    kernel, initrd = guest()
    first = daemon.start()
    daemon.login()

    st, img = daemon.upload("tiny-kernel", kernel)
    assert st in (200, 201) and img["size"] == os.path.getsize(kernel)
    st, _ = daemon.upload("tiny-initrd", initrd)
    assert st in (200, 201)
    names = [i["name"] for i in daemon.json("GET", "/api/v1/images")]
    assert names == ["tiny-initrd", "tiny-kernel"]

    spec = {"name": "tiny", "memory": 256, "kernel": "tiny-kernel", "initrd": "tiny-initrd",
            "append": "console=ttyS0 vga=0x344 quiet", "network": "nat"}
    st, body, _ = daemon.request("POST", "/api/v1/vms", spec)
    assert st in (200, 201), body
    assert state(daemon, "tiny") == "stopped"

    t0 = time.time()
    vm = daemon.json("POST", "/api/v1/vms/tiny/start")
    assert vm["state"] == "running"
    assert vm["accel_in_use"] in ("tcg", "kvm")
    pid = vm["pid"]
    assert daemon.wait_serial("tiny", "CLOUDBIOS-GUEST-READY", 90), "guest never reached READY"
    print(f"start to READY: {time.time() - t0:.1f} s")

    # in use: the image cannot go, the running VM cannot be deleted; its
    # definition can change, and what cannot change live waits for the next start
    assert daemon.request("DELETE", "/api/v1/images/tiny-kernel")[0] == 409
    assert daemon.request("DELETE", "/api/v1/vms/tiny")[0] == 409
    st, body, _ = daemon.request("PUT", "/api/v1/vms/tiny", dict(spec, memory=512))
    assert st == 200 and "next start" in json.loads(body).get("message", ""), body

    # the screen: a PNG of the guest's display (checked at the end, so the
    # rest of the lifecycle is verified even when the display is wrong)
    assert daemon.wait_serial("tiny", "CLOUDBIOS-GUEST-PAINTED", 30)
    share, size = 0.0, None
    for _ in range(10):
        st, png, hdr = daemon.request("GET", "/api/v1/vms/tiny/screenshot")
        assert st == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
        share, w, h = colour_share(png, BLUE)
        size = (w, h)
        if share > 0.9:
            break
        time.sleep(1)
    assert size == (1024, 768)   # the VESA mode the guest asks for (vga=0x344)

    assert daemon.json("POST", "/api/v1/vms/tiny/pause")["state"] == "paused"
    assert state(daemon, "tiny") == "paused"
    assert daemon.json("POST", "/api/v1/vms/tiny/resume")["state"] == "running"

    # kill -9 the daemon: the guest keeps running and a new daemon reattaches
    daemon.kill9(first)
    assert alive(pid)
    daemon.start()
    vm = daemon.json("GET", "/api/v1/vms/tiny")
    assert vm["state"] == "running" and vm["pid"] == pid
    assert daemon.json("POST", "/api/v1/vms/tiny/pause")["state"] == "paused"   # QMP works again
    assert daemon.json("POST", "/api/v1/vms/tiny/resume")["state"] == "running"

    metrics = daemon.request("GET", "/metrics")[1].decode()
    assert 'cloudbios_vm_state{vm="tiny",state="running"} 1' in metrics
    assert 'cloudbios_vm_cpu_seconds_total{vm="tiny"}' in metrics
    problems = promtool_problems(metrics)
    assert not problems, "promtool check metrics:\n" + problems

    assert daemon.json("POST", "/api/v1/vms/tiny/stop")["state"] == "stopped"
    assert not alive(pid)
    assert not os.path.exists(os.path.join(daemon.state, "run", "tiny", "qmp.sock"))
    assert daemon.request("DELETE", "/api/v1/vms/tiny")[0] in (200, 204)
    assert daemon.request("GET", "/api/v1/vms/tiny")[0] == 404
    assert daemon.request("DELETE", "/api/v1/images/tiny-kernel")[0] in (200, 204)
    assert share > 0.9, f"only {share:.0%} of the screen is #1E90FF"


def test_crashed_qemu_is_reported(daemon):
    kernel, initrd = guest()
    daemon.start()
    daemon.login()
    daemon.upload("k", kernel)
    daemon.upload("i", initrd)
    st, body, _ = daemon.request("POST", "/api/v1/vms", {"name": "c", "memory": 128, "kernel": "k", "initrd": "i", "network": "none"})
    assert st in (200, 201), body
    pid = daemon.json("POST", "/api/v1/vms/c/start")["pid"]
    os.kill(pid, 9)
    deadline = time.time() + 15
    while time.time() < deadline and state(daemon, "c") != "crashed":
        time.sleep(0.2)
    vm = daemon.json("GET", "/api/v1/vms/c")
    assert vm["state"] == "crashed" and "unexpectedly" in vm.get("message", "")
    # a crashed VM starts again
    assert daemon.json("POST", "/api/v1/vms/c/start")["state"] == "running"
    assert daemon.json("POST", "/api/v1/vms/c/stop")["state"] == "stopped"


def test_autostart_in_order_and_config_images(daemon):
    kernel, initrd = guest()
    d = Daemon(extra_config=f"""images:
  - name: tiny-kernel
    file: {kernel}
  - name: tiny-initrd
    file: {initrd}
vms:
  - name: second
    memory: 128
    kernel: tiny-kernel
    initrd: tiny-initrd
    network: none
    autostart: true
    order: 2
  - name: first
    memory: 128
    kernel: tiny-kernel
    initrd: tiny-initrd
    network: none
    autostart: true
    order: 1
  - name: manual
    memory: 128
    kernel: tiny-kernel
""")
    try:
        d.start(timeout=60)
        d.login()
        deadline = time.time() + 60   # the panel answers while autostart is still starting VMs
        while True:
            vms = {v["name"]: v for v in d.json("GET", "/api/v1/vms")}
            if vms["second"]["state"] != "stopped" and vms["second"]["state"] != "starting" or time.time() > deadline:
                break
            time.sleep(0.2)
        assert vms["first"]["state"] == "running" and vms["second"]["state"] == "running"
        assert vms["manual"]["state"] == "stopped"
        assert vms["first"]["pid"] < vms["second"]["pid"]   # started in order
        images = {i["name"]: i for i in d.json("GET", "/api/v1/images")}
        assert images["tiny-kernel"]["size"] == os.path.getsize(kernel)
        assert sorted(images["tiny-kernel"]["in_use_by"]) == ["first", "manual", "second"]
        log = open(d.log).read()
        assert "KVM" in log   # the accelerator decision is visible
    finally:
        d.teardown()


def test_missing_images_are_refused_and_config_vms_say_what_they_lack():
    """A VM naming an image that is not in the store is refused with 422
    naming it (POST and PUT); a config VM whose image failed to import is
    defined, stays stopped and says which image is missing and why."""
    import json
    kernel, initrd = guest()
    d = Daemon(extra_config=f"""images:
  - name: tiny-kernel
    file: {kernel}
  - name: lost-initrd
    file: /nonexistent/initrd.img
vms:
  - name: cfg
    memory: 128
    kernel: tiny-kernel
    initrd: lost-initrd
    network: none
    autostart: true
""")
    try:
        d.start(timeout=60)
        d.login()
        vm = d.json("GET", "/api/v1/vms/cfg")
        assert vm["state"] == "stopped", vm
        assert "needs image 'lost-initrd', which is not in the image store" in vm.get("message", ""), vm
        assert "/nonexistent/initrd.img does not exist" in vm["message"], vm
        st, body, _ = d.request("POST", "/api/v1/vms/cfg/start")
        assert st == 422 and b"lost-initrd" in body, (st, body)
        assert d.request("GET", "/api/v1/vms/cfg")[0] == 200   # the daemon is alive, the VM still there

        spec = {"name": "api", "memory": 128, "kernel": "tiny-kernel", "initrd": "nope-initrd", "network": "none"}
        st, body, _ = d.request("POST", "/api/v1/vms", spec)
        assert st == 422, (st, body)
        assert json.loads(body)["error"] == "needs image 'nope-initrd', which is not in the image store"
        no_initrd = {k: v for k, v in spec.items() if k != "initrd"}
        for extra in ({"cdrom": "no-such.iso"}, {"disks": [{"size": "1G"}, {"image": "no-such.qcow2"}]}):
            st, body, _ = d.request("POST", "/api/v1/vms", dict(no_initrd, **extra))
            missing = extra.get("cdrom") or "no-such.qcow2"
            assert st == 422 and f"'{missing}'".encode() in body, (st, body)
        assert d.request("GET", "/api/v1/vms/api")[0] == 404   # nothing was created

        st, body, _ = d.request("POST", "/api/v1/vms", no_initrd)
        assert st in (200, 201), body
        st, body, _ = d.request("PUT", "/api/v1/vms/api", dict(no_initrd, cdrom="no-such.iso"))
        assert st == 422 and b"'no-such.iso'" in body, (st, body)
        assert "cdrom" not in d.json("GET", "/api/v1/vms/api")   # unchanged
    finally:
        d.teardown()


def test_config_file_vms_against_api_edits_across_restarts():
    """The config file owns a VM's definition only when its entry changes:
    an edit made in the panel lasts across daemon restarts, a VM deleted in
    the panel stays deleted, and changing the file's entry applies it (and
    brings the deleted VM back)."""
    def config(web_memory, db_memory):
        return f"""vms:
  - name: web
    memory: {web_memory}
    network: none
  - name: db
    memory: {db_memory}
    network: none
"""
    d = Daemon(extra_config=config(256, 256))

    def restart(new_config=None):
        for p in d.procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=30)
        if new_config is not None:
            text = open(d.config).read()
            with open(d.config, "w") as f:
                f.write(text[:text.index("vms:")] + new_config)
        d.start(timeout=60)
        d.login()
    try:
        d.start(timeout=60)
        d.login()
        web = d.json("GET", "/api/v1/vms/web")
        d.json("PUT", "/api/v1/vms/web", dict(web, memory=512))
        assert d.request("DELETE", "/api/v1/vms/db")[0] == 204
        for _ in range(2):
            restart()
            assert d.json("GET", "/api/v1/vms/web")["memory"] == 512
            assert d.request("GET", "/api/v1/vms/db")[0] == 404
        # the file's entries change: both apply
        restart(config(1024, 384))
        assert d.json("GET", "/api/v1/vms/web")["memory"] == 1024
        assert d.json("GET", "/api/v1/vms/db")["memory"] == 384
        log = open(d.log).read()
        assert "VM web: its entry in the config file changed; definition updated" in log, log[-3000:]
    finally:
        d.teardown()


def test_https_image_urls_in_the_config(tmp_path):
    """`images: [{url: https://…}]` is fetched over TLS with the certificate
    checked (SSL_CERT_FILE names the CA here); a server whose certificate
    does not name the host is refused and the VM using that image says so."""
    import hashlib
    import socket
    import subprocess
    from cbdaemon import free_port
    kernel, _ = guest()
    www = tmp_path / "www"
    www.mkdir()
    shutil.copy(kernel, www / "vmlinuz")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True, timeout=60)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", """
import functools, http.server, ssl, sys
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
s = http.server.HTTPServer(("127.0.0.1", int(sys.argv[2])), h)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
c.load_cert_chain(sys.argv[3], sys.argv[4])
s.socket = c.wrap_socket(s.socket, server_side=True)
s.serve_forever()
""", str(www), str(port), str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    digest = hashlib.sha256(open(kernel, "rb").read()).hexdigest()
    d = Daemon(env={"SSL_CERT_FILE": str(tmp_path / "cert.pem")}, extra_config=f"""images:
  - name: web-kernel
    url: https://localhost:{port}/vmlinuz
    sha256: "{digest}"
  - name: wrong-name
    url: https://127.0.0.1:{port}/vmlinuz
vms:
  - name: w
    memory: 128
    kernel: wrong-name
    network: none
""")
    try:
        deadline = time.time() + 10
        while time.time() < deadline:   # the server needs a moment to listen
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        d.start(timeout=60)
        d.login()
        # the downloads run after the panel answers: wait for them to end
        deadline = time.time() + 60
        while time.time() < deadline:
            images = {i["name"]: i for i in d.json("GET", "/api/v1/images")}
            vm = d.json("GET", "/api/v1/vms/w")
            if "web-kernel" in images and "does not match" in vm.get("message", ""):
                break
            time.sleep(0.5)
        assert images["web-kernel"]["size"] == os.path.getsize(kernel) and images["web-kernel"]["sha256"] == digest
        assert "wrong-name" not in images
        assert "needs image 'wrong-name'" in vm["message"] and "does not match" in vm["message"], vm
    finally:
        d.teardown()
        server.kill()
        server.wait()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("dnsmasq")
                    or not shutil.which("nft") or not shutil.which("nsenter"),
                    reason="needs root, unshare, nsenter, dnsmasq and nft")
def test_nat_bridge_in_a_private_network_namespace():
    """`--nat bridge` builds cbnat0 with DHCP and masquerading (nftables) and
    puts each nat VM's tap on it; a machine on cbnat0 reaches an outside
    address with the uplink's address as its source. Without it, nat falls
    back to QEMU user networking and the VM says so.
    Runs in namespaces of its own: the host's network is never touched."""
    import subprocess
    import tempfile
    from cbdaemon import binary, password_hash
    kernel, _ = guest()
    d = tempfile.mkdtemp(prefix="cbnat-", dir="/tmp")
    try:
        r = subprocess.run(["unshare", "-nm", "sh", os.path.join(os.path.dirname(__file__), "vm_nat_netns.sh"),
                            binary(), d, os.path.dirname(kernel), password_hash("pw")],
                           capture_output=True, text=True, timeout=200)
        facts = dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l)
        assert "QEMUusernetworking" in facts.get("AUTO_STATUS", ""), r.stdout + r.stderr
        assert facts.get("BRIDGE_ADDR") == "10.213.0.1/24", r.stdout + r.stderr
        assert facts.get("TAP", "").startswith("cbt") and facts.get("TAP_MASTER") == "cbnat0"
        assert facts.get("DHCP_ALIVE") == "yes"
        assert '"state":"running"' in facts.get("BRIDGE_STATUS", "") and "usernetworking" not in facts["BRIDGE_STATUS"]
        assert facts.get("TAP_AFTER_STOP") == "0"
        # masquerading: the outside sees the uplink's address, and only thanks to the table
        assert facts.get("IP_FORWARD") == "1", r.stdout
        assert facts.get("NFT_MASQ_RULES") == "1", r.stdout
        assert facts.get("NAT_SEEN_SOURCE") == "198.51.100.2", r.stdout + r.stderr
        # a real guest: a lease from the daemon's DHCP server, then out through the masquerade
        lease = facts.get("GUEST_LEASE", "").split()
        assert len(lease) == 4 and lease[1].startswith("10.213.0.") and lease[3] == "10.213.0.1", r.stdout + r.stderr
        assert facts.get("GUEST_SEEN_SOURCE") == "198.51.100.2", r.stdout + r.stderr
        assert facts.get("NO_MASQ_SEEN_SOURCE") == "fail", r.stdout
        # a daemon that exits with no guest left removes the bridge, the table and the DHCP server
        assert (facts.get("EXIT_BRIDGE"), facts.get("EXIT_NFT"), facts.get("EXIT_DHCP")) == ("gone", "gone", "gone"), r.stdout
        assert facts.get("RESTART_MASQ_RULES") == "1", r.stdout
        assert facts.get("RESTART_SEEN_SOURCE") == "198.51.100.2", r.stdout
        # forwards of host ports to a nat VM's fixed address: from outside and from the host itself
        assert facts.get("RESTART_DNAT_RULES") == "2", r.stdout  # prerouting and output
        assert facts.get("FWD_ADDR", "").startswith("10.213.0.") and facts.get("FWD_DHCP_HOST") == "1", r.stdout
        assert facts.get("FWD_FROM_OUTSIDE") == "guest-f1", r.stdout + r.stderr
        assert facts.get("FWD_FROM_HOST") == "guest-f1", r.stdout + r.stderr
        # the gateway's MAC stays put while taps come and go (guests' ARP caches stay right)
        assert facts.get("BRIDGE_MAC") == facts.get("RESTART_BRIDGE_MAC") == "02:cb:0a:d5:00:01", r.stdout
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter")
                    or not shutil.which("busybox"),
                    reason="needs root, unshare, nsenter and busybox (ping)")
@pytest.mark.parametrize("port_key", ["", "eth0"], ids=["default-route-nic", "bridge_port"])
def test_bridge_vmbr0_over_the_nic_in_a_private_network_namespace(port_key):
    """`network: bridge` builds vmbr0 over the NIC (found by its default
    route, or network.bridge_port), moving its address and routes onto the
    bridge: the host stays reachable from the LAN at its address and the VM's
    tap is a port of vmbr0. A veth pair between two namespaces of the test's
    own stands in for the NIC and the LAN: the host's network is never touched."""
    import subprocess
    import tempfile
    from cbdaemon import binary, password_hash
    kernel, _ = guest()
    d = tempfile.mkdtemp(prefix="cbbr-", dir="/tmp")
    try:
        r = subprocess.run(["unshare", "-nm", "sh", os.path.join(os.path.dirname(__file__), "vm_bridge_netns.sh"),
                            binary(), d, os.path.dirname(kernel), password_hash("pw"), port_key],
                           capture_output=True, text=True, timeout=150)
        facts = dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l)
        out = r.stdout + r.stderr + (open(os.path.join(d, "daemon.log")).read() if os.path.exists(os.path.join(d, "daemon.log")) else "")
        assert '"state":"running"' in facts.get("STATUS", ""), out
        assert facts.get("TAP", "").startswith("cbt") and facts.get("TAP_MASTER") == "vmbr0", out
        assert facts.get("NIC_MASTER") == "vmbr0", out
        assert facts.get("BRIDGE_ADDR") == "192.0.2.10/24" and facts.get("NIC_ADDR", "") == "", out
        assert facts.get("BRIDGE_MAC") == facts.get("MAC_BEFORE"), out
        assert facts.get("DEFAULT_ROUTE") == "default via 192.0.2.1 dev vmbr0", out
        assert facts.get("STATIC_ROUTE") == "203.0.113.0/24 via 192.0.2.254 dev vmbr0", out
        assert facts.get("LAN_HEALTH") == "200", out
        assert facts.get("GATEWAY") == "ok", out
        if shutil.which("dnsmasq"):
            # a real guest on vmbr0 is on the LAN: the LAN's lease, its own address seen there (no NAT)
            lease = facts.get("GUEST_LEASE", "").split()
            assert len(lease) == 4 and lease[1].startswith("192.0.2.1") and lease[3] == "192.0.2.1", out
            assert facts.get("GUEST_SEEN_SOURCE") == lease[1], out
        assert facts.get("TAP_AFTER_STOP") == "0", out
        assert facts.get("RESTART_BRIDGE_ADDR") == "192.0.2.10/24", out
        assert facts.get("RESTART_TAP_MASTER") == "vmbr0", out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_vm_cli_over_tls(daemon):
    """`cloudbios vm …` is a client of the daemon: TLS with the daemon's own
    certificate, a login with --user, readable tables and --json."""
    import json
    import subprocess
    from cbdaemon import PASSWORD, binary
    kernel, initrd = guest()
    daemon.start()
    daemon.login()
    daemon.upload("tiny-kernel", kernel)
    daemon.upload("tiny-initrd", initrd)
    env = dict(os.environ, CLOUDBIOS_PASSWORD=PASSWORD)
    env.pop("CLOUDBIOS_TOKEN", None)

    def cli(*args, ok=True):
        r = subprocess.run([binary(), "vm", *args, "--url", daemon.url, "--state-dir", daemon.state, "--user", "admin"],
                           capture_output=True, text=True, env=env, timeout=60)
        assert (r.returncode == 0) == ok, r.stdout + r.stderr
        return r.stdout + r.stderr

    assert "cli-vm: stopped" in cli("create", "cli-vm", "--memory", "128", "--kernel", "tiny-kernel",
                                    "--initrd", "tiny-initrd", "--network", "none")
    table = cli("list").splitlines()
    assert table[0].split()[:3] == ["NAME", "STATE", "MEMORY"]
    assert table[1].split()[:3] == ["cli-vm", "stopped", "128M"]
    assert "cli-vm: running" in cli("start", "cli-vm")
    # serial --follow keeps printing what the booting guest writes
    follow = subprocess.Popen([binary(), "vm", "serial", "--follow", "cli-vm", "--url", daemon.url, "--state-dir", daemon.state,
                               "--user", "admin"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    seen = b""
    import select
    import time as _time
    deadline = _time.time() + 90
    while b"CLOUDBIOS-GUEST-READY" not in seen and _time.time() < deadline and follow.poll() is None:
        if select.select([follow.stdout], [], [], 1)[0]:
            seen += os.read(follow.stdout.fileno(), 65536)
    follow.kill()
    follow.wait()
    assert b"CLOUDBIOS-GUEST-READY" in seen, seen[-2000:]
    # vm terminal: the serial console both ways, as a person uses it: a real
    # terminal, raw while attached, Ctrl-] leaves (and closes the console cleanly)
    term_args = [binary(), "vm", "terminal", "cli-vm", "--url", daemon.url, "--state-dir", daemon.state, "--user", "admin"]
    import pty
    master, slave = pty.openpty()
    term = subprocess.Popen(term_args, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    seen = b""
    deadline = _time.time() + 60
    step = "connect"
    while _time.time() < deadline:
        if step == "connect" and b"Ctrl-] leaves" in seen:
            os.write(master, b"pty-line\r")
            step = "typed"
        if step == "typed" and b"serial-typed: pty-line" in seen:
            os.write(master, b"\x1d")
            step = "left"
        if select.select([master], [], [], 1)[0]:
            try:
                seen += os.read(master, 65536)
            except OSError:
                break
        if term.poll() is not None and not select.select([master], [], [], 0)[0]:
            break
    try:
        rc = term.wait(timeout=30)
    except subprocess.TimeoutExpired:
        term.kill()
        rc = term.wait()
    os.close(master)
    assert step == "left" and rc == 0, (rc, seen[-2000:])
    # raw while attached: the line shows twice (the guest's echo, its answer),
    # never a third time from the local terminal's own echo
    assert seen.count(b"pty-line") == 2, seen[-2000:]
    assert b"Left cli-vm's serial console" in seen, seen[-2000:]
    # then with piped input, sent as it comes
    term = subprocess.Popen(term_args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    term.stdin.write(b"hello-terminal\n")
    term.stdin.flush()
    seen = b""
    deadline = _time.time() + 60
    while b"serial-typed: hello-terminal" not in seen and _time.time() < deadline and term.poll() is None:
        if select.select([term.stdout], [], [], 1)[0]:
            seen += os.read(term.stdout.fileno(), 65536)
    term.kill()
    term.wait()
    assert b"serial-typed: hello-terminal" in seen, seen[-2000:]
    listed = json.loads(cli("list", "--json"))
    assert listed[0]["name"] == "cli-vm" and listed[0]["state"] == "running"
    assert "already running" in cli("start", "cli-vm", ok=False)
    assert "cli-vm: paused" in cli("pause", "cli-vm")
    assert "cli-vm: running" in cli("resume", "cli-vm")
    assert "cli-vm: stopped" in cli("stop", "cli-vm")
    assert "not running" in cli("terminal", "cli-vm", ok=False)
    assert "cli-vm: deleted" in cli("delete", "cli-vm")
    assert "no VM named" in cli("start", "cli-vm", ok=False)
    assert "VM name" in cli("start", "../x", ok=False)
    # without the daemon's certificate and without --insecure, TLS is refused
    r = subprocess.run([binary(), "vm", "list", "--url", daemon.url, "--state-dir", "/nonexistent", "--user", "admin"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode != 0 and "TLS" in r.stderr


def test_cli_login_once_then_cloudbios_url(daemon, tmp_path):
    """`cloudbios login` keeps the session (0600, under $HOME): later
    commands need no --url, --user or password; CLOUDBIOS_URL picks the
    daemon; errors about a body the CLI built carry no JSON position."""
    import stat
    import subprocess
    from cbdaemon import PASSWORD, binary
    daemon.start()
    env = dict(os.environ, HOME=str(tmp_path), CLOUDBIOS_PASSWORD=PASSWORD)
    for k in ("CLOUDBIOS_TOKEN", "CLOUDBIOS_URL"):
        env.pop(k, None)

    def run(*args, extra=None, ok=True):
        r = subprocess.run([binary(), *args], capture_output=True, text=True, env=dict(env, **(extra or {})), timeout=60)
        assert (r.returncode == 0) == ok, r.stdout + r.stderr
        return r.stdout + r.stderr

    # nothing saved and nothing said: not authenticated, with the way out named
    assert "cloudbios login" in run("vm", "list", "--state-dir", daemon.state,
                                    extra={"CLOUDBIOS_URL": daemon.url}, ok=False)
    assert "logged in to " + daemon.url in run("login", "--url", daemon.url, "--state-dir", daemon.state, "--user", "admin")
    saved = tmp_path / ".config" / "cloudbios" / "login"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert "NAME" in run("vm", "list", "--state-dir", daemon.state)
    out = run("vm", "create", "bad-mem", "--memory", "1", "--state-dir", daemon.state, ok=False)
    assert "body:" not in out and "memory" in out, out


def test_image_import_from_a_url_is_a_task_with_progress(daemon, tmp_path):
    """POST /api/v1/images/{name}/import downloads from a URL in the
    background: redirects followed, progress reported, the sha256 checked,
    the image's format read; a wrong hash fails the task and keeps nothing."""
    import hashlib
    import http.server
    import json
    import subprocess
    import threading
    import time
    img = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(img), "64M"], check=True)
    with open(img, "ab") as f:
        f.write(os.urandom(4 << 20))  # a body of some size, so progress moves
    data = img.read_bytes()
    sha = hashlib.sha256(data).hexdigest()

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "/disk.qcow2")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for i in range(0, len(data), 1 << 16):
                self.wfile.write(data[i:i + (1 << 16)])

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    daemon.start()
    daemon.login()

    def wait(task):
        deadline = time.time() + 60
        while time.time() < deadline:
            t = daemon.json("GET", "/api/v1/tasks/" + task["id"])
            if t["state"] in ("succeeded", "failed"):
                return t
            time.sleep(0.2)
        raise AssertionError(t)
    try:
        t = daemon.json("POST", "/api/v1/images/cloud/import", {"url": base + "/moved", "sha256": sha}, expect=202)
        assert t["id"].startswith("import-") and t["state"] in ("pending", "running")
        done = wait(t)
        assert done["state"] == "succeeded" and done["progress"] == 100, done
        img_info = [i for i in daemon.json("GET", "/api/v1/images") if i["name"] == "cloud"][0]
        assert img_info["sha256"] == sha and img_info["format"] == "qcow2" and img_info["virtual_size"] == 64 << 20
        bad = wait(daemon.json("POST", "/api/v1/images/other/import", {"url": base + "/disk.qcow2", "sha256": "0" * 64}, expect=202))
        assert bad["state"] == "failed" and "expected " + "0" * 64 in bad["message"], bad
        assert "other" not in [i["name"] for i in daemon.json("GET", "/api/v1/images")]
        for body in ({"url": "ftp://x/y"}, {"url": base, "sha256": "xyz"}):
            st, raw, _ = daemon.request("POST", "/api/v1/images/x/import", body)
            assert st == 422, raw
        st, raw, _ = daemon.request("POST", "/api/v1/images/x/import", {"url": base, "extra": 1})
        assert st == 400, raw
    finally:
        srv.shutdown()


def test_system_routes_leave_a_host_that_is_not_cloudbios_alone(daemon):
    """Reboot, shutdown and the display switch act only under CloudBIOS's
    own PID 1 (the PE, an installed system): on another host they are
    refused with 409 and the host keeps running; bad bodies are 400."""
    daemon.start()
    daemon.login()
    for action in ("reboot", "shutdown"):
        st, body, _ = daemon.request("POST", f"/api/v1/system/{action}")
        assert st == 409 and b"not run by CloudBIOS" in body, (action, st, body)
    st, body, _ = daemon.request("POST", "/api/v1/system/display", {"vm": None})
    assert st == 409, body
    st, body, _ = daemon.request("POST", "/api/v1/system/display", {"vm": "Bad Name"})
    assert st == 400, body
    st, body, _ = daemon.request("POST", "/api/v1/system/display", {"screen": 1})
    assert st == 400 and b"unknown key" in body, body
    st, body, _ = daemon.request("POST", "/api/v1/system/explode")
    assert st == 404, body
    assert daemon.request("GET", "/api/v1/health")[0] == 200
