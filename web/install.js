// The disks page's install: pick a disk, see the installer's plan (a dry
// run of POST /api/v1/install), confirm, watch the install task's progress,
// then reboot into the installed system.
import * as api from "/api.js";
import { h, clear, ask, flash } from "/ui.js";

export function installForm(d) {
    const path = d.path || "/dev/" + d.name;
    const wipe = h("input", { type: "checkbox", name: "install-wipe" });
    const out = h("div.install-out");
    const btn = h("button", { type: "button", "data-install": path }, "Install CloudBIOS here");
    btn.addEventListener("click", async () => {
        const body = { disk: { path }, wipe: wipe.checked };
        btn.disabled = true;
        clear(out);
        try {
            const plan = await api.post("/install", { ...body, dry_run: true });
            clear(out, h("pre.plan", { text: plan.message || "" }));
            if (!(await ask("Install CloudBIOS on " + path + "?",
                "The plan is shown on the disks page: the disk gets CloudBIOS's partitions" +
                (wipe.checked ? " and everything on it is destroyed." : "."), "Install", true))) return;
            follow(await api.post("/install", body), out);
        } catch (e) {
            clear(out, h("p.msg", e.message));
        } finally {
            btn.disabled = false;
        }
    });
    return h("div.install", h("p.row", btn, h("label.check", wipe, " wipe what it holds")), out);
}

// The install task, polled until it ends; its progress bar and message.
async function follow(t, out) {
    const bar = h("progress#install-progress", { max: 100, value: 0 });
    const msg = h("span#install-msg", "");
    clear(out, h("p.row", bar, msg));
    flash("Installing: task " + t.id);
    while (t.state === "pending" || t.state === "running") {
        bar.value = t.progress || 0;
        msg.textContent = (t.progress || 0) + " % · " + (t.message || "");
        await new Promise((r) => setTimeout(r, 1000));
        try { t = await api.get("/tasks/" + encodeURIComponent(t.id), { quiet: true }); } catch (e) { msg.textContent = e.message; }
    }
    bar.value = t.state === "succeeded" ? 100 : bar.value;
    msg.textContent = t.message || t.state;
    msg.dataset.state = t.state;
    if (t.state !== "succeeded") { flash("Install failed: " + (t.message || ""), "error"); return; }
    const reboot = h("button.primary#install-reboot", { type: "button" }, "Reboot now");
    reboot.addEventListener("click", async () => {
        if (!(await ask("Reboot?", "Guests shut down first. Remove the boot medium so the installed disk boots.", "Reboot", false))) return;
        try { await api.post("/system/reboot"); flash("Rebooting"); } catch (e) { flash(e.message, "error"); }
    });
    out.append(h("p#install-done", "Installed. Remove the boot medium and reboot. ", reboot));
}
