"""The daily backup schedule (`backups.schedule`) on a real daemon with the
tiny test guest: a daemon started after the day's hour (as a machine that
was off at 02:00 is) backs up by itself every VM with `backup: true` and
no other, as an incremental on the chain the VM has; retention (`keep`)
prunes what it no longer keeps; the day's run fires once: neither the
daemon's next look at the clock nor a restarted daemon runs it again (the
day of the last run is kept on the target)."""
import datetime
import os
import signal
import time

from cbdaemon import Daemon, guest


def tasks_of(d, vm):
    return [t for t in d.json("GET", "/api/v1/tasks")
            if t["kind"] == "backup" and (t.get("result") or {}).get("vm") == vm]


def restart(d, keep, schedule=None):
    """Stops the daemon (its VMs keep running) and starts it again with
    these backup settings."""
    p = d.procs[-1]
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    text = open(d.config).read().split("backups:\n")[0]
    text += f"backups:\n  target: {d.target}\n  keep: {keep}\n"
    if schedule:
        text += f'  schedule: "{schedule}"\n'
    open(d.config, "w").write(text)
    d.start()
    d.login()


def test_the_daily_schedule_backs_up_prunes_and_fires_once(tmp_path):
    kernel, initrd = guest()
    target = str(tmp_path / "target")
    d = Daemon(extra_config=f"backups:\n  target: {target}\n  keep: {{last: 5, daily: 0, weekly: 0}}\n")
    d.target = target
    try:
        d.start()
        d.login()
        for n, p in (("vmlinuz", kernel), ("initrd", initrd)):
            assert d.upload(n, p)[0] == 201
        for name, backed in (("sched", True), ("other", False)):
            d.json("POST", "/api/v1/vms", {"name": name, "memory": 128, "kernel": "vmlinuz", "initrd": "initrd",
                                           "append": "console=ttyS0", "network": "none", "accel": "tcg",
                                           "backup": backed, "disks": [{"id": "data", "size": "16M"}]}, expect=201)
        d.json("POST", "/api/v1/vms/sched/start")
        d.json("POST", "/api/v1/vms/other/start")
        # two full backups by hand: the older one is what retention will prune
        ids = []
        for _ in range(2):
            t = d.json("POST", "/api/v1/vms/sched/backups", {"mode": "full"}, expect=202)
            while t["state"] not in ("succeeded", "failed"):
                time.sleep(0.2)
                t = d.json("GET", "/api/v1/tasks/" + t["id"])
            assert t["state"] == "succeeded", t
            ids.append(t["result"]["id"])
        old, base = ids
        assert not os.path.exists(os.path.join(target, ".last-scheduled"))

        # the daemon again, with a schedule whose time of day has passed (00:00
        # UTC) and keep: last 1
        restart(d, "{last: 1, daily: 0, weekly: 0}", "00:00")
        deadline = time.time() + 120
        done = []
        while time.time() < deadline:
            done = [t for t in tasks_of(d, "sched") if t["state"] in ("succeeded", "failed")]
            if done:
                break
            time.sleep(0.5)
        assert len(done) == 1, d.json("GET", "/api/v1/tasks")
        t = done[0]
        assert t["state"] == "succeeded", t
        r = t["result"]
        assert r["kind"] == "incremental" and r["parent"] == base, r
        assert f"retention removed {old}" in t["message"], t
        listed = {b["id"] for b in d.json("GET", "/api/v1/backups?vm=sched")}
        assert listed == {base, r["id"]}, listed
        assert not os.path.exists(os.path.join(target, old))
        assert d.json("GET", "/api/v1/backups?vm=other") == []
        today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
        assert open(os.path.join(target, ".last-scheduled")).read().strip() == today

        # once a day: the next look at the clock (every 30 s) does not fire again ...
        time.sleep(35)
        assert len(tasks_of(d, "sched")) == 1, d.json("GET", "/api/v1/tasks")
        # ... nor does a daemon started again the same day
        restart(d, "{last: 1, daily: 0, weekly: 0}", "00:00")
        time.sleep(5)
        assert [t for t in d.json("GET", "/api/v1/tasks") if t["kind"] == "backup"] == []
        assert {b["id"] for b in d.json("GET", "/api/v1/backups?vm=sched")} == listed
        assert open(d.log).read().count("scheduled backup of VM sched: task") == 1
    finally:
        d.teardown()
