// The backups page: every backup on the target, by VM (kind, size, the
// backup it builds on), with restore, verify and delete; and a backup of a
// VM now.
import * as api from "/api.js";
import { h, clear, fmtBytes, ask, flash } from "/ui.js";

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const enc = encodeURIComponent;

// Follows a task until it ends; the final task.
async function follow(task, status) {
    for (;;) {
        const t = await api.get("/tasks/" + enc(task.id));
        status.textContent = (t.progress ? t.progress + " % " : "") + (t.message || t.state);
        if (t.state === "succeeded" || t.state === "failed") return t;
        await new Promise((r) => setTimeout(r, 1000));
    }
}

export function backupsPage(main, onlyVM) {
    const status = h("p.muted#backup-status");
    const vmSelect = h("select#backup-vm");
    const mode = h("select#backup-mode", ["auto", "full", "incremental"].map((m) => h("option", { value: m }, m)));
    const body = h("div#backup-list");
    let stopped = false;

    const run = async (what, call) => {
        try {
            const t = await follow(await call(), status);
            flash(t.message, t.state === "failed" ? "error" : undefined);
        } catch (e) {
            flash(e.message, "error");
            status.textContent = "";
        }
        load();
    };
    const backupNow = h("button.primary#backup-now", {
        type: "button",
        onclick: () => {
            const vm = vmSelect.value;
            if (!vm) return;
            run("backup", () => api.post("/vms/" + enc(vm) + "/backups", { mode: mode.value }));
        },
    }, "Back up now");

    clear(main,
        h("section.card",
            h("h2", "Backups"),
            h("div.row", h("label", { for: "backup-vm" }, "VM"), vmSelect, h("label", { for: "backup-mode" }, "Mode"), mode, backupNow),
            status),
        body);

    const restore = async (b) => {
        const name = prompt("Name of the new VM restored from " + b.id + " (" + b.vm + ")", b.vm + "-restored");
        if (name === null) return;
        if (!NAME_RE.test(name)) { flash("'" + name + "' is not a valid VM name (a-z, 0-9, '-')", "error"); return; }
        run("restore", () => api.post("/backups/" + enc(b.id) + "/restore", { name, forwards: [] }));
    };
    const verify = (b) => run("verify", () => api.post("/backups/" + enc(b.id) + "/verify"));
    const remove = async (b, list) => {
        const kids = list.filter((x) => x.parent === b.id).map((x) => x.id);
        const text = kids.length ? "Backups " + kids.join(", ") + " build on it: its data is merged into them first." : "Its files are removed from the target.";
        if (!await ask("Delete backup " + b.id + "?", text, "Delete", true)) return;
        try { await api.del("/backups/" + enc(b.id)); flash(b.id + " deleted"); } catch (e) { flash(e.message, "error"); }
        load();
    };

    const load = async () => {
        if (stopped) return;
        const [vms, list] = await Promise.all([api.get("/vms"), api.get("/backups" + (onlyVM ? "?vm=" + enc(onlyVM) : ""))]);
        const names = (Array.isArray(vms) ? vms : []).map((v) => v.name);
        const chosen = vmSelect.value || onlyVM || names[0] || "";
        clear(vmSelect, names.map((n) => h("option", { value: n, selected: n === chosen }, n)));
        const backups = Array.isArray(list) ? list : [];
        const byVM = {};
        for (const b of backups) (byVM[b.vm] = byVM[b.vm] || []).push(b);
        const vmNames = Object.keys(byVM).sort();
        clear(body, vmNames.length ? vmNames.map((vm) => {
            const mine = byVM[vm];
            const total = mine.reduce((s, b) => s + (b.size || 0), 0);
            return h("section.card", { "data-backups-vm": vm },
                h("h3", vm, " ", h("span.muted", mine.length + " backup(s), " + fmtBytes(total))),
                h("table.backups",
                    h("thead", h("tr", h("th", "Backup"), h("th", "Time"), h("th", "Kind"), h("th", "Size"), h("th", "Builds on"), h("th", ""))),
                    h("tbody", mine.map((b) => h("tr", { "data-backup": b.id },
                        h("td", { "data-label": "Backup" }, b.id),
                        h("td", { "data-label": "Time" }, new Date(b.time).toLocaleString()),
                        h("td", { "data-label": "Kind" }, b.kind),
                        h("td", { "data-label": "Size" }, fmtBytes(b.size)),
                        h("td", { "data-label": "Builds on" }, b.parent || "–"),
                        h("td",
                            h("button.small", { type: "button", "data-action": "restore", onclick: () => restore(b) }, "Restore"), " ",
                            h("button.small", { type: "button", "data-action": "verify", onclick: () => verify(b) }, "Verify"), " ",
                            h("button.danger.small", { type: "button", "data-action": "delete", onclick: () => remove(b, backups) }, "Delete")))))));
        }) : h("section.card", h("p.empty", onlyVM ? "No backups of " + onlyVM + " yet." : "No backups yet.")));
    };
    load().catch((e) => flash(e.message, "error"));
    const timer = setInterval(() => load().catch(() => {}), 10000);
    return { unmount() { stopped = true; clearInterval(timer); } };
}
