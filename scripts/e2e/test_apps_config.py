"""Apps from cloudbios.yaml, end to end: `apps:` entries are pulled from a
registry on loopback and started with the daemon; the restart policies
(always, on-failure, no) hold while the daemon runs and when it starts again
after its apps' QEMUs ended with it (a host restart); the file owns an app
as it owns a VM (an app removed through the API stays removed, a changed
entry replaces its app); bad entries are refused with line and column."""
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
    reg = oci_registry.busybox_registry(str(tmp_path_factory.mktemp("registry")))
    yield reg
    reg.stop()


def apps_yaml(image, port, done_cmd="echo finished; exit 0"):
    return f"""apps:
  - name: web
    image: {image}
    ports: [{{host: {port}, guest: 8080}}]
    memory: 128M
    restart: always
  - name: ticker
    image: {image}
    cmd: [sh, -c, "echo tick; sleep 2; exit 0"]
    memory: 128M
    restart: always
  - name: flaky
    image: {image}
    cmd: [sh, -c, "echo try; sleep 2; exit 4"]
    memory: 128M
    restart: on-failure
  - name: done
    image: {image}
    cmd: [sh, -c, "{done_cmd}"]
    memory: 128M
    restart: on-failure
  - name: once
    image: {image}
    cmd: [sh, -c, "echo once; exit 5"]
    memory: 128M
    restart: no
"""


@pytest.fixture(scope="module")
def daemon(registry):
    port = oci_registry.free_port()
    d = cbdaemon.Daemon(tls=False, extra_config=apps_yaml(f"{registry.host}/busybox:1", port),
                        env={"CLOUDBIOS_APP_TRACE": "1"})
    d.web_port = port
    d.image = f"{registry.host}/busybox:1"
    d.start()
    d.login()
    yield d
    for app in d.json("GET", "/api/v1/apps") or []:
        if app.get("pid"):
            d.qemu_pids.add(app["pid"])
    d.teardown()


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


def apps(d):
    return {a["name"]: a for a in d.json("GET", "/api/v1/apps")}


def wait_for(d, what, check, timeout=120):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = apps(d)
        if check(got):
            return got
        time.sleep(0.5)
    raise AssertionError(f"{what}: {({n: (a['state'], a['restarts'], a['exit_code'], a['message']) for n, a in (got or {}).items()})}"
                         f"\n{open(d.log).read()[-3000:]}")


def logs(d, name):
    st, body, _ = d.request("GET", f"/api/v1/apps/{name}/logs")
    assert st == 200, body
    return body.decode(errors="replace")


def test_bad_entries_are_refused_with_line_and_column(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("""version: 1
apps:
  - name: web
    imag: 127.0.0.1:5000/busybox:1
  - name: job
    image: busybox
    restart: sometimes
    ports: [{host: 70000, guest: 80}]
""")
    r = subprocess.run([cbdaemon.binary(), "config", "validate", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert any(line.startswith(f"{cfg}:4:5: unknown key 'imag' in apps[0] (did you mean 'image'?)") for line in lines), r.stdout
    assert any(line.startswith(f"{cfg}:3:5: apps[0] needs an image") for line in lines), r.stdout
    assert any(line.startswith(f"{cfg}:7:14: apps[1].restart must be one of no, always, on-failure") for line in lines), r.stdout
    assert any(line.startswith(f"{cfg}:8:20: apps[1].ports[0].host must be between 1 and 65535") for line in lines), r.stdout
    # the daemon refuses to start on it, saying the same
    d = cbdaemon.Daemon(tls=False, extra_config=cfg.read_text().split("\n", 1)[1])
    try:
        with pytest.raises(RuntimeError, match="imag"):
            d.start(timeout=20)
    finally:
        d.teardown()


def test_the_config_apps_start_with_the_daemon(daemon):
    t0 = time.time()
    status, body = http_get(daemon.web_port, "/index.html", 180)
    assert status == 200 and body == b"hello from the cloudbios app image\n"
    print(f"config app answered {time.time() - t0:.1f} s after the daemon was up")
    got = apps(daemon)
    assert sorted(got) == ["done", "flaky", "once", "ticker", "web"]
    assert got["web"]["state"] == "running" and got["web"]["restart"] == "always"
    assert got["web"]["ports"] == [{"host": daemon.web_port, "guest": 8080}] and got["web"]["memory"] == 128


def test_restart_policies_while_the_daemon_runs(daemon):
    got = wait_for(daemon, "always and on-failure restart, on-failure after 0 and no do not",
                   lambda a: a["done"]["state"] == "exited" and a["once"]["state"] == "exited"
                   and logs(daemon, "ticker").count("tick\n") >= 2 and logs(daemon, "flaky").count("try\n") >= 2,
                   timeout=180)
    assert got["ticker"]["restarts"] >= 1 and got["flaky"]["restarts"] >= 1
    # always: restarted although it ended with 0; on-failure: restarted after exit 4
    assert "[cloudbios] app exited: 0" in logs(daemon, "ticker") and "[cloudbios] app exited: 4" in logs(daemon, "flaky")
    # on-failure after exit 0, and no after exit 5: left ended
    time.sleep(3)
    got = apps(daemon)
    assert (got["done"]["state"], got["done"]["exit_code"], got["done"]["restarts"]) == ("exited", 0, 0), got["done"]
    assert (got["once"]["state"], got["once"]["exit_code"], got["once"]["restarts"]) == ("exited", 5, 0), got["once"]
    assert logs(daemon, "once").count("once\n") == 1 and logs(daemon, "done").count("finished\n") == 1


def test_daemon_start_after_a_host_restart_follows_the_file_and_the_policies(daemon):
    # an app of the file removed through the API stays removed
    assert daemon.request("DELETE", "/api/v1/apps/ticker")[0] == 204
    # the file's entry of another changes
    with open(daemon.config) as f:
        text = f.read()
    with open(daemon.config, "w") as f:
        f.write(text.replace("echo finished; exit 0", "echo finished-v2; exit 0"))
    before = apps(daemon)
    web_pid = before["web"]["pid"]
    # the daemon and every app's QEMU end, as with a host restart
    daemon.kill9(daemon.procs[-1])
    for a in before.values():
        if a["pid"] and cbdaemon.alive(a["pid"]):
            os.kill(a["pid"], signal.SIGKILL)
    for a in before.values():
        while a["pid"] and cbdaemon.alive(a["pid"]):
            time.sleep(0.05)
    daemon.start()
    got = apps(daemon)
    assert "ticker" not in got
    # always and on-failure (ended without an exit code) start again; no stays ended
    assert got["web"]["state"] == "running" and got["web"]["pid"] != web_pid
    assert got["flaky"]["state"] == "running"
    assert got["once"]["state"] == "exited" and got["once"]["exit_code"] == 5 and not got["once"]["pid"]
    status, body = http_get(daemon.web_port, "/index.html", 120)
    assert body == b"hello from the cloudbios app image\n"
    # the changed entry replaced its app
    got = wait_for(daemon, "the changed app ran", lambda a: "done" in a and "finished-v2" in logs(daemon, "done"), timeout=120)
    assert got["done"]["cmd"] == ["sh", "-c", "echo finished-v2; exit 0"]
    assert "finished\n" not in logs(daemon, "done")
    # unchanged entries are not applied again: a second start keeps everything as it is
    pids = {n: a["pid"] for n, a in got.items()}
    daemon.kill9(daemon.procs[-1])
    daemon.start()
    time.sleep(2)
    again = apps(daemon)
    assert "ticker" not in again and again["web"]["pid"] == pids["web"]
