"""The fleet on one machine: three nodes, each a network namespace on one
bridge running `cloudbios daemon` with its own state dir and etcd member.
The fleet forms over TLS (its trust derived from the shared token), every
node shows every node up, and a node killed whole (every process in its
namespace) is shown down by the others within a minute."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import cbdaemon  # noqa: E402

BRIDGE = "cbfleet0"
NET = "10.231.77"
HOST = f"{NET}.1"
PORT = 18480
TOKEN = "e2e-fleet-token-0123456789"
NAMES = ["node1", "node2", "node3"]



def sh(*argv, check=True):
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, timeout=30)


class Node:
    def __init__(self, i, root, password_hash, members=None):
        self.name = NAMES[i] if i < len(NAMES) else f"node{i + 1}"
        self.ns = f"cbfleet-{self.name}"
        self.address = f"{NET}.{11 + i}"
        self.dir = os.path.join(root, self.name)
        os.makedirs(self.dir)
        self.config = os.path.join(self.dir, "cloudbios.yaml")
        members = members or ", ".join(f"{NET}.{11 + j}" for j in range(len(NAMES)))
        # node2 and node3 both define one config-file VM to autostart: the fleet lets one of them run it
        kernel, initrd = cbdaemon.guest()
        shared = "" if i == 0 or i >= len(NAMES) else f"""images:
  - {{name: ck, file: {kernel}}}
  - {{name: ci, file: {initrd}}}
vms:
  - {{name: cfgvm, memory: 128, kernel: ck, initrd: ci, network: none, append: console=ttyS0, autostart: true}}
"""
        with open(self.config, "w") as f:
            f.write(f"""version: 1
panel:
  listen: "0.0.0.0:{PORT}"
  tls: "off"
  users: [{{name: admin, password_hash: "{password_hash}"}}]
cluster:
  name: e2e
  node: {self.name}
  address: {self.address}
  members: [{members}]
  token: "{TOKEN}"
""" + shared)
        self.log = os.path.join(self.dir, "daemon.log")
        # GRUB's per-VM entries, as the node's boot stick would hold them
        self.menu = os.path.join(self.dir, "boot-menu.cfg")
        self.proc = None
        self.token = None

    @property
    def url(self):
        return f"http://{self.address}:{PORT}"

    def start(self):
        logf = open(self.log, "a")
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, cbdaemon.binary(), "daemon", "--config", self.config,
                                      "--state-dir", os.path.join(self.dir, "s"), "--nat", "user", "--boot-menu", self.menu],
                                     stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)

    def request(self, method, path, body=None, timeout=10):
        h = {"Content-Type": "application/json"} if body is not None else {}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        req = urllib.request.Request(self.url + path, data=None if body is None else json.dumps(body).encode(),
                                     method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def upload(self, name, path):
        with open(path, "rb") as f:
            data = f.read()
        req = urllib.request.Request(self.url + f"/api/v1/images/{name}", data=data, method="PUT",
                                     headers={"Authorization": "Bearer " + self.token, "Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status in (200, 201), r.status

    def wait_up(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {open(self.log).read()[-2000:]}")
            try:
                if self.request("GET", "/api/v1/health")[0] == 200:
                    st, b = self.request("POST", "/api/v1/login", {"user": "admin", "password": cbdaemon.PASSWORD})
                    assert st == 200, b
                    self.token = json.loads(b)["token"]
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer: {open(self.log).read()[-2000:]}")

    def nodes(self):
        st, b = self.request("GET", "/api/v1/nodes")
        return st, (json.loads(b) if st == 200 else b)

    def pids(self):
        r = sh("ip", "netns", "pids", self.ns, check=False)
        return [int(p) for p in r.stdout.split()]

    def kill_all(self):
        """Every process in the node's namespace, at once (a node that dies)."""
        for p in self.pids():
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass


def wait_for(what, check, timeout, every=0.5):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = check()
        if last is True:
            return time.time()
        time.sleep(every)
    raise AssertionError(f"{what} within {timeout} s; last: {last}")


def plug(n, i):
    """The node's namespace, on the bridge at its address."""
    sh("ip", "netns", "add", n.ns)
    sh("ip", "link", "add", f"cbfl{i}", "type", "veth", "peer", "name", "eth0", "netns", n.ns)
    sh("ip", "link", "set", f"cbfl{i}", "master", BRIDGE, "up")
    sh("ip", "netns", "exec", n.ns, "sh", "-c",
       f"ip link set lo up && ip addr add {n.address}/24 dev eth0 && ip link set eth0 up && ip route add default via {HOST}")


@pytest.fixture(scope="module")
def fleet():
    assert shutil.which("etcd"), "etcd is not installed (scripts/lib/deps.sh test installs Debian's etcd-server)"
    root = tempfile.mkdtemp(prefix="cbfleet-", dir="/tmp")
    nodes = [Node(i, root, cbdaemon.password_hash(cbdaemon.PASSWORD)) for i in range(len(NAMES))]
    for n in nodes:
        sh("ip", "netns", "del", n.ns, check=False)
    sh("ip", "link", "del", BRIDGE, check=False)
    try:
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", f"{HOST}/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        for i, n in enumerate(nodes):
            plug(n, i)
        for n in nodes:
            n.start()
        for n in nodes:
            n.wait_up()
        yield nodes
    finally:
        for n in list(nodes):
            n.kill_all()
            if n.proc:
                try:
                    n.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        for n in nodes:
            sh("ip", "netns", "del", n.ns, check=False)
        sh("ip", "link", "del", BRIDGE, check=False)
        if os.environ.get("CLOUDBIOS_KEEP_FLEET"):
            print("fleet files kept in", root)
        else:
            shutil.rmtree(root, ignore_errors=True)


def netns_inode(name):
    return os.stat(f"/run/netns/{name}").st_ino


def listed(n, vm):
    st, body = n.request("GET", "/api/v1/vms")
    assert st == 200, (st, body)
    return {x["name"]: x for x in json.loads(body)}.get(vm)


def up_everywhere(nodes, expected):
    def check():
        seen = {}
        for n in nodes:
            st, body = n.nodes()
            if st != 200:
                return f"{n.name}: {st} {body[:200]!r}"
            seen[n.name] = {x["name"]: x["state"] for x in body}
            if seen[n.name] != expected:
                return seen
        return True
    return check


def test_the_fleet_forms_with_three_nodes_up(fleet):
    expected = {n.name: "up" for n in fleet}
    wait_for("every node shows three nodes up", up_everywhere(fleet, expected), 90)
    st, body = fleet[0].nodes()
    by_name = {x["name"]: x for x in body}
    for n in fleet:
        x = by_name[n.name]
        assert x["address"] == n.address
        assert x["cpus"] >= 1 and x["memory"] > 0 and 0 < x["memory_free"] <= x["memory"], x
        assert x["vms"] == (0 if n.name == "node1" else 1), x  # cfgvm, defined by node2's and node3's config files
        # each node's etcd member runs in its own namespace, beside its daemon
        comms = {open(f"/proc/{p}/comm").read().strip() for p in n.pids() if os.path.exists(f"/proc/{p}/comm")}
        assert "etcd" in comms, comms


def test_a_config_file_vm_on_two_nodes_is_autostarted_on_one(fleet):
    """node2 and node3 both define cfgvm with autostart: each claims it
    before starting it, so exactly one runs it, and every node names it."""
    def one():
        q = qemus_of(fleet, "cfgvm")
        return True if len(q) == 1 else q
    wait_for("cfgvm running on one node", one, 90)
    time.sleep(3)
    q = qemus_of(fleet, "cfgvm")
    assert len(q) == 1 and q[0][0] in ("node2", "node3"), q
    for n in fleet:
        x = listed(n, "cfgvm")
        assert x["node"] == q[0][0] and x["state"] == "running", (n.name, x)
    st, body = fleet[0].request("POST", "/api/v1/vms/cfgvm/stop", timeout=60)
    assert st == 200, (st, body)


def test_etcd_speaks_only_tls_with_the_fleets_certificates(fleet):
    n = fleet[0]
    # the peer port, on the fleet's network, refuses plain HTTP and a client without the fleet's certificate
    plain = sh("ip", "netns", "exec", fleet[1].ns, "curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
               f"http://{n.address}:2380/members", check=False)
    assert plain.returncode != 0 and plain.stdout == "000", plain  # no HTTP answer at all
    anonymous = sh("ip", "netns", "exec", fleet[1].ns, "curl", "-sk", "--http1.1", "-m", "5", f"https://{n.address}:2380/members",
                   check=False)
    assert anonymous.returncode != 0 and "peerURLs" not in anonymous.stdout, anonymous
    # the client port is on loopback only
    outside = sh("ip", "netns", "exec", fleet[1].ns, "curl", "-sk", "-m", "5", f"https://{n.address}:2379/version", check=False)
    assert outside.returncode == 7, outside  # connection refused
    # (peers holding the fleet's certificates are answered: the fleet formed over this port)


def open_nodes_page(d, n):
    """Logs the browser in to node n's panel and opens its Nodes page (the
    waits are browser.wait's: an element not drawn yet is looked for again)."""
    import browser as chrome
    d.get(n.url + "/")
    chrome.wait(d, lambda b: chrome.el(b, "#login-user").is_displayed(), 30, "the login page", poll=0.2)
    chrome.el(d, "#login-user").send_keys("admin")
    chrome.el(d, "#login-password").send_keys(cbdaemon.PASSWORD)
    chrome.el(d, "#login-submit").click()
    chrome.wait(d, lambda b: chrome.el(b, "#shell").is_displayed(), 30, "the shell", poll=0.2)
    d.get(n.url + "/#/nodes")


def test_the_panels_nodes_page_shows_the_fleet(fleet):
    import browser as chrome
    from selenium.webdriver.common.by import By
    d = chrome.chromium()
    try:
        n = fleet[0]
        open_nodes_page(d, n)

        def rows():
            got = {r.get_attribute("data-node"): r.text for r in d.find_elements(By.CSS_SELECTOR, "#node-rows tr[data-node]")}
            return True if sorted(got) == NAMES and all(" up" in t for t in got.values()) else got
        wait_for("three nodes up on the nodes page", rows, 30)
        chrome.screenshot(d, "fleet-nodes")
    finally:
        d.quit()


def qemus_of(fleet, vm):
    """QEMU processes running `vm`, in every node's namespace."""
    found = []
    for n in fleet:
        for p in n.pids():
            try:
                argv = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if argv and b"qemu-system" in argv[0] and any(vm.encode() in a for a in argv):
                found.append((n.name, p))
    return found


def test_one_vm_name_one_owner_one_qemu(fleet):
    """Two nodes creating and starting the same VM at the same moment: the
    fleet's etcd transaction gives the name to one of them; one QEMU runs."""
    import threading
    kernel, initrd = cbdaemon.guest()
    pair = fleet[:2]
    for n in pair:
        n.upload("k", kernel)
        n.upload("i", initrd)
    for attempt in range(3):
        vm = f"twin{attempt}"
        spec = {"name": vm, "memory": 128, "kernel": "k", "initrd": "i", "network": "none", "append": "console=ttyS0"}
        results = {}
        go = threading.Barrier(2)

        def create_and_start(n):
            go.wait()
            # each names itself: both define it locally, racing for the name
            st, body = n.request("POST", "/api/v1/vms", dict(spec, node=n.name), timeout=30)
            st2, body2 = n.request("POST", f"/api/v1/vms/{vm}/start", timeout=60)
            results[n.name] = (st, body, st2, body2)
        threads = [threading.Thread(target=create_and_start, args=(n,)) for n in pair]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        created = sorted(name for name, r in results.items() if r[0] == 201)
        assert len(created) == 1, results
        winner = created[0]
        loser = "node2" if winner == "node1" else "node1"
        st, body, st2, body2 = results[loser]
        assert st == 409 and f"belongs to node '{winner}'".encode() in body, results[loser]
        # both starts go to the owner (the loser's forwarded there): one QEMU, on the winner
        assert results[winner][2] == 200 or results[loser][2] == 200, results
        time.sleep(1)
        assert [w for w, _ in qemus_of(fleet, vm)] == [winner], qemus_of(fleet, vm)
        by_name = {n.name: n for n in fleet}
        st, body = by_name[loser].request("GET", f"/api/v1/vms/{vm}")
        assert st == 200 and json.loads(body)["state"] == "running", (st, body)
        # deleted on its owner, the name is free for any node again
        w = by_name[winner]
        w.request("POST", f"/api/v1/vms/{vm}/stop", timeout=60)
        st, body = w.request("DELETE", f"/api/v1/vms/{vm}", timeout=60)
        assert st in (200, 204), (st, body)
        assert qemus_of(fleet, vm) == []
    st, body = fleet[1].request("POST", "/api/v1/vms", dict(spec, name="twin0"))
    assert st == 201, (st, body)
    assert fleet[1].request("DELETE", "/api/v1/vms/twin0")[0] in (200, 204)


def test_a_vm_placed_on_node2_through_node1_runs_there_and_answers_on_every_node(fleet):
    node1, node2, node3 = fleet
    kernel, initrd = cbdaemon.guest()
    for n in (node2, node3):
        n.upload("k", kernel)
        n.upload("i", initrd)
    spec = {"name": "roam", "memory": 128, "kernel": "k", "initrd": "i", "network": "none", "append": "console=ttyS0"}
    st, body = node1.request("POST", "/api/v1/vms", dict(spec, node="node2"), timeout=30)
    assert st == 201, (st, body)
    st, body = node1.request("POST", "/api/v1/vms", dict(spec, name="roam2", node="nosuch"), timeout=30)
    assert st == 404 and b"nosuch" in body, (st, body)
    st, body = node1.request("POST", "/api/v1/vms/roam/start", timeout=60)
    assert st == 200 and json.loads(body)["state"] == "running", (st, body)
    time.sleep(1)
    # its QEMU runs in node2's namespace, and nowhere else
    q = qemus_of(fleet, "roam")
    assert [w for w, _ in q] == ["node2"], q
    assert os.stat(f"/proc/{q[0][1]}/ns/net").st_ino == netns_inode(node2.ns)
    # every node lists it, on node2; each answers for it
    for n in fleet:
        x = listed(n, "roam")
        assert x and x["node"] == "node2" and x["state"] == "running", (n.name, x)
        st, body = n.request("GET", "/api/v1/vms/roam")
        assert st == 200 and json.loads(body)["name"] == "roam" and json.loads(body)["node"] == "node2", (n.name, st, body)
    # the CLI through node3 shows the node column
    r = sh(cbdaemon.binary(), "vm", "list", "--url", node3.url, "--token", node3.token)
    head, *rows = r.stdout.splitlines()
    assert head.split()[-1] == "NODE" and any(x.split()[0] == "roam" and x.split()[-1] == "node2" for x in rows), r.stdout
    # the serial log comes from node2 through node3, with its offset header
    def booted():
        req = urllib.request.Request(node3.url + "/api/v1/vms/roam/serial", headers={"Authorization": "Bearer " + node3.token})
        with urllib.request.urlopen(req, timeout=10) as r:
            data = r.read()
            return True if int(r.headers["X-Log-Offset"]) >= len(data) > 0 else len(data)
    wait_for("the guest's serial log through node3", booted, 60)
    # a node credential from outside is refused (no header is believed without the token's MAC)
    forged = {"X-CloudBIOS-Fleet": f"node2 admin {int(time.time())} " + "0" * 64}
    for url in (node1.url + "/api/v1/vms", f"https://{node2.address}:2382/api/v1/vms"):
        req = urllib.request.Request(url, headers=forged)
        import ssl
        ctx = ssl.create_default_context(cafile=os.path.join(node1.dir, "s", "fleet", "tls", "ca.pem"))
        ctx.check_hostname = False
        try:
            urllib.request.urlopen(req, timeout=10, context=ctx if url.startswith("https") else None)
            raise AssertionError(f"{url} answered a forged node credential")
        except urllib.error.HTTPError as e:
            assert e.code == 401, (url, e.code)
    # the node API is TLS only, with the fleet's certificate
    plain = sh("curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", f"http://{node2.address}:2382/api/v1/health", check=False)
    assert plain.stdout in ("000", "400"), plain
    # without a node, the VM goes to the node with the most free memory
    free = {x["name"]: x["memory_free"] for x in node1.nodes()[1]}
    st, body = node3.request("POST", "/api/v1/vms", dict(spec, name="roam2"), timeout=30)
    assert st == 201, (st, body)
    where = listed(node1, "roam2")["node"]
    assert free[where] >= max(free.values()) - 64, (where, free)
    assert node1.request("DELETE", "/api/v1/vms/roam2")[0] == 204
    assert listed(node2, "roam2") is None
    # stopped and deleted through node3
    st, body = node3.request("POST", "/api/v1/vms/roam/stop", timeout=60)
    assert st == 200, (st, body)
    assert node3.request("DELETE", "/api/v1/vms/roam")[0] == 204
    assert qemus_of(fleet, "roam") == [] and listed(node1, "roam") is None
    # a VM kept on node3 for the next test (its node is killed there)
    st, body = node1.request("POST", "/api/v1/vms", dict(spec, name="stay", node="node3"), timeout=30)
    assert st == 201, (st, body)


def test_the_consoles_of_a_vm_on_node2_open_through_node1(fleet):
    """The terminal and the display's RFB WebSockets of a VM on node2,
    opened on node1: forwarded to node2, the frames pass both ways."""
    import websocket
    node1, node2, node3 = fleet
    spec = {"name": "talk", "memory": 128, "kernel": "k", "initrd": "i", "network": "none", "append": "console=ttyS0", "node": "node2"}
    st, body = node1.request("POST", "/api/v1/vms", spec, timeout=30)
    assert st == 201, (st, body)
    assert node1.request("POST", "/api/v1/vms/talk/start", timeout=60)[0] == 200
    wait_for("the guest ready", lambda: "CLOUDBIOS-GUEST-READY" in counts(node1, "talk")[1] or counts(node1, "talk")[1][-300:], 90)
    ws_url = node1.url.replace("http://", "ws://")
    # the terminal, as the CLI opens it (a bearer token)
    ws = websocket.create_connection(ws_url + "/api/v1/vms/talk/terminal", subprotocols=["binary"],
                                     header=["Authorization: Bearer " + node1.token], timeout=5)
    seen = b""
    try:
        deadline = time.time() + 60
        while b"serial-typed: hello-from-node1" not in seen and time.time() < deadline:
            ws.send_binary(b"hello-from-node1\r")
            end = time.time() + 3
            while time.time() < end and b"serial-typed: hello-from-node1" not in seen:
                try:
                    seen += ws.recv() or b""
                except websocket.WebSocketTimeoutException:
                    break
        assert b"serial-typed: hello-from-node1" in seen, seen[-500:]
    finally:
        ws.close()
    # the display's RFB, as the panel's page opens it (a session token in the query)
    ws = websocket.create_connection(ws_url + f"/api/v1/vms/talk/console?token={node1.token}", subprotocols=["binary"], timeout=10)
    try:
        banner = ws.recv()
        assert banner.startswith(b"RFB 003.00"), banner
    finally:
        ws.close()
    # one that does not run: the owner's refusal comes back
    assert node1.request("POST", "/api/v1/vms/talk/stop", timeout=60)[0] == 200
    with pytest.raises(websocket.WebSocketBadStatusException) as e:
        websocket.create_connection(ws_url + "/api/v1/vms/talk/terminal", header=["Authorization: Bearer " + node1.token], timeout=10)
    assert e.value.status_code == 409, e.value
    assert node1.request("DELETE", "/api/v1/vms/talk", timeout=60)[0] == 204


def counts(n, vm):
    """The guest's counter lines on its serial console, through node n: [(count, uptime)]."""
    st, body = n.request("GET", f"/api/v1/vms/{vm}/serial")
    assert st == 200, (st, body)
    text = body.decode(errors="replace")
    out = []
    for line in text.splitlines():
        f = line.strip().split()
        if len(f) == 3 and f[0] == "CLOUDBIOS-GUEST-COUNT":
            out.append((int(f[1]), float(f[2])))
    return out, text


def task_done(n, tid, timeout):
    end = time.time() + timeout
    while time.time() < end:
        st, body = n.request("GET", f"/api/v1/tasks/{tid}")
        assert st == 200, (st, body)
        t = json.loads(body)
        if t["state"] in ("succeeded", "failed"):
            return t
        time.sleep(0.3)
    raise AssertionError(f"task {tid} not done in {timeout} s: {t}")


def test_a_running_vm_migrates_live_to_node3_and_keeps_counting(fleet):
    node1, node2, node3 = fleet
    # its disk: an overlay of an 8 MiB image of random bytes, in both nodes' stores
    data = os.path.join(os.path.dirname(node1.dir), "data.img")
    with open(data, "wb") as f:
        f.write(os.urandom(8 << 20))
    for n in (node2, node3):
        n.upload("data", data)
    spec = {"name": "mover", "memory": 128, "kernel": "k", "initrd": "i", "network": "none",
            "append": "console=ttyS0 cbguest.count", "disks": [{"id": "root", "image": "data"}], "node": "node2"}
    st, body = node1.request("POST", "/api/v1/vms", spec, timeout=30)
    assert st == 201, (st, body)
    assert node1.request("POST", "/api/v1/vms/mover/start", timeout=60)[0] == 200
    wait_for("the guest counting on node2", lambda: len(counts(node1, "mover")[0]) >= 4 or counts(node1, "mover")[1][-300:], 90)
    before, _ = counts(node1, "mover")
    # through node1, as any client: a task on node2, followed through node1
    st, body = node1.request("POST", "/api/v1/vms/mover/migrate", {"node": "node3"}, timeout=30)
    assert st == 202, (st, body)
    t = task_done(node1, json.loads(body)["id"], 180)
    assert t["state"] == "succeeded", t
    result = json.loads(t["result"]) if isinstance(t.get("result"), str) else t["result"]
    print("migration:", result)
    assert result["node"] == "node3" and result["downtime_ms"] >= 0 and result["ram_bytes"] > 0, result
    assert result["disk_bytes"] == 8 << 20 and result["bytes"] == result["ram_bytes"] + result["disk_bytes"], result
    # one QEMU, in node3's namespace; node2's is gone, and so is its definition
    q = qemus_of(fleet, "mover")
    assert [w for w, _ in q] == ["node3"], q
    assert os.stat(f"/proc/{q[0][1]}/ns/net").st_ino == netns_inode(node3.ns)
    # node3's disk holds the same bytes (mirrored over NBD while the guest ran)
    disk = os.path.join(node3.dir, "s", "disks", "mover", "root.qcow2")
    r = sh("qemu-img", "compare", "-U", "-f", "qcow2", "-F", "raw", disk, data, check=False)
    assert r.returncode == 0, r
    assert not os.path.exists(os.path.join(node2.dir, "s", "disks", "mover"))
    for n in fleet:
        x = listed(n, "mover")
        assert x["node"] == "node3" and x["state"] == "running", (n.name, x)
    # the guest never stopped: on node3 its counter goes on from where it was, and it did not boot again
    wait_for("the counter going on on node3", lambda: len(counts(node2, "mover")[0]) >= 4 or counts(node2, "mover")[1][-300:], 60)
    after, text = counts(node2, "mover")
    assert "CLOUDBIOS-GUEST-READY" not in text, text[-500:]
    assert after[0][0] > before[-1][0] and after[0][1] > before[-1][1], (before[-3:], after[:3])
    assert all(b[0] == a[0] + 1 for a, b in zip(after, after[1:])), after
    # a migration to a node holding another image under a name the VM uses is refused before anything
    # moves, the VM running on where it was
    node1.upload("i1", cbdaemon.guest()[1])  # on node1 only
    st, body = node1.request("POST", "/api/v1/vms", {"name": "rooted", "memory": 128, "kernel": "k", "initrd": "i1", "network": "none",
                                                     "append": "console=ttyS0", "node": "node1"}, timeout=30)
    assert st == 201, (st, body)
    assert node1.request("POST", "/api/v1/vms/rooted/start", timeout=60)[0] == 200
    node3.upload("i1", data)  # other bytes under the same name
    st, body = node2.request("POST", "/api/v1/vms/rooted/migrate", {"node": "node3"}, timeout=30)
    assert st == 202, (st, body)
    t = task_done(node2, json.loads(body)["id"], 60)
    assert t["state"] == "failed" and "another image named 'i1'" in t["message"], t
    assert [w for w, _ in qemus_of(fleet, "rooted")] == ["node1"]
    assert listed(node3, "rooted")["node"] == "node1" and listed(node3, "rooted")["state"] == "running"
    assert not os.path.exists(os.path.join(node3.dir, "s", "vms", "rooted.json"))


def test_a_vm_whose_images_only_its_node_has_migrates_with_them(fleet):
    """No shared storage: the VM's kernel, initrd and its qcow2 disk's base
    image are only on node1; the migration copies them to node2 first, then
    mirrors the disk and moves RAM, the guest counting on."""
    node1, node2, node3 = fleet
    root = os.path.dirname(node1.dir)
    raw = os.path.join(root, "own.raw")
    with open(raw, "wb") as f:
        f.write(os.urandom(4 << 20))
    base = os.path.join(root, "own.qcow2")
    sh("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, base)
    kernel, initrd = cbdaemon.guest()
    node1.upload("ownk", kernel)
    node1.upload("owni", initrd)
    node1.upload("ownbase", base)
    for n in (node2, node3):
        st, _ = n.request("GET", "/api/v1/images/ownbase")
        assert st == 404
    spec = {"name": "carried", "memory": 128, "kernel": "ownk", "initrd": "owni", "network": "none",
            "append": "console=ttyS0 cbguest.count", "disks": [{"id": "root", "image": "ownbase"}], "node": "node1"}
    st, body = node3.request("POST", "/api/v1/vms", spec, timeout=30)
    assert st == 201, (st, body)
    assert node3.request("POST", "/api/v1/vms/carried/start", timeout=60)[0] == 200
    wait_for("the guest counting on node1", lambda: len(counts(node1, "carried")[0]) >= 3 or counts(node1, "carried")[1][-300:], 90)
    before, _ = counts(node1, "carried")
    st, body = node3.request("POST", "/api/v1/vms/carried/migrate", {"node": "node2"}, timeout=30)
    assert st == 202, (st, body)
    t = task_done(node3, json.loads(body)["id"], 180)
    assert t["state"] == "succeeded", t
    result = json.loads(t["result"]) if isinstance(t.get("result"), str) else t["result"]
    print("migration with images:", result)
    assert sorted(result["images_copied"]) == ["ownbase", "owni", "ownk"], result
    assert result["disk_bytes"] == 4 << 20, result
    # node2's store has them now, byte for byte
    for name, path in (("ownk", kernel), ("owni", initrd), ("ownbase", base)):
        st, b = node2.request("GET", f"/api/v1/images/{name}")
        assert st == 200 and json.loads(b)["size"] == os.path.getsize(path), (name, st, b)
        assert sh("cmp", os.path.join(node2.dir, "s", "images", name), path, check=False).returncode == 0, name
    q = qemus_of(fleet, "carried")
    assert [w for w, _ in q] == ["node2"], q
    disk = os.path.join(node2.dir, "s", "disks", "carried", "root.qcow2")
    r = sh("qemu-img", "compare", "-U", "-f", "qcow2", "-F", "raw", disk, raw, check=False)
    assert r.returncode == 0, r
    wait_for("the counter going on on node2", lambda: len(counts(node3, "carried")[0]) >= 3 or counts(node3, "carried")[1][-300:], 60)
    after, text = counts(node3, "carried")
    assert "CLOUDBIOS-GUEST-READY" not in text, text[-500:]
    assert after[0][0] > before[-1][0], (before[-3:], after[:3])
    assert node3.request("POST", "/api/v1/vms/carried/stop", timeout=60)[0] == 200
    assert node3.request("DELETE", "/api/v1/vms/carried", timeout=60)[0] == 204
    assert qemus_of(fleet, "carried") == []


def test_a_node_that_knew_the_old_owner_follows_the_vm_after_a_migration(fleet):
    """Nodes remember each VM's owner instead of asking etcd at every
    request. node1 learnt that "mover" is node3's; the VM then migrates to
    node2 without node1 taking part: node1's next requests reach node2 (node3,
    asked for a VM it no longer owns, sends node1 back to etcd), never node3's
    leftover answer."""
    node1, node2, node3 = fleet
    st, body = node1.request("GET", "/api/v1/vms/mover")
    assert st == 200 and json.loads(body)["node"] == "node3", (st, body)
    before, _ = counts(node1, "mover")
    st, body = node3.request("POST", "/api/v1/vms/mover/migrate", {"node": "node2"}, timeout=30)
    assert st == 202, (st, body)
    t = task_done(node3, json.loads(body)["id"], 180)
    assert t["state"] == "succeeded", t
    assert [w for w, _ in qemus_of(fleet, "mover")] == ["node2"]
    # node3 itself says the VM is not its own to a node that asks it directly
    st, body = node_request(node1, node3, "GET", "/api/v1/vms/mover", None)
    assert st == 421, (st, body)
    # through node1, which last knew node3: the VM as node2 runs it, its console going on there
    st, body = node1.request("GET", "/api/v1/vms/mover")
    assert st == 200, (st, body)
    x = json.loads(body)
    assert x["node"] == "node2" and x["state"] == "running", x
    wait_for("the counter going on through node1", lambda: len(counts(node1, "mover")[0]) >= 3 or counts(node1, "mover")[1][-300:], 60)
    after, text = counts(node1, "mover")
    assert "CLOUDBIOS-GUEST-READY" not in text, text[-500:]
    assert after[0][0] > before[-1][0], (before[-3:], after[:3])
    # an action through node1 acts on node2's QEMU
    st, body = node1.request("POST", "/api/v1/vms/mover/stop", timeout=60)
    assert st == 200, (st, body)
    assert node1.request("DELETE", "/api/v1/vms/mover", timeout=60)[0] == 204
    assert qemus_of(fleet, "mover") == []
    assert listed(node3, "mover") is None


def node_request(src, dst, method, path, body):
    """A request as node `src` sends it to node `dst` over the node API:
    TLS with the fleet's CA, the node credential made from the token."""
    import base64
    import hashlib
    import hmac
    import ssl
    key = hmac.new(TOKEN.encode(), b"cloudbios fleet node api e2e", hashlib.sha256).digest()
    t = int(time.time())
    mac = hmac.new(key, f"{src.name}\nadmin\n{t}\n{method}\n{path}".encode(), hashlib.sha256).hexdigest()
    ctx = ssl.create_default_context(cafile=os.path.join(src.dir, "s", "fleet", "tls", "ca.pem"))
    ctx.check_hostname = False
    req = urllib.request.Request(f"https://{dst.address}:2382{path}", data=None if body is None else json.dumps(body).encode(), method=method,
                                 headers={"X-CloudBIOS-Fleet": f"{src.name} admin {t} {mac}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def etcd_put(n, key, value):
    import base64
    tls = os.path.join(n.dir, "s", "fleet", "tls")
    b = json.dumps({"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(value.encode()).decode()})
    r = sh("ip", "netns", "exec", n.ns, "curl", "-s", "--http1.1", "-m", "5", "--cacert", f"{tls}/ca.pem",
           "https://127.0.0.1:2379/v3/kv/put", "-d", b)
    assert '"header"' in r.stdout, r


def start_counting_on_node1(node1, name, kernel, counted):
    """A tiny guest counting on its console, made and started on node1."""
    spec = {"name": name, "memory": 128, "kernel": kernel, "initrd": "i", "network": "none",
            "append": "console=ttyS0 cbguest.count", "node": "node1"}
    st, body = node1.request("POST", "/api/v1/vms", spec, timeout=30)
    assert st == 201, (st, body)
    assert node1.request("POST", f"/api/v1/vms/{name}/start", timeout=60)[0] == 200
    wait_for("the guest counting on node1",
             lambda: len(counts(node1, name)[0]) >= counted or counts(node1, name)[1][-300:], 90)


def migrate_while_the_owner_record_moves(node1, node3, name):
    """Migrates node1's VM to node2 while its owner record says node9, so
    the handover after the switch-over fails; node1 is asked directly, as a
    node would. Returns the ended task."""
    etcd_put(node1, f"/cloudbios/e2e/vms/{name}", "node9")
    try:
        st, body = node_request(node3, node1, "POST", f"/api/v1/vms/{name}/migrate", {"node": "node2"})
        assert st == 202, (st, body)
        return task_done(node1, json.loads(body)["id"], 120)
    finally:
        etcd_put(node1, f"/cloudbios/e2e/vms/{name}", "node1")


def test_a_failed_handover_after_the_switch_over_resumes_the_vm_on_its_node(fleet):
    """The guest's state reached node2 and ran there, but the VM's ownership
    cannot move (etcd says another node holds it): node2 drops its copy,
    node1's paused guest runs on from where it was, and the task says so."""
    node1, node2, node3 = fleet
    start_counting_on_node1(node1, "back", "k", 3)
    before, _ = counts(node1, "back")
    t = migrate_while_the_owner_record_moves(node1, node3, "back")
    assert t["state"] == "failed" and "rolled back" in t["message"] and "runs on here again" in t["message"], t
    q = qemus_of(fleet, "back")
    assert [w for w, _ in q] == ["node1"], q
    assert not os.path.exists(os.path.join(node2.dir, "s", "vms", "back.json"))
    x = listed(node2, "back")
    assert x["node"] == "node1" and x["state"] == "running", x
    n = len(before)
    wait_for("the counter going on on node1", lambda: len(counts(node1, "back")[0]) >= n + 3 or counts(node1, "back")[1][-300:], 60)
    after, text = counts(node1, "back")
    assert text.count("CLOUDBIOS-GUEST-READY") == 1, text[-500:]
    assert all(b[0] == a[0] + 1 for a, b in zip(after, after[1:])), after
    assert node1.request("POST", "/api/v1/vms/back/stop", timeout=60)[0] == 200
    assert node1.request("DELETE", "/api/v1/vms/back", timeout=60)[0] == 204


def menu_entries(n):
    """The VMs of the node's boot menu, in GRUB's order (None: no file)."""
    try:
        with open(n.menu) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    assert text.startswith("# CloudBIOS boot menu entries"), text
    return re.findall(r'menuentry "CloudBIOS: dual-run ([^"]+)" --id "vm-\1"', text)


def test_the_boot_menus_follow_a_vm_migrating_live(fleet):
    """GRUB's per-VM entries follow the VMs whatever moves them: a VM
    created on node1 is in node1's menu; migrated live to node2 it is in
    node2's menu and gone from node1's; deleted there, it leaves node2's."""
    node1, node2, _ = fleet
    kernel, initrd = cbdaemon.guest()
    for n in (node1, node2):
        n.upload("menuk", kernel)
        n.upload("menui", initrd)
    spec = {"name": "menuvm", "memory": 128, "kernel": "menuk", "initrd": "menui", "network": "none",
            "append": "console=ttyS0", "node": "node1"}
    st, body = node1.request("POST", "/api/v1/vms", spec, timeout=30)
    assert st == 201, (st, body)
    # a change through the API answers once the menu follows it
    assert "menuvm" in menu_entries(node1), menu_entries(node1)
    assert "menuvm" not in menu_entries(node2), menu_entries(node2)
    assert node1.request("POST", "/api/v1/vms/menuvm/start", timeout=60)[0] == 200
    wait_for("menuvm running on node1", lambda: listed(node1, "menuvm")["state"] == "running" or listed(node1, "menuvm"), 60)
    st, body = node1.request("POST", "/api/v1/vms/menuvm/migrate", {"node": "node2"}, timeout=30)
    assert st == 202, (st, body)
    t = task_done(node1, json.loads(body)["id"], 120)
    assert t["state"] == "succeeded", t
    assert [w for w, _ in qemus_of(fleet, "menuvm")] == ["node2"]

    def moved():
        a, b = menu_entries(node1), menu_entries(node2)
        return True if "menuvm" not in a and "menuvm" in b else (a, b)
    wait_for("menuvm in node2's boot menu and not in node1's", moved, 30)
    for line in open(node2.log).read().splitlines():
        if "boot menu:" in line and "menuvm" in line:
            print(line)
    assert node1.request("POST", "/api/v1/vms/menuvm/stop", timeout=60)[0] == 200
    assert node1.request("DELETE", "/api/v1/vms/menuvm", timeout=60)[0] == 204
    wait_for("menuvm gone from node2's boot menu", lambda: "menuvm" not in menu_entries(node2) or menu_entries(node2), 30)
    assert "menuvm" not in menu_entries(node1)


def test_a_failed_migration_removes_the_images_it_copied_and_only_those(fleet):
    """The VM's kernel is only on node1 (its initrd on node2 too): the
    migration copies the kernel to node2, then fails after the switch-over
    (its ownership cannot move); node2 drops its copy of the VM and the
    kernel copied for it, and keeps the initrd it had."""
    node1, node2, node3 = fleet
    kernel, initrd = cbdaemon.guest()
    node1.upload("onlyk", kernel)
    assert node2.request("GET", "/api/v1/images/onlyk")[0] == 404
    assert node2.request("GET", "/api/v1/images/i")[0] == 200
    start_counting_on_node1(node1, "back2", "onlyk", 2)
    t = migrate_while_the_owner_record_moves(node1, node3, "back2")
    assert t["state"] == "failed" and "rolled back" in t["message"], t
    assert [w for w, _ in qemus_of(fleet, "back2")] == ["node1"]
    assert node2.request("GET", "/api/v1/images/onlyk")[0] == 404
    assert not os.path.exists(os.path.join(node2.dir, "s", "images", "onlyk"))
    assert node2.request("GET", "/api/v1/images/i")[0] == 200
    assert node1.request("GET", "/api/v1/images/onlyk")[0] == 200
    assert node1.request("POST", "/api/v1/vms/back2/stop", timeout=60)[0] == 200
    assert node1.request("DELETE", "/api/v1/vms/back2", timeout=60)[0] == 204


def test_a_killed_node_is_down_on_the_others_within_a_minute(fleet):
    wait_for("the fleet up", up_everywhere(fleet, {n.name: "up" for n in fleet}), 90)
    victim = fleet[2]
    killed_at = time.time()
    victim.kill_all()
    assert wait_for("node3 gone", lambda: victim.pids() == [] or victim.pids(), 10)
    rest = fleet[:2]
    seen_at = wait_for("node3 down on node1 and node2",
                       up_everywhere(rest, {"node1": "up", "node2": "up", "node3": "down"}), 60)
    print(f"node3 shown down {seen_at - killed_at:.1f} s after it was killed")
    # its last report stays: a down node keeps its name, address and capacity
    st, body = rest[0].nodes()
    x = {n["name"]: n for n in body}["node3"]
    assert x["address"] == victim.address and x["cpus"] >= 1


def test_the_vms_of_a_down_node_are_unknown_and_never_started_elsewhere(fleet):
    node1, node2, node3 = fleet
    wait_for("node3 down", up_everywhere([node1, node2], {"node1": "up", "node2": "up", "node3": "down"}), 60)
    for n in (node1, node2):
        x = listed(n, "stay")
        assert x == {"name": "stay", "node": "node3", "state": "unknown"}, x
        st, body = n.request("GET", "/api/v1/vms/stay")
        assert st == 200 and json.loads(body)["state"] == "unknown", (st, body)
        st, body = n.request("POST", "/api/v1/vms/stay/start", timeout=30)
        assert st == 503 and b"down" in body, (st, body)
    # a migration to a node that is down is refused, the VM running on where it was
    st, body = node2.request("POST", "/api/v1/vms/rooted/migrate", {"node": "node3"}, timeout=30)
    assert st == 503 and b"down" in body, (st, body)
    assert [w for w, _ in qemus_of(fleet, "rooted")] == ["node1"]
    assert listed(node2, "rooted")["state"] == "running"
    # nor defined again on another node under its name
    kernel, initrd = cbdaemon.guest()
    spec = {"name": "stay", "memory": 128, "kernel": "k", "initrd": "i", "network": "none", "append": "console=ttyS0", "node": "node1"}
    st, body = node1.request("POST", "/api/v1/vms", spec, timeout=30)
    assert st == 409 and b"belongs to node 'node3'" in body, (st, body)
    assert qemus_of(fleet, "stay") == []


def test_a_down_node_is_removed_cleanly_and_an_up_node_is_not(fleet):
    node1, node2, node3 = fleet
    wait_for("node3 down", up_everywhere([node1, node2], {"node1": "up", "node2": "up", "node3": "down"}), 60)
    st, body = node1.request("DELETE", "/api/v1/nodes/node2")
    assert st == 409 and b"is up" in body, (st, body)
    st, body = node1.request("DELETE", "/api/v1/nodes/nosuch")
    assert st == 404, (st, body)
    # through the CLI, against node2
    r = sh(cbdaemon.binary(), "cluster", "remove", "node3", "--url", node2.url, "--token", node2.token, check=False)
    assert r.returncode == 0, r
    for n in (node1, node2):
        r = sh(cbdaemon.binary(), "cluster", "nodes", "--json", "--url", n.url, "--token", n.token)
        assert {x["name"]: x["state"] for x in json.loads(r.stdout)} == {"node1": "up", "node2": "up"}, r.stdout
    # its etcd member is gone: the quorum is now two of two
    tls = os.path.join(node1.dir, "s", "fleet", "tls")
    r = sh("ip", "netns", "exec", node1.ns, "curl", "-s", "--http1.1", "-m", "5", "--cacert", f"{tls}/ca.pem",
           "https://127.0.0.1:2379/v3/cluster/member/list", "-d", "{}")
    members = json.loads(r.stdout)["members"]
    assert sorted(m["name"] for m in members) == [node1.address, node2.address], members
    # the fleet goes on: node1's record is still written at each heartbeat
    st, body = node2.nodes()
    assert st == 200 and len(body) == 2


def test_a_new_node_joins_through_a_member(fleet):
    """node4, outside the members its config names, joins the running fleet
    through them: its etcd member is added and starts, and it shows up."""
    node1, node2 = fleet[0], fleet[1]
    root = os.path.dirname(node1.dir)
    node4 = Node(3, root, cbdaemon.password_hash(cbdaemon.PASSWORD))
    # its config has no cluster: yet; `cloudbios cluster join` writes it
    text = open(node4.config).read()
    with open(node4.config, "w") as f:
        f.write(text[:text.index("cluster:")])
    r = sh(cbdaemon.binary(), "cluster", "join", node1.address, "--token", TOKEN, "--fleet", "e2e", "--node", "node4",
           "--address", node4.address, "--config", node4.config)
    assert "joins when the daemon starts" in r.stdout, r
    again = sh(cbdaemon.binary(), "cluster", "join", node1.address, "--token", TOKEN, "--fleet", "e2e", "--config", node4.config,
               check=False)
    assert again.returncode != 0 and "already" in again.stderr, again
    sh("ip", "netns", "del", node4.ns, check=False)
    fleet.append(node4)  # the fixture stops it and removes its namespace
    plug(node4, 3)
    # a joining request without the fleet's node credential is refused
    st, body = node1.request("POST", "/api/v1/nodes", {"name": "node9", "address": "10.0.0.9"})
    assert st == 403, (st, body)
    node4.start()
    node4.wait_up()
    expected = {"node1": "up", "node2": "up", "node4": "up"}
    wait_for("node4 up on every node", up_everywhere([node1, node2, node4], expected), 90)
    tls = os.path.join(node4.dir, "s", "fleet", "tls")
    r = sh("ip", "netns", "exec", node4.ns, "curl", "-s", "--http1.1", "-m", "5", "--cacert", f"{tls}/ca.pem",
           "https://127.0.0.1:2379/v3/cluster/member/list", "-d", "{}")
    members = json.loads(r.stdout)["members"]
    assert sorted(m["name"] for m in members) == [node1.address, node2.address, node4.address], members
    # the new node answers for the fleet's VMs as any other
    st, body = node4.request("GET", "/api/v1/vms")
    assert st == 200, (st, body)


def test_a_node_leaves_the_fleet_once_none_of_its_vms_runs(fleet):
    """`cloudbios cluster leave` on node4: refused while its VM runs; once
    stopped, node4 leaves (its etcd member and record go, the others show it
    gone at once) and runs on alone, its VM its own."""
    node1, node2, node4 = fleet[0], fleet[1], fleet[3]
    kernel, initrd = cbdaemon.guest()
    node4.upload("k", kernel)
    node4.upload("i", initrd)
    spec = {"name": "homebody", "memory": 128, "kernel": "k", "initrd": "i", "network": "none", "append": "console=ttyS0", "node": "node4"}
    st, body = node1.request("POST", "/api/v1/vms", spec, timeout=30)
    assert st == 201, (st, body)
    assert node1.request("POST", "/api/v1/vms/homebody/start", timeout=60)[0] == 200
    leave = [cbdaemon.binary(), "cluster", "leave", "--url", node4.url, "--token", node4.token, "--config", node4.config]
    r = sh(*leave, check=False)
    assert r.returncode != 0 and "still runs 'homebody'" in r.stderr, r
    assert listed(node1, "homebody")["node"] == "node4"
    assert node1.request("POST", "/api/v1/vms/homebody/stop", timeout=60)[0] == 200
    r = sh(*leave, check=False)
    assert r.returncode == 0 and "node4 left the fleet" in r.stdout, r
    assert "cluster:" not in open(node4.config).read()
    # gone for the others at once: no record, no etcd member, its VM's name free
    for n in (node1, node2):
        st, body = n.nodes()
        assert st == 200 and {x["name"]: x["state"] for x in body} == {"node1": "up", "node2": "up"}, (n.name, body)
        assert listed(n, "homebody") is None
    tls = os.path.join(node1.dir, "s", "fleet", "tls")
    r = sh("ip", "netns", "exec", node1.ns, "curl", "-s", "--http1.1", "-m", "5", "--cacert", f"{tls}/ca.pem",
           "https://127.0.0.1:2379/v3/cluster/member/list", "-d", "{}")
    assert sorted(m["name"] for m in json.loads(r.stdout)["members"]) == [node1.address, node2.address], r.stdout
    # node4 runs on alone, its VM its own
    assert node4.nodes()[0] != 200
    assert not os.path.exists(os.path.join(node4.dir, "s", "fleet", "etcd"))
    st, body = node4.request("POST", "/api/v1/vms/homebody/start", timeout=60)
    assert st == 200 and json.loads(body)["state"] == "running", (st, body)
    assert [w for w, _ in qemus_of(fleet, "homebody")] == ["node4"]
    assert node4.request("POST", "/api/v1/vms/homebody/stop", timeout=60)[0] == 200
    # and the fleet may use the name again
    st, body = node1.request("POST", "/api/v1/vms", dict(spec, node="node1"), timeout=30)
    assert st == 201, (st, body)
    assert node1.request("DELETE", "/api/v1/vms/homebody")[0] == 204


def etcd_call(n, path, body):
    tls = os.path.join(n.dir, "s", "fleet", "tls")
    r = sh("ip", "netns", "exec", n.ns, "curl", "-s", "--http1.1", "-m", "5", "--cacert", f"{tls}/ca.pem",
           f"https://127.0.0.1:2379{path}", "-d", json.dumps(body))
    return json.loads(r.stdout)


def test_a_leave_cut_short_is_finished_by_leaving_again(fleet):
    """node4 joins again; its etcd member is then removed without node4
    hearing the answer (as when the answer to its own removal is lost):
    `cloudbios cluster leave` run again finishes the job on node4 (etcd
    stopped, its data and the config's cluster: section gone), and the
    others take its record out with `cluster remove` once it is down."""
    node1, node2, node4 = fleet[0], fleet[1], fleet[3]
    r = sh(cbdaemon.binary(), "cluster", "join", node1.address, "--token", TOKEN, "--fleet", "e2e", "--node", "node4",
           "--address", node4.address, "--config", node4.config)
    node4.kill_all()
    node4.proc.wait(timeout=10)
    node4.start()
    node4.wait_up()
    wait_for("node4 up again", up_everywhere([node1, node2, node4], {"node1": "up", "node2": "up", "node4": "up"}), 90)
    # its member removed behind its back
    members = etcd_call(node1, "/v3/cluster/member/list", {})["members"]
    mine = next(m for m in members if m["name"] == node4.address)
    # (etcd refuses while the member's connection is too recent to count on: "unhealthy cluster")
    wait_for("node4's member removed", lambda: "members" in etcd_call(node1, "/v3/cluster/member/remove", {"ID": mine["ID"]}) or
             etcd_call(node1, "/v3/cluster/member/list", {}), 30)
    etcd_log = os.path.join(node4.dir, "s", "fleet", "etcd.log")
    wait_for("node4's etcd told it was removed", lambda: "permanently removed" in open(etcd_log, errors="replace").read(), 30)
    leave = [cbdaemon.binary(), "cluster", "leave", "--url", node4.url, "--token", node4.token, "--config", node4.config]
    r = sh(*leave, check=False)
    assert r.returncode == 0 and "node4 left the fleet" in r.stdout, r
    assert "cluster:" not in open(node4.config).read()
    assert not os.path.exists(os.path.join(node4.dir, "s", "fleet", "etcd"))
    assert node4.nodes()[0] != 200
    etcds = [p for p in node4.pids() if b"etcd" in open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")[0]]
    assert etcds == [], etcds
    # node4 runs on alone
    assert node4.request("GET", "/api/v1/vms")[0] == 200
    # a leave run again after the daemon left (the config still naming the fleet) just finishes the config
    with open(node4.config, "a") as f:
        f.write(f"\ncluster:\n  name: e2e\n  node: node4\n  address: {node4.address}\n  members: [{node1.address}]\n  token: \"{TOKEN}\"\n")
    r = sh(*leave, check=False)
    assert r.returncode == 0 and "no fleet any more" in r.stdout, r
    assert "cluster:" not in open(node4.config).read()
    # the others: node4's record goes down with its lease, then is removed (its member is gone already)
    wait_for("node4 down", up_everywhere([node1, node2], {"node1": "up", "node2": "up", "node4": "down"}), 60)
    r = sh(cbdaemon.binary(), "cluster", "remove", "node4", "--url", node1.url, "--token", node1.token, check=False)
    assert r.returncode == 0, r
    wait_for("node4 gone", up_everywhere([node1, node2], {"node1": "up", "node2": "up"}), 30)


def test_a_machine_on_its_own_joins_and_leaves_through_the_panel(fleet):
    """node4, on its own again, joins the fleet from its panel's nodes page
    (a wrong token first: refused, its config file as it was), shows up on
    every node, then leaves with the page's Leave button: the others show
    it gone, its config file has no cluster: section, it runs on alone."""
    import browser as chrome
    from selenium.webdriver.common.by import By
    node1, node2, node4 = fleet[0], fleet[1], fleet[3]
    assert node4.nodes()[0] == 409
    before = open(node4.config).read()
    assert "cluster:" not in before
    # through the API: a malformed request, then a token the fleet does not know
    st, body = node4.request("POST", "/api/v1/cluster/join", {"member": node1.address, "fleet": "e2e", "token": "short"})
    assert st == 400 and b"token" in body, (st, body)
    st, body = node4.request("POST", "/api/v1/cluster/join", {"member": "10.0.0.300", "fleet": "e2e", "token": TOKEN})
    assert st == 400 and b"member" in body, (st, body)
    st, body = node4.request("POST", "/api/v1/cluster/join",
                             {"member": node1.address, "fleet": "e2e", "token": "not-the-fleets-token-at-all", "node": "node4",
                              "address": node4.address}, timeout=60)
    assert st == 422 and json.loads(body)["error"], (st, body)
    assert open(node4.config).read() == before
    assert node4.nodes()[0] == 409
    d = chrome.chromium()
    try:
        open_nodes_page(d, node4)
        chrome.wait(d, lambda b: chrome.el(b, "#join-form").is_displayed(), 30, "the join form", poll=0.2)
        for field, value in (("member", node1.address), ("fleet", "e2e"), ("token", TOKEN), ("node", "node4"),
                             ("address", node4.address)):
            d.find_element(By.CSS_SELECTOR, f"#join-{field}").send_keys(value)
        chrome.screenshot(d, "fleet-join-form")
        d.find_element(By.CSS_SELECTOR, "#join-submit").click()

        def rows():
            got = {r.get_attribute("data-node"): r.text for r in d.find_elements(By.CSS_SELECTOR, "#node-rows tr[data-node]")}
            ok = sorted(got) == ["node1", "node2", "node4"] and all(" up" in t for t in got.values())
            local = [r.get_attribute("data-node") for r in d.find_elements(By.CSS_SELECTOR, "#node-rows tr[data-local]")]
            if ok and local == ["node4"] and not chrome.el(d, "#join-form").is_displayed():
                return True
            return got, local, d.find_element(By.CSS_SELECTOR, "#join-msg").text, d.find_element(By.CSS_SELECTOR, "#nodes-note").text
        wait_for("node4 in the fleet on its own nodes page", rows, 90)
        chrome.screenshot(d, "fleet-joined")
        wait_for("node4 up on every node", up_everywhere([node1, node2, node4], {"node1": "up", "node2": "up", "node4": "up"}), 60)
        assert "cluster:" in open(node4.config).read() and "e2e" in open(node4.config).read()
        # the fleet's VMs answer through node4 as through any node
        assert node4.request("GET", "/api/v1/vms")[0] == 200
        # Leave, confirmed in the dialog
        # (clicked again when the page redrew the button between finding and clicking it)
        chrome.wait(d, lambda b: chrome.el(b, "#leave-fleet").click() or True, 10, "the Leave button", poll=0.2)
        chrome.wait(d, lambda b: chrome.el(b, "dialog [data-confirm]").click() or True, 10, "the confirmation", poll=0.2)

        def left():
            # the page's word (shown for 4 s) or, once it is gone, what it did
            if "node4 left the fleet" in d.find_element(By.CSS_SELECTOR, "#flash").text:
                return True
            if node4.nodes()[0] == 409 and "cluster:" not in open(node4.config).read():
                return True
            return d.find_element(By.CSS_SELECTOR, "#flash").text
        wait_for("the leave done", left, 90, 0.2)
        chrome.wait(d, lambda b: chrome.el(b, "#join-form").is_displayed(), 30, "the join form again", poll=0.5)
    finally:
        d.quit()
    for n in (node1, node2):
        st, body = n.nodes()
        assert st == 200 and {x["name"]: x["state"] for x in body} == {"node1": "up", "node2": "up"}, (n.name, body)
    assert "cluster:" not in open(node4.config).read()
    assert node4.nodes()[0] == 409
    assert node4.request("GET", "/api/v1/vms")[0] == 200
