"""The running daemon answers as web/openapi.yaml says.

Starts a real `cloudbios daemon`, drives every operation of the spec with
valid and invalid requests (a tiny guest under TCG for the VM routes), and
validates each real answer: its status is one the spec documents for that
operation, and its JSON body matches the documented schema (OpenAPI 3.0
schema semantics via openapi-schema-validator). Every operation of the spec
must have been exercised, and every route of DESIGN.md must be in the spec.
"""
import os
import re
import sys
import time

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from panel_daemon import GUEST_APPEND, REPO, PanelDaemon, cookie_session, make_guest  # noqa: E402
from promtool import promtool_problems  # noqa: E402

try:
    from openapi_schema_validator import OAS30Validator, validate as oas_validate
except ImportError:  # pragma: no cover - installed on demand
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "openapi-schema-validator==0.6.3"], check=True, timeout=300)
    from openapi_schema_validator import OAS30Validator, validate as oas_validate

SPEC_PATH = os.path.join(REPO, "web", "openapi.yaml")

DESIGN_ROUTES = [
    ("get", "/api/v1/health"), ("post", "/api/v1/login"), ("get", "/api/v1/host"),
    ("get", "/api/v1/vms"), ("post", "/api/v1/vms"),
    ("get", "/api/v1/vms/{name}"), ("put", "/api/v1/vms/{name}"), ("delete", "/api/v1/vms/{name}"),
    *[("post", "/api/v1/vms/{name}/" + a) for a in ("start", "stop", "shutdown", "reboot", "reset", "pause", "resume", "cdrom")],
    ("get", "/api/v1/setup"), ("post", "/api/v1/setup"), ("post", "/api/v1/images/{name}/import"), ("post", "/api/v1/vms/import"),
    ("get", "/api/v1/vms/{name}/serial"), ("get", "/api/v1/vms/{name}/screenshot"), ("get", "/api/v1/vms/{name}/console"), ("get", "/api/v1/vms/{name}/terminal"),
    ("get", "/api/v1/images"), ("put", "/api/v1/images/{name}"), ("delete", "/api/v1/images/{name}"),
    ("get", "/api/v1/disks"), ("post", "/api/v1/install"), ("get", "/api/v1/tasks/{id}"), ("get", "/metrics"),
    ("get", "/api/v1/session"), ("post", "/api/v1/logout"), ("get", "/api/v1/tasks"),
    ("post", "/api/v1/vms/{name}/backups"), ("get", "/api/v1/backups"), ("post", "/api/v1/backups/{id}/restore"),
    ("delete", "/api/v1/backups/{id}"),
    ("get", "/api/v1/vms/{name}/snapshots"), ("post", "/api/v1/vms/{name}/snapshots"),
    ("post", "/api/v1/vms/{name}/snapshots/{snap}/revert"), ("delete", "/api/v1/vms/{name}/snapshots/{snap}"),
    ("post", "/api/v1/vms/{name}/clone"),
    ("get", "/api/v1/apps"), ("post", "/api/v1/apps"), ("get", "/api/v1/apps/{name}"), ("delete", "/api/v1/apps/{name}"),
    ("get", "/api/v1/apps/{name}/logs"), ("post", "/api/v1/apps/{name}/exec"), ("post", "/api/v1/apps/{name}/stop"),
]


def load_spec():
    with open(SPEC_PATH) as f:
        return yaml.safe_load(f)


def resolve(spec, node, depth=0):
    """Inlines every local $ref (the spec has no recursive schemas)."""
    assert depth < 40, "recursive $ref"
    if isinstance(node, dict):
        if "$ref" in node:
            target = spec
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return resolve(spec, target, depth + 1)
        return {k: resolve(spec, v, depth + 1) for k, v in node.items()}
    if isinstance(node, list):
        return [resolve(spec, v, depth + 1) for v in node]
    return node


class Checker:
    def __init__(self, spec):
        self.spec = resolve(spec, spec)
        self.ops = {}
        for path, item in self.spec["paths"].items():
            rx = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")
            for method, op in item.items():
                if method in ("get", "put", "post", "delete", "patch"):
                    self.ops[(method, path)] = (rx, op)
        self.seen = {}
        self.failures = []

    def check(self, r, expect=None):
        """Validates a requests.Response against the spec; returns it."""
        method = r.request.method.lower()
        path = r.request.path_url.split("?")[0]
        match = [(k, op) for k, (rx, op) in self.ops.items() if k[0] == method and rx.match(path)]
        # a literal path (…/start) wins over a template ({name})
        match.sort(key=lambda m: m[0][1].count("{"))
        where = "%s %s -> %d" % (method.upper(), path, r.status_code)
        if not match:
            self.failures.append(where + ": no such operation in openapi.yaml")
            return r
        key, op = match[0]
        self.seen.setdefault(key, set()).add(r.status_code)
        if expect is not None and r.status_code not in (expect if isinstance(expect, tuple) else (expect,)):
            self.failures.append("%s: expected %s; body %s" % (where, expect, r.text[:300].strip()))
        if r.status_code >= 500:
            self.failures.append(where + ": a 5xx answer; body " + r.text[:300].strip())
        resp = op["responses"].get(str(r.status_code)) or op["responses"].get("default")
        if resp is None:
            self.failures.append("%s: status not documented (documented: %s); body %s"
                                 % (where, ", ".join(op["responses"]), r.text[:300].strip()))
            return r
        content = resp.get("content")
        ctype = (r.headers.get("Content-Type") or "").split(";")[0].strip()
        if not content:
            if r.content and r.status_code != 101:
                self.failures.append("%s: a body where the spec documents none: %r" % (where, r.text[:200]))
            return r
        if ctype not in content:
            self.failures.append("%s: Content-Type %r, documented %s" % (where, ctype, list(content)))
            return r
        schema = content[ctype].get("schema")
        if ctype == "application/json" and schema is not None:
            try:
                body = r.json()
            except ValueError:
                self.failures.append(where + ": not JSON: " + r.text[:200])
                return r
            errors = sorted(OAS30Validator(schema).iter_errors(body), key=lambda e: list(e.path))
            for e in errors[:5]:
                self.failures.append("%s: body%s: %s" % (where, "".join("[%r]" % p for p in e.path), e.message[:300]))
        if ctype == "image/png" and not r.content.startswith(b"\x89PNG\r\n\x1a\n"):
            self.failures.append(where + ": not a PNG")
        return r


def test_spec_is_valid_and_covers_the_design():
    from openapi_spec_validator import validate
    spec = load_spec()
    validate(spec)
    missing = [m.upper() + " " + p for m, p in DESIGN_ROUTES if m not in spec["paths"].get(p, {})]
    assert not missing, "routes missing from web/openapi.yaml: " + ", ".join(missing)
    # every operation documents the error schema for its 4xx answers
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in ("get", "put", "post", "delete"):
                continue
            for status, resp in op["responses"].items():
                if status.startswith("4"):
                    assert "$ref" in resp or "application/json" in resp.get("content", {}), (method, path, status)


@pytest.fixture(scope="module")
def daemon():
    d = PanelDaemon()
    d.start()
    try:
        yield d
    finally:
        d.stop()


def test_daemon_answers_as_the_spec_says(daemon, tmp_path):
    c = Checker(load_spec())
    d = daemon
    kernel, initrd = make_guest(str(tmp_path / "guest"))
    api = lambda m, p, expect=None, **kw: c.check(d.api(m, p, **kw), expect)  # noqa: E731

    # unauthenticated
    c.check(d.api("GET", "/api/v1/health"), 200)
    c.check(d.api("GET", "/api/v1/host"), 401)
    c.check(d.api("GET", "/api/v1/session"), 401)
    c.check(d.api("POST", "/api/v1/login", json={"user": "admin", "password": "wrong"}), 401)
    c.check(d.api("POST", "/api/v1/login", data="not json", headers={"Content-Type": "application/json"}), 400)
    c.check(d.api("GET", "/metrics"), 401)
    c.check(d.login(), 200)

    # session and CSRF as the browser uses them
    s, csrf = cookie_session(d)
    assert csrf, "the login response carries the CSRF token"
    sess = c.check(s.get(d.url + "/api/v1/session"), 200).json()
    assert sess["csrf"] == csrf and sess["user"] == "admin"
    c.check(s.post(d.url + "/api/v1/vms", json={"name": "csrf-less"}), 403)

    # host, disks, tasks, metrics
    host = api("GET", "/api/v1/host", 200).json()
    assert host["accel"]["mode"] in ("kvm", "tcg")
    api("GET", "/api/v1/disks", 200)
    api("GET", "/api/v1/tasks", 200)
    api("GET", "/api/v1/tasks/no-such-task", 404)
    m = api("GET", "/metrics", 200)
    assert "# TYPE" in m.text or "# HELP" in m.text
    problems = promtool_problems(m.text)
    assert not problems, "promtool check metrics:\n" + problems

    # images
    api("PUT", "/api/v1/images/tiny-kernel", (200, 201), data=open(kernel, "rb"), headers={"Content-Type": "application/octet-stream"})
    api("PUT", "/api/v1/images/tiny-initrd", (200, 201), data=open(initrd, "rb"), headers={"Content-Type": "application/octet-stream"})
    api("PUT", "/api/v1/images/scratch.img", (200, 201), data=b"\0" * 65536, headers={"Content-Type": "application/octet-stream"})
    api("PUT", "/api/v1/images/..bad", (400, 404), data=b"x", headers={"Content-Type": "application/octet-stream"})
    imgs = api("GET", "/api/v1/images", 200).json()
    assert {"tiny-kernel", "tiny-initrd", "scratch.img"} <= {i["name"] for i in imgs}
    api("GET", "/api/v1/images/scratch.img", 200)
    api("GET", "/api/v1/images/no-such-image", 404)
    api("POST", "/api/v1/images/from-url/import", 422, json={"url": "ftp://example.invalid/x"})
    api("POST", "/api/v1/images/from-url/import", 400, json={"url": "http://127.0.0.1:9/x", "extra": 1})
    t = api("POST", "/api/v1/images/from-url/import", 202, json={"url": "http://127.0.0.1:9/x"}).json()
    deadline = time.time() + 30
    while time.time() < deadline and api("GET", "/api/v1/tasks/" + t["id"], 200).json()["state"] not in ("succeeded", "failed"):
        time.sleep(0.3)
    assert api("GET", "/api/v1/tasks/" + t["id"], 200).json()["state"] == "failed"  # nothing listens on port 9
    api("DELETE", "/api/v1/images/scratch.img", (200, 204))
    api("DELETE", "/api/v1/images/scratch.img", 404)

    # VMs: invalid bodies
    api("POST", "/api/v1/vms", (400, 422), json={"name": "Bad_Name", "memory": 256})
    api("POST", "/api/v1/vms", (400, 422), json={"name": "ok", "memroy": 256})
    api("POST", "/api/v1/vms", (400, 422), json={"name": "ok", "memory": 1})
    api("POST", "/api/v1/vms", (400, 415, 422), data="{", headers={"Content-Type": "application/json"})
    api("GET", "/api/v1/vms/no-such-vm", 404)
    api("POST", "/api/v1/vms/import", 422, json={"image": "no-such.ova", "name": "from-ova"})
    api("POST", "/api/v1/vms/import", 400, json={"image": "x.ova"})

    # a VM through its life
    spec = {"name": "spec-vm", "memory": 256, "cpus": 1, "kernel": "tiny-kernel", "initrd": "tiny-initrd",
            "append": GUEST_APPEND, "network": "none", "accel": "tcg"}
    api("POST", "/api/v1/vms", (200, 201), json=spec)
    api("POST", "/api/v1/vms", 409, json=spec)
    got = api("GET", "/api/v1/vms/spec-vm", 200).json()
    assert got["state"] == "stopped" and got["memory"] == 256
    api("PUT", "/api/v1/vms/spec-vm", 200, json=dict(spec, cpus=2))
    assert api("GET", "/api/v1/vms/spec-vm", 200).json()["cpus"] == 2
    api("DELETE", "/api/v1/images/tiny-kernel", 409)
    api("GET", "/api/v1/vms/spec-vm/serial", 200)
    api("POST", "/api/v1/vms/spec-vm/resume", 409, json={})
    api("POST", "/api/v1/vms/spec-vm/start", (200, 202, 204), json={})
    api("POST", "/api/v1/vms/spec-vm/start", (200, 202, 204, 409), json={})
    api("DELETE", "/api/v1/vms/spec-vm", 409)
    d.wait_serial("spec-vm", "CLOUDBIOS-GUEST-READY", timeout=120)
    vms = api("GET", "/api/v1/vms", 200).json()
    assert [v for v in vms if v["name"] == "spec-vm"][0]["state"] == "running"
    shot = api("GET", "/api/v1/vms/spec-vm/screenshot", 200)
    assert shot.headers["Content-Type"].startswith("image/png")
    serial = api("GET", "/api/v1/vms/spec-vm/serial", 200)
    off = int(serial.headers.get("X-Log-Offset", len(serial.content)))
    tail = api("GET", "/api/v1/vms/spec-vm/serial?offset=%d" % off, 200)
    assert len(tail.content) < len(serial.content)
    api("GET", "/api/v1/vms/spec-vm/serial?offset=-1", 400)
    api("GET", "/api/v1/vms/spec-vm/console", (400, 426))
    api("GET", "/api/v1/vms/spec-vm/terminal", (400, 426))
    api("POST", "/api/v1/vms/spec-vm/pause", (200, 202, 204), json={})
    api("POST", "/api/v1/vms/spec-vm/resume", (200, 202, 204), json={})
    api("POST", "/api/v1/vms/spec-vm/reboot", (200, 202, 204), json={})
    api("POST", "/api/v1/vms/spec-vm/reset", (200, 202, 204), json={})
    # the CD drive, while the VM runs: insert, eject, refuse what is not there
    assert api("POST", "/api/v1/vms/spec-vm/cdrom", 200, json={"image": "tiny-initrd"}).json()["cdrom"] == "tiny-initrd"
    assert "cdrom" not in api("POST", "/api/v1/vms/spec-vm/cdrom", 200, json={"image": None}).json()
    api("POST", "/api/v1/vms/spec-vm/cdrom", 422, json={"image": "no-such-image"})
    api("POST", "/api/v1/vms/spec-vm/cdrom", 400, json={"iso": "x"})
    api("POST", "/api/v1/vms/spec-vm/shutdown", (200, 202, 204, 409), json={})
    api("POST", "/api/v1/vms/spec-vm/stop", (200, 202, 204, 409), json={})
    deadline = time.time() + 30
    while time.time() < deadline and api("GET", "/api/v1/vms/spec-vm", 200).json()["state"] != "stopped":
        time.sleep(0.5)
    api("GET", "/api/v1/vms/spec-vm/screenshot", 409)
    # snapshots and clones (a VM without disks has nothing to snapshot)
    assert api("GET", "/api/v1/vms/spec-vm/snapshots", 200).json() == []
    api("GET", "/api/v1/vms/no-such-vm/snapshots", 404)
    api("POST", "/api/v1/vms/spec-vm/snapshots", 409, json={"name": "s1"})
    api("POST", "/api/v1/vms/spec-vm/snapshots", 400, json={"name": "1-bad"})
    api("POST", "/api/v1/vms/spec-vm/snapshots/s1/revert", 404, json={})
    api("DELETE", "/api/v1/vms/spec-vm/snapshots/s1", 404)
    api("POST", "/api/v1/vms/spec-vm/clone", 409, json={"name": "spec-linked"})
    t = api("POST", "/api/v1/vms/spec-vm/clone", 202, json={"name": "spec-copy", "linked": False}).json()
    deadline = time.time() + 30
    while time.time() < deadline and api("GET", "/api/v1/tasks/" + t["id"], 200).json()["state"] not in ("succeeded", "failed"):
        time.sleep(0.3)
    assert api("GET", "/api/v1/tasks/" + t["id"], 200).json()["state"] == "succeeded"
    api("DELETE", "/api/v1/vms/spec-copy", (200, 204))
    api("DELETE", "/api/v1/vms/spec-vm", (200, 204))
    api("GET", "/api/v1/vms/spec-vm", 404)

    # backups: of a stopped VM whose disk exists (it ran once), listed, read, verified, restored, deleted
    bspec = dict(spec, name="bk-vm", disks=[{"id": "data", "size": "16M"}])
    api("POST", "/api/v1/vms", (200, 201), json=bspec)
    api("POST", "/api/v1/vms/bk-vm/backups", 409, json={})  # its disk is made at the first start
    api("POST", "/api/v1/vms/bk-vm/start", (200, 202, 204), json={})
    api("POST", "/api/v1/vms/bk-vm/stop", (200, 202, 204), json={})
    api("POST", "/api/v1/vms/bk-vm/backups", 400, json={"mode": "sometimes"})
    api("POST", "/api/v1/vms/no-such-vm/backups", 404, json={})

    def finished(t):
        deadline = time.time() + 60
        while time.time() < deadline:
            t = api("GET", "/api/v1/tasks/" + t["id"], 200).json()
            if t["state"] in ("succeeded", "failed"):
                return t
            time.sleep(0.3)
        return t
    t = finished(api("POST", "/api/v1/vms/bk-vm/backups", 202, json={"mode": "full"}).json())
    assert t["state"] == "succeeded", t
    bid = t["result"]["id"]
    assert [b["id"] for b in api("GET", "/api/v1/backups?vm=bk-vm", 200).json()] == [bid]
    api("GET", "/api/v1/backups", 200)
    api("GET", "/api/v1/backups?vm=Bad_Name", 400)
    assert api("GET", "/api/v1/backups/" + bid, 200).json()["disks"][0]["id"] == "data"
    api("GET", "/api/v1/backups/20000101-000000-ffff", 404)
    api("GET", "/api/v1/backups/not-an-id", 400)
    assert finished(api("POST", "/api/v1/backups/%s/verify" % bid, 202).json())["state"] == "succeeded"
    api("POST", "/api/v1/backups/20000101-000000-ffff/verify", 404)
    api("POST", "/api/v1/backups/%s/restore" % bid, 400, json={"memory": 256})
    api("POST", "/api/v1/backups/%s/restore" % bid, 409, json={"name": "bk-vm"})
    assert finished(api("POST", "/api/v1/backups/%s/restore" % bid, 202, json={"name": "bk-vm2"}).json())["state"] == "succeeded"
    api("DELETE", "/api/v1/backups/" + bid, 204)
    api("DELETE", "/api/v1/backups/" + bid, 404)
    api("DELETE", "/api/v1/vms/bk-vm", (200, 204))
    api("DELETE", "/api/v1/vms/bk-vm2", (200, 204))

    # install: a dry run against a selector that matches nothing is refused, never applied
    r = api("POST", "/api/v1/install", (200, 202, 400, 404, 409, 422), json={"dry_run": True, "disk": {"serial": "NO-SUCH-DISK-*"}})
    if r.status_code == 202:  # a task: it must end, refusing
        tid = r.json()["id"]
        deadline = time.time() + 60
        while time.time() < deadline:
            t = api("GET", "/api/v1/tasks/" + tid, 200).json()
            if t["state"] in ("succeeded", "failed"):
                break
            time.sleep(0.5)
        assert t["state"] == "failed", "a selector that matches no disk cannot plan an install: %r" % t
        assert any(x["id"] == tid for x in api("GET", "/api/v1/tasks", 200).json())
    elif r.status_code == 200:
        assert False, "a selector that matches no disk cannot plan an install: " + r.text[:300]
    api("POST", "/api/v1/install", (400, 415, 422), data="[]", headers={"Content-Type": "application/json"})

    # data disks: refused before anything is written (no such disk, a bad body or name)
    api("POST", "/api/v1/disks/nosuchdisk0/init", 404, json={"wipe": False})
    api("POST", "/api/v1/disks/nosuchdisk0/init", 400, json={"wipe": "yes"})
    api("POST", "/api/v1/disks/nosuchdisk0/init", 400, json={"force": True})
    api("POST", "/api/v1/disks/Not..A.Disk/init", 400, json={})
    storage = api("GET", "/api/v1/host", 200).json()["storage"]
    assert storage["kind"] in ("ram", "directory") and storage["path"], storage

    # the appliance's own actions: this host is not run by CloudBIOS, so 409
    api("POST", "/api/v1/system/reboot", 409)
    api("POST", "/api/v1/system/shutdown", 409)
    api("POST", "/api/v1/system/display", 409, json={"vm": None})
    api("POST", "/api/v1/system/display", 400, json={"vm": 7})
    # upgrades need an installed system's slots (409 here); a bad body is a 400
    api("POST", "/api/v1/system/upgrade", 409, json={"url": "https://example.invalid/cloudbios.iso"})
    api("POST", "/api/v1/system/upgrade", 400, json={"url": 7})
    # a daemon outside any fleet has no nodes to show or remove
    api("GET", "/api/v1/nodes", 409)
    api("DELETE", "/api/v1/nodes/node9", 409)
    api("DELETE", "/api/v1/nodes/Not_A_Node", 400)
    # joining, migrating and a migration's destination step: fleet only (a node credential for the last)
    api("POST", "/api/v1/nodes", 403, json={"name": "node9", "address": "10.0.0.9"})
    # this machine joining one: a body of the wrong shape is refused before anything is written
    api("POST", "/api/v1/cluster/join", 400, json={"member": "10.0.0.9", "fleet": "lab", "token": "short"})
    api("POST", "/api/v1/cluster/join", 400, json={"member": "10.0.0.9", "fleet": "lab", "token": "t" * 20, "extra": 1})
    api("POST", "/api/v1/cluster/join", 400, json={"member": "nine", "fleet": "lab", "token": "t" * 20})
    api("POST", "/api/v1/vms/spec-vm/migrate", 409, json={"node": "node9"})
    api("POST", "/api/v1/vms/spec-vm/incoming", 403, json={"step": "abort"})

    # apps: the routes without booting one (test_apps_run.py boots them)
    assert api("GET", "/api/v1/apps", 200).json() == []
    api("POST", "/api/v1/apps", 400, json={"name": "Bad_Name", "image": "x"})
    api("POST", "/api/v1/apps", 400, json={"image": "x", "memroy": 1})
    api("POST", "/api/v1/apps", 400, json={"name": "app", "image": "BAD::REF"})
    api("GET", "/api/v1/apps/no-such-app", 404)
    api("GET", "/api/v1/apps/no-such-app/logs", 404)
    api("POST", "/api/v1/apps/no-such-app/exec", 404, json={"cmd": ["true"]})
    api("POST", "/api/v1/apps/no-such-app/exec", 400, json={"cmd": []})
    api("POST", "/api/v1/apps/no-such-app/stop", 404, json={})
    api("DELETE", "/api/v1/apps/no-such-app", 404)

    # the first-run setup is closed once a user exists
    assert api("GET", "/api/v1/setup", 200).json()["required"] is False
    api("POST", "/api/v1/setup", 409, json={"code": "0000-0000", "user": "late", "password": "late-password"})

    # logout ends the session
    c.check(s.post(d.url + "/api/v1/logout", headers={"X-CSRF-Token": csrf}), (200, 204))
    c.check(s.get(d.url + "/api/v1/session"), 401)

    unexercised = sorted("%s %s" % (m.upper(), p) for (m, p) in c.ops if (m, p) not in c.seen)
    assert not c.failures, "answers that do not match web/openapi.yaml:\n" + "\n".join(c.failures)
    assert not unexercised, "operations of the spec the test did not exercise: " + ", ".join(unexercised)
    print("openapi: %d operations, %d answers checked" % (len(c.ops), sum(len(v) for v in c.seen.values())))


SCHEMATHESIS = "schemathesis==3.39.16"


def test_schemathesis_fuzzes_the_read_routes(daemon):
    """schemathesis generates requests from the spec (read-only operations
    and the login: nothing it sends can start, install or delete anything)
    and checks: no 5xx, documented status codes, content types and schemas."""
    import subprocess
    try:
        import schemathesis  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", SCHEMATHESIS], check=True, timeout=600)
    if not daemon.token:
        daemon.login()
    env = dict(os.environ, SCHEMATHESIS_HOOKS="", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", SPEC_PATH,
           "--base-url", daemon.url, "--request-tls-verify", "false",
           "-H", "Authorization: Bearer " + daemon.token,
           "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
           "--include-method", "GET", "--exclude-path-regex", "/(console|terminal)$",
           "--hypothesis-max-examples", "25", "--hypothesis-deadline", "5000",
           "--hypothesis-derandomize", "--hypothesis-suppress-health-check", "all",
           "--no-color"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    out = r.stdout + r.stderr
    print(out[-4000:])
    assert r.returncode == 0, "schemathesis found answers that do not match web/openapi.yaml:\n" + out[-6000:]
    # and the login, with generated bodies
    cmd2 = [a for a in cmd if a != "GET"]
    i = cmd2.index("--include-method")
    cmd2[i:i + 1] = ["--include-path-regex", "/api/v1/login$"]
    r = subprocess.run(cmd2, capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    out = r.stdout + r.stderr
    print(out[-2000:])
    assert r.returncode == 0, "schemathesis on /api/v1/login:\n" + out[-6000:]
