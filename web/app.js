// The panel: login, the dashboard (host + VMs, live), and the router that
// loads the other pages (views.js) on demand.
import * as api from "/api.js";
import { h, clear, fmtBytes, fmtDuration, fmtMiB, fmtPercent, memoryMiB, sparkline, ask, flash } from "/ui.js";

const POLL_MS = 2000;
const HISTORY = 150;            // samples per VM: 5 minutes at 2 s

const $ = (id) => document.getElementById(id);

// Live state shared by every page.
export const live = {
    host: null,
    vms: [],
    history: new Map(),         // name -> {cpu: [], mem: []}
    listeners: new Set(),
    loaded: false,
};

let pollTimer = null;
let pollGen = 0;
let view = null;                // {unmount()} of the current page

function record(vms) {
    const seen = new Set();
    for (const vm of vms) {
        seen.add(vm.name);
        let hst = live.history.get(vm.name);
        if (!hst) { hst = { cpu: [], mem: [] }; live.history.set(vm.name, hst); }
        const up = vm.state === "running" || vm.state === "paused";
        hst.cpu.push(up && typeof vm.cpu_percent === "number" ? vm.cpu_percent : null);
        hst.mem.push(up && typeof vm.memory_used_mib === "number" ? vm.memory_used_mib : null);
        if (hst.cpu.length > HISTORY) { hst.cpu.shift(); hst.mem.shift(); }
    }
    for (const name of [...live.history.keys()]) if (!seen.has(name)) live.history.delete(name);
}

async function poll(gen) {
    if (gen !== pollGen) return;
    try {
        const [vms, host] = await Promise.all([api.get("/vms"), api.get("/host")]);
        if (gen !== pollGen) return;
        accept(vms, host);
        for (const fn of live.listeners) fn();
    } catch (e) {
        if (e.status === 401) return;
        if (gen === pollGen) flash(e.message, "error");
    }
    if (gen === pollGen) pollTimer = setTimeout(() => poll(gen), POLL_MS);
}

export function refreshNow() {
    clearTimeout(pollTimer);
    poll(pollGen);
}

function startPolling(delay) {
    pollGen++;
    clearTimeout(pollTimer);
    const gen = pollGen;
    if (delay) pollTimer = setTimeout(() => poll(gen), delay);
    else poll(gen);
}

// The first answers, fetched with the session check so that the dashboard
// paints after one round trip.
function accept(vms, host) {
    live.vms = Array.isArray(vms) ? vms : [];
    live.host = host;
    live.loaded = true;
    record(live.vms);
    showStorage(host);
}

// The state in RAM (no CB-DATA data disk, not installed): said plainly.
function showStorage(host) {
    const st = host && host.storage;
    const banner = $("state-banner");
    banner.hidden = !(st && st.kind === "ram");
    if (!banner.hidden) $("state-banner-text").textContent = st.note || "VMs, images and disks live in RAM: they are gone at the next boot.";
}

function stopPolling() {
    pollGen++;
    clearTimeout(pollTimer);
}

// ---------------------------------------------------------------- login

function showLogin(message) {
    stopPolling();
    if (view) { view.unmount(); view = null; }
    $("shell").hidden = true;
    $("login").hidden = false;
    $("login-msg").textContent = message || "";
    $("login-password").value = "";
    ($("login-user").value ? $("login-password") : $("login-user")).focus();
}

function showSetup(info, message) {
    stopPolling();
    $("shell").hidden = true;
    $("login").hidden = true;
    $("setup").hidden = false;
    $("setup-msg").textContent = message || "";
    const save = $("setup-save");
    save.disabled = !info.can_save;
    save.checked = !!info.can_save;
    save.parentElement.hidden = info.storage === "config";
    $("setup-note").textContent = info.note || "";
    $("setup-code").focus();
}

$("setup-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const msg = $("setup-msg");
    msg.textContent = "";
    if ($("setup-password").value !== $("setup-password2").value) {
        msg.textContent = "The passwords differ.";
        $("setup-password2").select();
        return;
    }
    const btn = $("setup-submit");
    btn.disabled = true;
    try {
        const key = $("setup-key").value.trim();
        const r = await api.setup({
            code: $("setup-code").value.trim(),
            user: $("setup-user").value.trim(),
            password: $("setup-password").value,
            save: $("setup-save").checked && !$("setup-save").disabled,
            ssh_authorized_keys: key ? key.split("\n").map((k) => k.trim()).filter(Boolean) : [],
        });
        $("setup").hidden = true;
        showShell();
        flash(r.message);
    } catch (e) {
        if (e.status === 409) { $("setup").hidden = true; showLogin("The first admin exists already: log in."); return; }
        msg.textContent = e.status === 403 ? "Wrong setup code: look again at this machine's screen or serial console."
            : e.status === 429 ? "Too many wrong codes: " + e.message : e.message;
        if (e.status === 403) $("setup-code").select();
    } finally {
        btn.disabled = false;
    }
});

function showShell(prefetched) {
    $("login").hidden = true;
    $("setup").hidden = true;
    $("shell").hidden = false;
    $("whoami").textContent = api.currentSession().user || "";
    api.get("/setup", { quiet: true }).then((st) => { $("ram-banner").hidden = !(st && st.storage === "ram"); }).catch(() => {});
    if (prefetched) { accept(...prefetched); startPolling(POLL_MS); } else startPolling();
    route();
}

$("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const btn = $("login-submit");
    btn.disabled = true;
    $("login-msg").textContent = "";
    try {
        await api.login($("login-user").value.trim(), $("login-password").value);
        showShell();
    } catch (e) {
        $("login-msg").textContent = e.status === 401 || e.status === 403 ? "Wrong user or password." : e.message;
        $("login-password").select();
    } finally {
        btn.disabled = false;
    }
});

$("logout").addEventListener("click", async () => {
    try { await api.logout(); } catch (_) { /* the session is gone either way */ }
    showLogin("Logged out.");
});

api.setExpiredHandler(() => showLogin("Your session has expired. Please log in again."));

// ---------------------------------------------------------------- lifecycle

export const ACTIONS = {
    start: { label: "Start", states: ["stopped", "crashed"] },
    shutdown: { label: "Shut down", states: ["running"] },
    reboot: { label: "Reboot", states: ["running"] },
    reset: { label: "Reset", states: ["running", "paused"], danger: true },
    pause: { label: "Pause", states: ["running"] },
    resume: { label: "Resume", states: ["paused"] },
    stop: { label: "Stop", states: ["running", "paused", "starting"], danger: true },
};

export async function vmAction(name, action) {
    if (action === "stop" && !await ask("Power off " + name + "?",
        "Stop cuts the power of the VM at once; unsaved data in the guest is lost. Use Shut down for a clean ACPI shutdown.",
        "Power off", true)) return;
    try {
        await api.post("/vms/" + encodeURIComponent(name) + "/" + action);
        flash(name + ": " + ACTIONS[action].label.toLowerCase() + " requested");
    } catch (e) {
        flash(name + ": " + e.message, "error");
    }
    refreshNow();
}

// A running VM of a fleet moves live to another node; its task is followed
// until it ends.
export async function vmMigrate(vm) {
    let nodes = [];
    try { nodes = (await api.get("/nodes")).filter((n) => n.state === "up" && n.name !== vm.node).map((n) => n.name); } catch (e) { /* shown below */ }
    if (nodes.length === 0) { flash(vm.name + ": no other node is up", "error"); return; }
    const node = window.prompt("Migrate " + vm.name + " (on " + vm.node + ") live to which node? " + nodes.join(", "), nodes[0]);
    if (!node) return;
    try {
        let t = await api.post("/vms/" + encodeURIComponent(vm.name) + "/migrate", { node: node.trim() });
        flash(vm.name + ": migrating to " + node + "…");
        while (t.state === "pending" || t.state === "running") {
            await new Promise((r) => setTimeout(r, 500));
            t = await api.get("/tasks/" + encodeURIComponent(t.id));
        }
        flash(vm.name + ": " + t.message, t.state === "succeeded" ? undefined : "error");
    } catch (e) {
        flash(vm.name + ": " + e.message, "error");
    }
    refreshNow();
}

export async function vmDelete(name) {
    if (!await ask("Delete " + name + "?",
        "The VM " + name + " and its disks are deleted. Images in the image store are kept. This cannot be undone.",
        "Delete", true)) return false;
    try {
        await api.del("/vms/" + encodeURIComponent(name));
        flash(name + " deleted");
        refreshNow();
        return true;
    } catch (e) {
        flash(name + ": " + e.message, "error");
        return false;
    }
}

export function actionButtons(vm, afterDelete) {
    const wrap = h("div.actions");
    wrap.update = (v) => {
        const key = v.state + (v.template ? "/template" : "");
        if (wrap.dataset.state === key) return;
        wrap.dataset.state = key;
        const btns = [];
        for (const [action, a] of Object.entries(ACTIONS)) {
            if (!a.states.includes(v.state)) continue;
            if (action === "start" && v.template) continue;  // a template never starts; it is cloned
            btns.push(h("button" + (a.danger ? ".danger" : ""), {
                type: "button", "data-action": action, onclick: () => vmAction(v.name, action),
            }, a.label));
        }
        if (v.state === "running" || v.state === "paused") {
            btns.push(h("a.button", {
                href: "/console?vm=" + encodeURIComponent(v.name), target: "_blank", rel: "noopener",
                "data-action": "console",
            }, "Console"));
            btns.push(h("a.button", {
                href: "/terminal?vm=" + encodeURIComponent(v.name), target: "_blank", rel: "noopener",
                "data-action": "terminal", title: "The serial console, interactive",
            }, "Terminal"));
        }
        if (v.state === "running" && v.node) {
            btns.push(h("button", { type: "button", "data-action": "migrate", onclick: () => vmMigrate(v) }, "Migrate to…"));
        }
        if (v.state === "stopped" || v.state === "crashed") {
            btns.push(h("a.button", { href: "#/vms/" + encodeURIComponent(v.name) + "/edit", "data-action": "edit" }, "Edit"));
            btns.push(h("button.danger", { type: "button", "data-action": "delete",
                onclick: async () => { if (await vmDelete(v.name) && afterDelete) afterDelete(); } }, "Delete"));
        }
        btns.push(h("a.button", { href: "#/backups/" + encodeURIComponent(v.name), "data-action": "backups" }, "Backups"));
        clear(wrap, btns);
    };
    wrap.update(vm);
    return wrap;
}

export function stateBadge(state) {
    const b = h("span.state");
    b.update = (s) => {
        b.textContent = s || "unknown";
        b.className = "state state-" + (s || "unknown");
    };
    b.update(state);
    return b;
}

// ---------------------------------------------------------------- dashboard

function hostCard(title, ...body) {
    return h("section.card.stat", h("h3", { text: title }), ...body);
}

export function hostSummary() {
    const el = h("div.host-grid#host");
    const f = {};
    const field = (k, cls) => (f[k] = h("span" + (cls || ""), { "data-host": k }, "…"));
    const memBar = h("progress#host-mem-bar", { max: 100, value: 0 });
    el.append(
        hostCard("Host", h("p.big", field("hostname")), h("p.muted", "CloudBIOS ", field("version"), " · up ", field("uptime"))),
        hostCard("CPU", h("p.big", field("cpu")), h("p.muted", field("cpu_model"))),
        hostCard("Memory", h("p.big", field("mem")), memBar),
        hostCard("Acceleration", h("p.big", field("accel")), h("p.muted", field("accel_reason"))),
        hostCard("State", h("p.big", field("storage")), h("p.muted", field("storage_note"))),
    );
    const sysCard = systemCard();
    el.append(sysCard);
    import("/host.js").then((m) => { el.machine = m.machineCard(live); el.append(el.machine); });
    el.update = (host) => {
        if (!host) return;
        const cpu = host.cpu || {};
        const mem = host.memory || {};
        const accel = typeof host.accel === "object" && host.accel ? host.accel : { mode: host.accel };
        f.hostname.textContent = host.hostname || "–";
        f.version.textContent = host.version || "–";
        f.uptime.textContent = fmtDuration(host.uptime_seconds ?? host.uptime);
        const cpus = cpu.count ?? host.cpus;
        const pct = cpu.percent ?? host.cpu_percent;
        f.cpu.textContent = (cpus ?? "–") + " CPUs" + (typeof pct === "number" ? " · " + fmtPercent(pct) : "");
        const load = Array.isArray(host.load_average) && host.load_average.length
            ? " · load " + host.load_average.map((x) => Number(x).toFixed(2)).join(" ") : "";
        f.cpu_model.textContent = (cpu.model || host.cpu_model || "") + load;
        const total = mem.total_mib ?? host.memory_total_mib;
        const used = mem.used_mib ?? host.memory_used_mib ??
            (total !== undefined && (mem.available_mib ?? host.memory_available_mib) !== undefined
                ? total - (mem.available_mib ?? host.memory_available_mib) : undefined);
        f.mem.textContent = fmtMiB(used) + " / " + fmtMiB(total);
        memBar.value = total ? Math.round(100 * used / total) : 0;
        const mode = accel.mode || accel.type || accel.accel || "–";
        f.accel.textContent = String(mode).toUpperCase();
        f.accel.className = "accel accel-" + String(mode).toLowerCase();
        f.accel_reason.textContent = accel.reason || accel.why || (mode === "kvm" ? "KVM works" : "");
        const st = host.storage || {};
        const kinds = { ram: "In RAM", "data-partition": "Data disk", installed: "Installed", directory: "Directory" };
        f.storage.textContent = (kinds[st.kind] || "–") + (typeof st.free === "number" ? " · " + fmtBytes(st.free) + " free" : "");
        f.storage_note.textContent = st.note || "";
        sysCard.update(host.system);
        if (el.machine) el.machine.update();
    };
    el.update(live.host);
    return el;
}

// An installed system's slots (A/B): which one runs, each one's version,
// the last upgrade's outcome, and an upgrade from an ISO file or URL.
function systemCard() {
    const big = h("p.big#system-slot", "…");
    const note = h("p.muted#system-slots", "");
    const outcome = h("p#system-upgrade", "");
    const url = h("input#upgrade-url", { type: "url", placeholder: "https://…/cloudbios.iso" });
    const file = h("input#upgrade-file", { type: "file", accept: ".iso" });
    const status = h("p.muted#upgrade-status", "");
    const follow = (task) => {
        status.textContent = "Upgrade: " + task.message;
        if (task.state === "succeeded" || task.state === "failed") {
            flash(task.message, task.state === "failed" ? "error" : "ok");
            return;
        }
        setTimeout(() => api.get("/tasks/" + encodeURIComponent(task.id)).then(follow).catch((e) => { status.textContent = e.message; }), 1000);
    };
    const start = async () => {
        try {
            if (file.files && file.files[0]) {
                const up = api.uploadUpgrade(file.files[0], (d, t) => { status.textContent = "Uploading " + fmtBytes(d) + " / " + fmtBytes(t); });
                follow(await up.done);
            } else if (url.value) {
                follow(await api.post("/system/upgrade", { url: url.value }));
            } else {
                status.textContent = "Choose a CloudBIOS ISO or give its URL.";
            }
        } catch (e) { status.textContent = e.message; flash(e.message, "error"); }
    };
    const card = hostCard("System", big, note, outcome,
        h("div.upgrade", url, file, h("button#upgrade-start", { type: "button", onclick: start, text: "Upgrade" })), status);
    card.hidden = true;
    card.update = (system) => {
        card.hidden = !system;
        if (!system) return;
        const slots = system.slots || [];
        const run = slots.find((s) => s.running) || {};
        big.textContent = "Slot " + String(system.running).toUpperCase() + " · " + (run.version || "–");
        note.textContent = slots.map((s) => String(s.name).toUpperCase() + ": " + (s.installed ? s.version || "?" : "empty") +
            (s.running ? " (running)" : "") + (s.good ? " (good)" : "") + (s.next ? " (tried at the next boot)" : "") +
            (s.failed ? " (did not come up)" : "")).join(" · ");
        const u = system.upgrade;
        outcome.textContent = u ? u.message : "";
        outcome.className = u && u.state === "fell-back" ? "banner" : "";
    };
    return card;
}

function vmRow(vm) {
    const name = h("a.vm-name", { href: "#/vms/" + encodeURIComponent(vm.name), text: vm.name });
    const state = stateBadge(vm.state);
    const cpuText = h("span.num");
    const memText = h("span.num");
    const cpuSpark = sparkline([], 100);
    const memSpark = sparkline([], 1);
    const cfg = h("span.muted");
    const msg = h("span.vm-msg");
    const actions = actionButtons(vm);
    const tr = h("tr", { "data-vm": vm.name },
        h("td", { "data-label": "Name" }, name, h("br"), cfg, msg),
        h("td", { "data-label": "State" }, state),
        h("td.chart", { "data-label": "CPU" }, cpuText, cpuSpark),
        h("td.chart", { "data-label": "Memory" }, memText, memSpark),
        h("td", { "data-label": "" }, actions));
    tr.update = (v) => {
        state.update(v.state);
        const up = v.state === "running" || v.state === "paused";
        const memMiB = memoryMiB(v.memory);
        cfg.textContent = (v.template ? "template · " : "") + (v.node ? "on " + v.node + " · " : "") + (v.cpus || 1) + " vCPU · " + fmtMiB(memMiB) + (v.autostart ? " · autostart" : "") +
            (up && v.accel_in_use ? " · " + v.accel_in_use.toUpperCase() : "");
        msg.textContent = v.message && v.state !== "running" ? v.message : "";
        cpuText.textContent = up ? fmtPercent(v.cpu_percent) : "–";
        memText.textContent = up && typeof v.memory_used_mib === "number"
            ? fmtMiB(v.memory_used_mib) + " / " + fmtMiB(memMiB) : "–";
        const hst = live.history.get(v.name) || { cpu: [], mem: [] };
        cpuSpark.update(hst.cpu, 100 * (v.cpus || 1), "CPU, last " + Math.round(hst.cpu.length * POLL_MS / 60000) + " min");
        memSpark.update(hst.mem, memMiB || 1, "Memory, last " + Math.round(hst.mem.length * POLL_MS / 60000) + " min");
        actions.update(v);
    };
    tr.update(vm);
    return tr;
}

function dashboard(main) {
    const host = hostSummary();
    const tbody = h("tbody#vm-rows");
    const empty = h("p.empty", { hidden: true }, "No VMs yet. ", h("a", { href: "#/vms/new" }, "Create one"), ".");
    const filter = h("input#vm-filter", { type: "search", placeholder: "Filter", "aria-label": "Filter VMs" });
    const count = h("span.muted#vm-count");
    clear(main,
        host,
        h("section.card",
            h("div.row.head", h("h2", "Virtual machines"), count, h("span.spacer"), filter,
                h("a.button.primary#new-vm", { href: "#/vms/new" }, "New VM")),
            h("table.vms", h("thead", h("tr", h("th", "Name"), h("th", "State"), h("th", "CPU"), h("th", "Memory"), h("th", ""))),
                tbody),
            empty));
    const rows = new Map();
    let painted = false;
    const render = () => {
        host.update(live.host);
        if (!live.loaded) return;
        const q = filter.value.trim().toLowerCase();
        const seen = new Set();
        const sorted = [...live.vms].sort((a, b) => (a.order ?? 1e9) - (b.order ?? 1e9) || a.name.localeCompare(b.name));
        let prev = null;
        // The first frame lays out only the rows a screen shows; the rest
        // follow in the next one, so a long list does not delay first paint.
        const limit = painted ? Infinity : 40;
        let shown = 0;
        for (const vm of sorted) {
            seen.add(vm.name);
            let tr = rows.get(vm.name);
            if (!tr) { tr = vmRow(vm); rows.set(vm.name, tr); } else tr.update(vm);
            const match = q === "" || vm.name.includes(q) || (vm.node || "").toLowerCase() === q;
            tr.hidden = !match || shown >= limit;
            if (match) shown++;
            const want = prev ? prev.nextSibling : tbody.firstChild;
            if (want !== tr) tbody.insertBefore(tr, want);
            prev = tr;
        }
        for (const [name, tr] of rows) if (!seen.has(name)) { tr.remove(); rows.delete(name); }
        empty.hidden = live.vms.length !== 0;
        const running = live.vms.filter((v) => v.state === "running").length;
        count.textContent = live.vms.length + " defined · " + running + " running";
        if (!painted) {
            painted = true;
            performance.mark("cloudbios-vms-rendered");
            requestAnimationFrame(() => {
                performance.mark("cloudbios-vms-painted");
                if (shown > limit) setTimeout(render, 0);
            });
        }
    };
    filter.addEventListener("input", render);
    live.listeners.add(render);
    render();
    return { unmount: () => live.listeners.delete(render) };
}

// ---------------------------------------------------------------- router

async function route() {
    if ($("shell").hidden) return;
    const path = location.hash.replace(/^#/, "") || "/";
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    if (view) { view.unmount(); view = null; }
    const main = $("main");
    let nav = "vms";
    if (parts.length === 0) {
        view = dashboard(main);
    } else {
        const views = await import("/views.js");
        if (parts[0] === "vms" && parts[1] === "new") view = views.vmForm(main, null);
        else if (parts[0] === "vms" && parts[2] === "edit") view = views.vmForm(main, parts[1]);
        else if (parts[0] === "vms" && parts[1]) view = views.vmDetail(main, parts[1]);
        else if (parts[0] === "images") { nav = "images"; view = views.imagesPage(main); }
        else if (parts[0] === "disks") { nav = "disks"; view = views.disksPage(main); }
        else if (parts[0] === "tasks") { nav = "tasks"; view = views.tasksPage(main); }
        else if (parts[0] === "nodes") { nav = "nodes"; view = views.nodesPage(main); }
        else if (parts[0] === "backups") { nav = "backups"; view = (await import("/backups.js")).backupsPage(main, parts[1] || null); }
        else if (parts[0] === "network") { nav = "network"; view = (await import("/network.js")).networkPage(main); }
        else if (parts[0] === "apps") {
            const apps = await import("/apps.js");
            nav = "apps";
            view = parts[1] ? apps.appDetail(main, parts[1]) : apps.appsPage(main);
        }
        else view = dashboard(main);
    }
    for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.nav === nav);
    window.scrollTo(0, 0);
}
window.addEventListener("hashchange", route);

// ---------------------------------------------------------------- start

(async () => {
    try {
        const quiet = (p) => api.get(p, { quiet: true }).catch(() => null);
        const [s, vms, host, setup] = await Promise.all([api.restore(), quiet("/vms"), quiet("/host"), quiet("/setup")]);
        if (setup && setup.required) showSetup(setup, "");
        else if (!s) showLogin("");
        else showShell(Array.isArray(vms) && host ? [vms, host] : null);
    } catch (e) {
        showLogin(e.message);
    }
})();
