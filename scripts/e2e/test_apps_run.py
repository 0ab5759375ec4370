"""Apps run as microVMs, end to end: a registry on loopback (Debian's
docker-registry) holding a busybox image built here; the daemon boots it in a
QEMU microvm whose PID 1 is `cloudbios app-init`; the app serves a file of
its image on a forwarded port, `exec` runs commands in it, its output is in
its logs, it survives the daemon's kill -9, and `rm` leaves nothing behind.
Bad input: an unknown image, a tampered layer, a taken port, an image for
another architecture only: clear errors, nothing started."""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import cbdaemon  # noqa: E402
import oci_registry  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/qemu-system-x86_64"), reason="needs QEMU")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    work = str(tmp_path_factory.mktemp("registry"))
    reg = oci_registry.LocalRegistry(work)
    layout = oci_registry.Layout(os.path.join(work, "layout"))
    layers = oci_registry.busybox_layers()
    amd64 = layout.image(layers, cmd=["httpd", "-f", "-p", "8080", "-h", "/www"])
    layout.tag("1", amd64)
    arm = layout.image(layers[:1], arch="arm64")
    layout.tag("armonly", arm)
    odd = oci_registry._tar_gz([("odd.txt", "file", b"y" * 4096, 0o644)])
    layout.tag("tampered", layout.image([odd]))
    reg.push(layout, "1", "busybox:1")
    reg.push(layout, "armonly", "armonly:1")
    reg.push(layout, "tampered", "tampered:1")
    odd_digest = "sha256:" + __import__("hashlib").sha256(odd).hexdigest()
    path = reg.blob_file(odd_digest)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    reg.odd_digest = odd_digest
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def daemon():
    # the guest kernel's messages and app-init's steps go to each app's console.log
    d = cbdaemon.Daemon(tls=False, env={"CLOUDBIOS_APP_TRACE": "1"})
    d.start()
    d.login()
    yield d
    for app in d.json("GET", "/api/v1/apps") or []:
        if app.get("pid"):
            d.qemu_pids.add(app["pid"])
    d.teardown()


def cli(d, *args, timeout=120):
    env = dict(os.environ, CLOUDBIOS_URL=d.url, CLOUDBIOS_TOKEN=d.token)
    return subprocess.run([cbdaemon.binary(), *args], capture_output=True, text=True, timeout=timeout, env=env)


def http_get(port, path, timeout):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as r:
                return r.status, r.read()
        except Exception as e:  # noqa: BLE001 - booting
            last = e
            time.sleep(0.2)
    raise AssertionError(f"no answer on port {port}: {last}")


@pytest.fixture(scope="module")
def web(daemon, registry):
    """The busybox app serving /www on a forwarded port."""
    port = oci_registry.free_port()
    t0 = time.time()
    app = daemon.json("POST", "/api/v1/apps", {"name": "web", "image": f"{registry.host}/busybox:1",
                                               "ports": [{"host": port, "guest": 8080}], "env": {"GREETING": "hi"}},
                      expect=201)
    try:
        status, body = http_get(port, "/index.html", 120)
    except AssertionError as e:
        run = os.path.join(daemon.state, "apps", "run", "web")
        tails = {f: open(os.path.join(run, f), errors="replace").read()[-1500:]
                 for f in ("console.log", "app.log") if os.path.exists(os.path.join(run, f))}
        raise AssertionError(f"{e}; the app's logs: {tails}") from None
    app["boot_seconds"] = time.time() - t0
    assert status == 200 and body == b"hello from the cloudbios app image\n"
    app["port"] = port
    return app


def test_an_app_serves_a_file_of_its_image(daemon, web):
    assert web["state"] == "running" and web["pid"] > 0
    listed = daemon.json("GET", "/api/v1/apps")
    assert [a["name"] for a in listed] == ["web"]
    one = daemon.json("GET", "/api/v1/apps/web")
    assert one["state"] == "running" and one["digest"].startswith("sha256:")
    print(f"first HTTP answer {web['boot_seconds']:.2f} s after POST")


def test_exec_returns_output_and_exit_codes(daemon, web):
    r = daemon.json("POST", "/api/v1/apps/web/exec", {"cmd": ["cat", "/etc/os-release"]})
    assert r["exit_code"] == 0 and 'NAME="CloudBIOS test busybox"' in r["stdout"] and r["stderr"] == ""
    r = daemon.json("POST", "/api/v1/apps/web/exec", {"cmd": ["sh", "-c", "echo $GREETING; echo oops >&2; exit 3"]})
    assert r == {"exit_code": 3, "stdout": "hi\n", "stderr": "oops\n"}
    r = daemon.json("POST", "/api/v1/apps/web/exec", {"cmd": ["no-such-program"]})
    assert r["exit_code"] == 127 and "no-such-program" in r["stderr"]
    # the overlay is writable; the image below is not changed
    r = daemon.json("POST", "/api/v1/apps/web/exec", {"cmd": ["sh", "-c", "echo new > /www/new.txt && cat /www/new.txt"]})
    assert r["exit_code"] == 0 and r["stdout"] == "new\n"
    st, body = http_get(web["port"], "/new.txt", 10)
    assert body == b"new\n"


def test_logs_show_the_apps_output(daemon, web):
    daemon.json("POST", "/api/v1/apps/web/exec", {"cmd": ["sh", "-c", "echo to-the-log > /proc/1/fd/1"]})
    # httpd -f writes nothing by itself; what the app's stdout gets is in the log
    st, body, h = daemon.request("GET", "/api/v1/apps/web/logs")
    assert st == 200 and "X-Log-Offset" in h


def test_bad_input_is_refused_and_nothing_starts(daemon, registry, web):
    before = os.listdir(os.path.join(daemon.state, "apps", "run"))
    st, b, _ = daemon.request("POST", "/api/v1/apps", {"name": "nope", "image": f"{registry.host}/no-such:1"})
    assert st == 404 and b"not found" in b, b
    st, b, _ = daemon.request("POST", "/api/v1/apps", {"name": "arm", "image": f"{registry.host}/armonly:1"})
    assert st == 422 and b"linux/amd64" in b, b
    st, b, _ = daemon.request("POST", "/api/v1/apps", {"name": "odd", "image": f"{registry.host}/tampered:1"})
    assert st == 422 and b"digest mismatch" in b, b
    assert not os.path.exists(os.path.join(daemon.state, "apps", "blobs", "sha256", registry.odd_digest[7:]))
    st, b, _ = daemon.request("POST", "/api/v1/apps", {"name": "web2", "image": f"{registry.host}/busybox:1",
                                                        "ports": [{"host": web["port"], "guest": 80}]})
    assert st == 409 and b"app 'web'" in b, b
    st, b, _ = daemon.request("POST", "/api/v1/apps", {"name": "panel", "image": f"{registry.host}/busybox:1",
                                                        "ports": [{"host": daemon.port, "guest": 80}]})
    assert st == 409 and b"the panel" in b, b
    st, b, _ = daemon.request("POST", "/api/v1/apps", {"name": "web", "image": f"{registry.host}/busybox:1"})
    assert st == 409, b
    # and a VM may not forward a port an app holds
    st, b, _ = daemon.request("POST", "/api/v1/vms", {"name": "clash", "memory": 256, "network": "nat",
                                                       "forwards": [{"host": web["port"], "guest": 22}]})
    assert st == 409 and b"app 'web'" in b, b
    assert daemon.request("GET", "/api/v1/vms/clash")[0] == 404
    st, b, _ = daemon.request("POST", "/api/v1/apps", {"name": "bad/name", "image": f"{registry.host}/busybox:1"})
    assert st == 400, b
    assert os.listdir(os.path.join(daemon.state, "apps", "run")) == before
    assert [a["name"] for a in daemon.json("GET", "/api/v1/apps")] == ["web"]


def test_the_app_survives_a_daemon_kill(daemon, web):
    pid = daemon.json("GET", "/api/v1/apps/web")["pid"]
    daemon.kill9(daemon.procs[-1])
    assert cbdaemon.alive(pid)
    daemon.start()
    app = daemon.json("GET", "/api/v1/apps/web")
    assert app["state"] == "running" and app["pid"] == pid
    st, body = http_get(web["port"], "/index.html", 10)
    assert body == b"hello from the cloudbios app image\n"
    r = daemon.json("POST", "/api/v1/apps/web/exec", {"cmd": ["echo", "still here"]})
    assert r["stdout"] == "still here\n"


def test_stop_then_rm_leaves_nothing(daemon, web):
    pid = daemon.json("GET", "/api/v1/apps/web")["pid"]
    app = daemon.json("POST", "/api/v1/apps/web/stop")
    assert app["state"] == "stopped" and not cbdaemon.alive(pid)
    st, _, _ = daemon.request("DELETE", "/api/v1/apps/web")
    assert st == 204
    assert daemon.json("GET", "/api/v1/apps") == []
    assert not os.path.exists(os.path.join(daemon.state, "apps", "run", "web"))
    out = subprocess.run(["pgrep", "-f", os.path.join(daemon.state, "apps", "run")], capture_output=True, text=True)
    assert out.stdout.strip() == ""
    # the image and its layers stay cached for the next app
    assert os.listdir(os.path.join(daemon.state, "apps", "images"))


def test_the_cli_runs_an_app_whose_output_is_in_its_logs_and_restarts_on_failure(daemon, registry):
    r = cli(daemon, "run", "--name", "hello", "--restart", "on-failure", "-e", "WHO=world", "-m", "128M",
            f"{registry.host}/busybox:1", "sh", "-c", "echo hello-$WHO; echo to-stderr >&2; sleep 4; exit 3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("hello: running"), r.stdout
    deadline = time.time() + 120
    app = None
    while time.time() < deadline:
        app = daemon.json("GET", "/api/v1/apps/hello")
        if app["restarts"] >= 1:
            break
        time.sleep(0.5)
    assert app["restarts"] >= 1 and app["memory"] == 128, app
    logs = cli(daemon, "apps", "logs", "hello")
    assert logs.returncode == 0
    assert "hello-world\n" in logs.stdout and "to-stderr\n" in logs.stdout
    assert "[cloudbios] app exited: 3" in logs.stdout
    listed = cli(daemon, "apps", "list")
    assert listed.returncode == 0 and "hello" in listed.stdout and "busybox:1" in listed.stdout
    # exec through the CLI: output and exit code pass through
    while time.time() < deadline and daemon.json("GET", "/api/v1/apps/hello")["state"] != "running":
        time.sleep(0.3)
    ex = cli(daemon, "apps", "exec", "hello", "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (ex.returncode, ex.stdout, ex.stderr) == (5, "out\n", "err\n"), ex
    st = cli(daemon, "apps", "stop", "hello")
    assert st.returncode == 0 and "hello: stopped" in st.stdout, st.stdout + st.stderr
    time.sleep(1.5)
    assert daemon.json("GET", "/api/v1/apps/hello")["state"] == "stopped"  # a stop is not a failure to restart
    rm = cli(daemon, "apps", "rm", "hello")
    assert rm.returncode == 0, rm.stderr
    assert cli(daemon, "apps", "exec", "hello", "true").returncode != 0
