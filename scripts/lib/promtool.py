"""`promtool check metrics` (the Prometheus project's own checker of the
text exposition format and its naming rules) on what /metrics answers.
scripts/lib/deps.sh test installs promtool."""
import shutil
import subprocess


def promtool_problems(text):
    """What promtool says is wrong with a /metrics text; "" when it passes."""
    exe = shutil.which("promtool")
    assert exe, "promtool is not installed (scripts/lib/deps.sh test installs it)"
    r = subprocess.run([exe, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    out = (r.stdout + r.stderr).decode().strip()
    if r.returncode == 0 and not out:
        return ""
    return out or "promtool check metrics exited %d" % r.returncode
