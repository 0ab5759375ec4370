// The panel's pages besides the dashboard: VM form, VM detail (charts,
// serial log), image store, disks, tasks.
import * as api from "/api.js";
import { h, clear, fmtBytes, fmtDuration, fmtMiB, fmtPercent, memoryMiB, parseSize, sparkline, ask, flash } from "/ui.js";
import { live, actionButtons, stateBadge, refreshNow } from "/app.js";

const NAME_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const enc = encodeURIComponent;

function poller(fn, ms) {
    let timer = null;
    let stopped = false;
    const tick = async () => {
        if (stopped) return;
        try { await fn(); } catch (e) { if (e.status !== 401 && !stopped) flash(e.message, "error"); }
        if (!stopped) timer = setTimeout(tick, ms);
    };
    tick();
    return () => { stopped = true; clearTimeout(timer); };
}

function imageOptions(images, selected, noneLabel) {
    const opts = [h("option", { value: "" }, noneLabel)];
    const names = images.map((i) => i.name);
    if (selected && !names.includes(selected)) names.unshift(selected);
    for (const n of names) opts.push(h("option", { value: n, selected: n === selected }, n));
    return opts;
}

// ---------------------------------------------------------------- VM form

const FIELDS = ["name", "memory", "cpus", "firmware", "disks", "cdrom", "kernel", "initrd", "append",
    "network", "accel", "autostart", "order", "display", "cloud_init", "forwards", "boot", "template"];

// The field an API error message is about: {"field": …} when the daemon
// names it, else the first known key the message starts with or quotes.
export function errorField(err, message) {
    if (err.body && typeof err.body.field === "string" && message === undefined) {
        const f = err.body.field.replace(/^vms(\[\d+\])?\./, "").split(/[.[]/)[0];
        if (FIELDS.includes(f)) return f;
    }
    const msg = message ?? err.message ?? "";
    if (/\bVM name\b|^(?:[^:\s]*:\d+:\d+:\s*)?VM '[^']*' already exists/.test(msg)) return "name";
    const m = /^(?:[^:\s]*:\d+:\d+:\s*)?(?:vms(?:\[\d+\])?\.)?([a-z_]+)/.exec(msg);
    if (m && FIELDS.includes(m[1])) return m[1];
    for (const f of FIELDS) {
        if (new RegExp("['\"`]" + f + "['\"`]|\\b" + f + "\\b\\s*(?::|must|is|=)").test(msg)) return f;
    }
    return null;
}

export function vmForm(main, editName) {
    const title = editName ? "Edit " + editName : "New VM";
    const form = h("form.card.vm-form#vm-form", { novalidate: true });
    const formMsg = h("p.msg.form-error#form-error", { role: "alert" });
    const errs = {};
    const field = (key, label, input, hint) => {
        errs[key] = h("span.field-error", { id: "err-" + key, role: "alert" });
        input.setAttribute?.("aria-describedby", "err-" + key);
        return h("div.field", { "data-field": key },
            h("label", { for: "f-" + key }, label), input, hint ? h("small.muted", hint) : null, errs[key]);
    };
    const inp = (key, attrs) => h("input", Object.assign({ id: "f-" + key, name: key }, attrs));
    const sel = (key, options) => h("select", { id: "f-" + key, name: key },
        options.map(([v, t]) => h("option", { value: v }, t)));

    const f = {
        name: inp("name", { required: true, maxlength: 63, autocapitalize: "off", spellcheck: "false", placeholder: "web-1" }),
        memory: inp("memory", { type: "number", min: 16, step: 1, value: 512, inputmode: "numeric" }),
        cpus: inp("cpus", { type: "number", min: 1, max: 256, step: 1, value: 1, inputmode: "numeric" }),
        firmware: sel("firmware", [["bios", "BIOS (SeaBIOS)"], ["uefi", "UEFI (OVMF)"]]),
        cdrom: h("select#f-cdrom", { name: "cdrom" }),
        kernel: h("select#f-kernel", { name: "kernel" }),
        initrd: h("select#f-initrd", { name: "initrd" }),
        append: inp("append", { placeholder: "console=ttyS0", autocapitalize: "off", spellcheck: "false" }),
        network: sel("network", [["nat", "NAT"], ["bridge", "Bridge"], ["none", "None"]]),
        accel: sel("accel", [["auto", "auto (KVM if it works)"], ["kvm", "KVM"], ["tcg", "TCG (emulation)"]]),
        autostart: inp("autostart", { type: "checkbox" }),
        order: inp("order", { type: "number", min: 0, step: 1, placeholder: "–", inputmode: "numeric" }),
        display: inp("display", { type: "checkbox" }),
        template: inp("template", { type: "checkbox" }),
        boot: sel("boot", [["", "CD first when one is set"], ["disk,cdrom", "Disks, then CD"], ["cdrom,disk", "CD, then disks"]]),
        cloud_init: inp("cloud_init", { type: "checkbox" }),
        ci_user: inp("ci_user", { placeholder: "debian", autocapitalize: "off", spellcheck: "false" }),
        ci_hostname: inp("ci_hostname", { placeholder: "the VM name", autocapitalize: "off", spellcheck: "false" }),
        ci_keys: h("textarea#f-ci_keys", { name: "ci_keys", rows: 2, spellcheck: "false", placeholder: "ssh-ed25519 AAAA… you@laptop (one per line; empty: the panel users' keys)" }),
        forwards: inp("forwards", { placeholder: "2222:22, 8080:80, 5353:53/udp", autocapitalize: "off", spellcheck: "false" }),
    };
    const disksList = h("div.disks#f-disks");
    let images = [];

    const diskRow = (d) => {
        const kind = h("select.disk-kind", { "aria-label": "Disk kind" },
            h("option", { value: "size" }, "New disk"), h("option", { value: "image" }, "From image"));
        const size = h("input.disk-size", { placeholder: d.image ? "image size" : "8G", "aria-label": "Disk size", value: d.size || "" });
        const image = h("select.disk-image", { "aria-label": "Disk image" }, imageOptions(images, d.image, "– choose –"));
        const rm = h("button.small", { type: "button", "aria-label": "Remove disk" }, "✕");
        const id = h("code.disk-id.muted", { title: "the disk's id: its file is named by it" }, d.id || "new");
        const row = h("div.disk-row.row", id, kind, image, size, rm);
        row.dataset.id = d.id || "";
        const sync = () => { image.hidden = kind.value !== "image"; size.placeholder = kind.value === "image" ? "grow to (optional)" : "8G"; };
        kind.value = d.image ? "image" : "size";
        kind.addEventListener("change", sync);
        rm.addEventListener("click", () => row.remove());
        row.read = () => {
            const out = kind.value === "size" ? { size: size.value.trim() } : { image: image.value };
            if (kind.value === "image" && size.value.trim()) out.size = size.value.trim();
            if (row.dataset.id) out.id = row.dataset.id;
            return out;
        };
        row.refreshImages = () => { const v = image.value; clear(image, imageOptions(images, v, "– choose –")); };
        sync();
        return row;
    };
    const addDisk = h("button.small#add-disk", { type: "button", onclick: () => disksList.append(diskRow({ size: "8G" })) }, "+ Add disk");

    form.append(
        h("h2", title), formMsg,
        h("fieldset", h("legend", "Machine"),
            field("name", "Name", f.name, "lower-case letters, digits and '-'"),
            field("memory", "Memory (MiB)", f.memory),
            field("cpus", "CPUs", f.cpus),
            field("firmware", "Firmware", f.firmware),
            field("accel", "Acceleration", f.accel)),
        h("fieldset", h("legend", "Storage"),
            field("disks", "Disks", h("div", disksList, addDisk)),
            field("cdrom", "CD-ROM", f.cdrom, "an ISO from the image store; it can change while the VM runs"),
            field("boot", "Boot order", f.boot)),
        h("fieldset", h("legend", "Cloud-init (cloud images)"),
            h("div.field.check", h("label", f.cloud_init, " Give the guest a cloud-init seed"), errs.cloud_init = h("span.field-error#err-cloud_init")),
            field("ci_user", "User", f.ci_user, "gets the SSH keys and passwordless sudo"),
            field("ci_hostname", "Host name", f.ci_hostname),
            field("ci_keys", "SSH public keys", f.ci_keys)),
        h("fieldset", h("legend", "Direct kernel boot"),
            field("kernel", "Kernel", f.kernel),
            field("initrd", "Initrd", f.initrd),
            field("append", "Kernel command line", f.append)),
        h("fieldset", h("legend", "Network and start"),
            field("network", "Network", f.network),
            field("forwards", "Port forwards (NAT)", f.forwards, "host:guest, from every host address"),
            h("div.field.check", h("label", f.autostart, " Start with the host"), errs.autostart = h("span.field-error#err-autostart")),
            field("order", "Start order", f.order),
            h("div.field.check", h("label", f.display, " Show on the local display"), errs.display = h("span.field-error#err-display")),
            h("div.field.check", h("label", f.template, " Template (never starts; cloned)"), errs.template = h("span.field-error#err-template"))),
        h("div.row.end",
            h("a.button", { href: editName ? "#/vms/" + enc(editName) : "#/" }, "Cancel"),
            h("button.primary#vm-submit", { type: "submit" }, editName ? "Save" : "Create")));
    clear(main, form);

    const fillImages = (spec) => {
        clear(f.cdrom, imageOptions(images, spec.cdrom, "none"));
        clear(f.kernel, imageOptions(images, spec.kernel, "none"));
        clear(f.initrd, imageOptions(images, spec.initrd, "none"));
        for (const r of disksList.children) r.refreshImages();
    };
    const fill = (spec) => {
        f.name.value = spec.name || "";
        f.name.readOnly = !!editName;
        f.memory.value = spec.memory !== undefined ? memoryMiB(spec.memory) : 512;
        f.cpus.value = spec.cpus ?? 1;
        f.firmware.value = spec.firmware || "bios";
        f.append.value = spec.append || "";
        f.network.value = spec.network || "nat";
        f.accel.value = spec.accel || "auto";
        f.autostart.checked = !!spec.autostart;
        f.order.value = spec.order ?? "";
        f.display.checked = !!spec.display;
        f.template.checked = !!spec.template;
        f.boot.value = Array.isArray(spec.boot) ? spec.boot.join(",") : "";
        const ci = spec.cloud_init;
        f.cloud_init.checked = !!ci;
        f.ci_user.value = ci?.user || "";
        f.ci_hostname.value = ci?.hostname || "";
        f.ci_keys.value = (ci?.ssh_authorized_keys || []).join("\n");
        f.forwards.value = (spec.forwards || []).map((x) => x.host + ":" + x.guest + (x.proto === "udp" ? "/udp" : "")).join(", ");
        clear(disksList, (spec.disks || []).map(diskRow));
        fillImages(spec);
    };
    let original = {};
    fill(original);
    (async () => {
        try {
            const [imgs, spec] = await Promise.all([
                api.get("/images"), editName ? api.get("/vms/" + enc(editName)) : Promise.resolve(null)]);
            images = Array.isArray(imgs) ? imgs : [];
            if (spec) { original = spec; fill(spec); } else fillImages({});
        } catch (e) {
            formMsg.textContent = e.message;
        }
    })();

    const showErrors = (map, general) => {
        for (const k of Object.keys(errs)) errs[k].textContent = "";
        for (const el of form.querySelectorAll(".invalid")) el.classList.remove("invalid");
        for (const [k, m] of Object.entries(map)) {
            errs[k].textContent = m;
            form.querySelector("[data-field='" + k + "']")?.classList.add("invalid");
        }
        formMsg.textContent = general || "";
        const first = Object.keys(map)[0];
        if (first) (document.getElementById("f-" + first) || disksList).focus?.();
    };

    const collect = () => {
        const e = {};
        const spec = {};
        const name = f.name.value.trim();
        if (!NAME_RE.test(name)) e.name = name === "" ? "a name is required"
            : "use 1–63 lower-case letters, digits or '-', starting with a letter or digit";
        spec.name = name;
        const mem = Number(f.memory.value);
        if (!Number.isInteger(mem) || mem < 16) e.memory = "memory is a whole number of MiB, at least 16";
        else if (live.host && (live.host.memory?.total_mib ?? live.host.memory_total_mib) < mem)
            e.memory = "more than the host's " + fmtMiB(live.host.memory?.total_mib ?? live.host.memory_total_mib);
        spec.memory = mem;
        const cpus = Number(f.cpus.value);
        if (!Number.isInteger(cpus) || cpus < 1 || cpus > 256) e.cpus = "CPUs is a whole number from 1 to 256";
        spec.cpus = cpus;
        spec.firmware = f.firmware.value;
        spec.accel = f.accel.value;
        const disks = [];
        for (const r of disksList.children) {
            const d = r.read();
            if ("size" in d) {
                const b = parseSize(d.size);
                if (b === null || b < 1048576) { e.disks = "a disk size is like 512M, 8G or 8GiB (at least 1M)"; continue; }
            }
            if ("image" in d && !d.image) { e.disks = "choose an image for each disk from the image store"; continue; }
            disks.push(d);
        }
        if (disks.length || original.disks) spec.disks = disks;
        for (const k of ["cdrom", "kernel", "initrd"]) if (f[k].value) spec[k] = f[k].value;
        if (f.append.value.trim()) spec.append = f.append.value.trim();
        if (spec.initrd && !spec.kernel) e.initrd = "an initrd needs a kernel";
        if (spec.append && !spec.kernel) e.append = "a kernel command line needs a kernel";
        spec.network = f.network.value;
        spec.autostart = f.autostart.checked;
        if (f.order.value !== "") {
            const o = Number(f.order.value);
            if (!Number.isInteger(o) || o < 0) e.order = "order is a whole number, 0 or more";
            spec.order = o;
        }
        spec.display = f.display.checked;
        if (f.template.checked || original.template) spec.template = f.template.checked;
        if (f.boot.value) spec.boot = f.boot.value.split(",");
        if (f.cloud_init.checked) {
            const ci = Object.assign({}, original.cloud_init || {});
            delete ci.user; delete ci.hostname;
            if (f.ci_user.value.trim()) ci.user = f.ci_user.value.trim();
            if (f.ci_hostname.value.trim()) ci.hostname = f.ci_hostname.value.trim();
            ci.ssh_authorized_keys = f.ci_keys.value.split("\n").map((k) => k.trim()).filter(Boolean);
            spec.cloud_init = ci;
        }
        const fw = [];
        for (const part of f.forwards.value.split(/[,\s]+/).filter(Boolean)) {
            const m = /^(\d{1,5}):(\d{1,5})(?:\/(tcp|udp))?$/.exec(part);
            if (!m) { e.forwards = "write forwards as host:guest, e.g. 2222:22 or 5353:53/udp"; break; }
            fw.push({ host: Number(m[1]), guest: Number(m[2]), proto: m[3] || "tcp" });
        }
        if (fw.length && spec.network !== "nat") e.forwards = "forwards need the NAT network";
        if (fw.length || original.forwards?.length) spec.forwards = fw;
        return { spec, errors: e };
    };

    form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const { spec, errors } = collect();
        if (Object.keys(errors).length) { showErrors(errors, "Please correct the fields marked below."); return; }
        showErrors({}, "");
        const btn = document.getElementById("vm-submit");
        btn.disabled = true;
        try {
            if (editName) await api.put("/vms/" + enc(editName), spec);
            else await api.post("/vms", spec);
            flash((editName ? "Saved " : "Created ") + spec.name);
            refreshNow();
            location.hash = "#/vms/" + enc(spec.name);
        } catch (e) {
            // each problem next to its field (the daemon lists them in "errors")
            const list = Array.isArray(e.body && e.body.errors) && e.body.errors.length ? e.body.errors : [e.message];
            const map = {};
            const rest = [];
            for (const m of list) {
                const k = errorField(e, list.length === 1 ? undefined : m);
                const text = String(m).replace(/^[^:\s]*:\d+:\d+:\s*/, "");
                if (k && errs[k]) map[k] = map[k] ? map[k] + "; " + text : text;
                else rest.push(text);
            }
            showErrors(map, "The daemon refused the VM: " + (rest.length ? rest.join("; ") : "see the fields marked below."));
        } finally {
            btn.disabled = false;
        }
    });
    return { unmount() {} };
}

// ---------------------------------------------------------------- VM detail

export function vmDetail(main, name) {
    const state = stateBadge("");
    const actions = h("div");
    const info = h("dl.info");
    const cpuSpark = sparkline([], 100);
    const memSpark = sparkline([], 1);
    const cpuNow = h("span.num");
    const memNow = h("span.num");
    const log = h("pre.serial#serial-log", { tabindex: 0, "aria-label": "Serial console" });
    const follow = h("input#serial-follow", { type: "checkbox", checked: true });
    const shot = h("img.shot#vm-shot", { alt: "Screen of " + name, hidden: true });
    let actionsEl = null;
    const clone = cloneCard(name);
    // the CD drive: insert or eject now, also while the VM runs
    const cdPick = h("select#cd-image", { "aria-label": "ISO image" });
    const cdInsert = h("button.small#cd-insert", { type: "button" }, "Insert");
    const cdEject = h("button.small#cd-eject", { type: "button" }, "Eject");
    const cdCard = h("section.card", h("h3", "CD drive"), h("div.row", cdPick, cdInsert, cdEject));
    const setCD = async (image) => {
        try {
            await api.post("/vms/" + enc(name) + "/cdrom", { image });
            flash(image ? name + ": " + image + " inserted" : name + ": CD ejected");
            refreshNow();
        } catch (e) { flash(name + ": " + e.message, "error"); }
    };
    cdInsert.addEventListener("click", () => { if (cdPick.value) setCD(cdPick.value); });
    cdEject.addEventListener("click", () => setCD(null));
    api.get("/images").then((imgs) => clear(cdPick, imageOptions(Array.isArray(imgs) ? imgs : [], null, "– choose an ISO –"))).catch(() => {});
    clear(main,
        h("div.row.head", h("h2", h("a", { href: "#/" }, "VMs"), " / ", name), state, h("span.spacer"), actions),
        h("div.detail-grid",
            h("section.card", h("h3", "CPU ", cpuNow), cpuSpark),
            h("section.card", h("h3", "Memory ", memNow), memSpark),
            h("section.card", h("h3", "Configuration"), info),
            cdCard,
            snapshotCard(name),
            clone,
            h("section.card", h("h3", "Screen"), shot)),
        h("section.card",
            h("div.row.head", h("h3", "Serial console"), h("span.spacer"),
                h("label", follow, " follow")),
            log));

    let missing = false;
    const render = () => {
        const vm = live.vms.find((v) => v.name === name);
        if (!vm) {
            if (live.loaded && !missing) { missing = true; clear(info, h("p", "This VM does not exist (any more).")); }
            return;
        }
        missing = false;
        state.update(vm.state);
        if (!actionsEl) {
            actionsEl = actionButtons(vm, () => { location.hash = "#/"; });
            actions.append(actionsEl);
        } else actionsEl.update(vm);
        const up = vm.state === "running" || vm.state === "paused";
        const mem = memoryMiB(vm.memory);
        const hst = live.history.get(name) || { cpu: [], mem: [] };
        cpuNow.textContent = up ? fmtPercent(vm.cpu_percent) : "";
        memNow.textContent = up && typeof vm.memory_used_mib === "number" ? fmtMiB(vm.memory_used_mib) + " / " + fmtMiB(mem) : "";
        cpuSpark.update(hst.cpu, 100 * (vm.cpus || 1), "CPU");
        memSpark.update(hst.mem, mem || 1, "Memory");
        const rows = [
            ["Memory", fmtMiB(mem)], ["CPUs", vm.cpus ?? 1], ["Firmware", vm.firmware || "bios"],
            ["Acceleration", (vm.accel || "auto") + (up && vm.accel_in_use ? " (using " + vm.accel_in_use.toUpperCase() + ")" : "")],
            ["Network", vm.network || "nat"],
            ["Disks", (vm.disks || []).map((d) => (d.id ? d.id + ": " : "") + (d.image ? "image " + d.image + (d.size ? " grown to " + d.size : "") : d.size)).join(", ") || "none"],
            ["Addresses", (vm.addresses || []).map((a) => a.address + "/" + a.prefix + " (" + a.interface + ")").join(", ") || (vm.state === "running" ? "waiting for the guest agent" : "–")],
            ["Forwards", (vm.forwards || []).map((x) => "host " + x.host + " → " + x.guest + (x.proto === "udp" ? "/udp" : "")).join(", ") || "none"],
            ["CD-ROM", vm.cdrom || "none"], ["Kernel", vm.kernel || "–"], ["Initrd", vm.initrd || "–"],
            ["Command line", vm.append || "–"],
            ["Autostart", vm.autostart ? "yes" + (vm.order !== undefined ? ", order " + vm.order : "") : "no"],
            ["Local display", vm.display ? "yes" : "no"],
            ["Template", vm.template ? "yes: it never starts; clone it" : "no"],
        ];
        if (up && typeof vm.uptime_seconds === "number") rows.unshift(["Up", fmtDuration(vm.uptime_seconds)]);
        if (vm.message) rows.unshift([vm.state === "crashed" ? "Crashed" : "Note", vm.message]);
        clear(info, rows.map(([k, v]) => [h("dt", k), h("dd", String(v))]));
        shot.hidden = !up;
    };
    live.listeners.add(render);
    render();

    // Follow the log: ?offset=N returns what was appended since N, and
    // X-Log-Offset the size to ask from next time.
    let offset = 0;
    let buffered = "";
    const stopSerial = poller(async () => {
        const res = await api.get("/vms/" + enc(name) + "/serial?offset=" + offset, { raw: true });
        const text = await res.text();
        const next = Number(res.headers.get("X-Log-Offset"));
        if (!Number.isFinite(next) || next < offset) { buffered = text; offset = Number.isFinite(next) ? next : 0; }
        else { buffered += text; offset = next; }
        if (text === "" && log.textContent.length === buffered.length) return;
        if (buffered.length > 262144) buffered = buffered.slice(-262144);
        const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
        log.textContent = buffered;
        if (follow.checked || atEnd) log.scrollTop = log.scrollHeight;
    }, 1000);
    const stopShot = poller(async () => {
        if (shot.hidden) return;
        shot.src = "/api/v1/vms/" + enc(name) + "/screenshot?t=" + Date.now();
    }, 5000);
    return { unmount() { live.listeners.delete(render); clone.stop(); stopSerial(); stopShot(); } };
}

// ---------------------------------------------------------------- snapshots and clones

// Follows a task (GET /tasks/ID) until it ends; its final state.
async function followTask(task, what) {
    for (let i = 0; i < 3600; i++) {
        const t = await api.get("/tasks/" + enc(task.id));
        if (t.state === "succeeded" || t.state === "failed") {
            flash(what + ": " + t.message, t.state === "failed" ? "error" : undefined);
            refreshNow();
            return t;
        }
        await new Promise((r) => setTimeout(r, 500));
    }
    return task;
}

const SNAP_RE = /^[A-Za-z][A-Za-z0-9._-]{0,39}$/;

// The VM's snapshots as a tree (children under their parent, the current
// one marked), with take (disks only, or with the RAM), revert and delete.
function snapshotCard(name) {
    const base = "/vms/" + enc(name) + "/snapshots";
    const tree = h("ul.snapshots#snapshot-tree");
    const snapName = h("input#snap-name", { placeholder: "before-upgrade", maxlength: 40, "aria-label": "Snapshot name",
        autocapitalize: "off", spellcheck: "false" });
    const withRAM = h("input#snap-memory", { type: "checkbox" });
    const take = h("button.small#snap-take", { type: "button" }, "Take");
    const msg = h("span.field-error#snap-error", { role: "alert" });
    const load = async () => {
        let list = [];
        try { list = await api.get(base); } catch (e) { msg.textContent = e.message; return; }
        const item = (s) => {
            const kids = list.filter((c) => c.parent === s.name);
            const what = s.memory ? "with RAM" : s.quiesced ? "disks, quiesced" : s.consistency === "stopped" ? "disks, stopped" : "disks, crash-consistent";
            return h("li", { "data-snapshot": s.name },
                h("span" + (s.current ? ".current" : ""), s.name + (s.current ? " ● current" : "")), " ",
                h("small.muted", s.time + " · " + what), " ",
                h("button.small", { type: "button", "data-snap-action": "revert", onclick: () => revert(s) }, "Revert"),
                h("button.small.danger", { type: "button", "data-snap-action": "delete", onclick: () => remove(s) }, "Delete"),
                kids.length ? h("ul", kids.map(item)) : null);
        };
        const roots = list.filter((s) => !s.parent);
        clear(tree, roots.length ? roots.map(item) : h("li.muted", "No snapshots."));
    };
    const revert = async (s) => {
        const how = s.memory ? "The guest goes back to where it was then, RAM and all; what happened since is lost."
            : "The disks go back; a running VM is powered off and starts again from them.";
        if (!await ask("Revert " + name + " to " + s.name + "?", how, "Revert", true)) return;
        try { await followTask(await api.post(base + "/" + enc(s.name) + "/revert"), name + ": revert"); } catch (e) { flash(name + ": " + e.message, "error"); }
        load();
    };
    const remove = async (s) => {
        if (!await ask("Delete snapshot " + s.name + "?", "Its children hang from its parent afterwards. The VM itself is not changed.", "Delete", true)) return;
        try { await api.del(base + "/" + enc(s.name)); flash(name + ": snapshot " + s.name + " deleted"); } catch (e) { flash(name + ": " + e.message, "error"); }
        load();
    };
    take.addEventListener("click", async () => {
        msg.textContent = "";
        const n = snapName.value.trim();
        if (!SNAP_RE.test(n)) { msg.textContent = "a letter, then letters, digits, '.', '_' or '-' (up to 40)"; return; }
        take.disabled = true;
        try {
            const t = await followTask(await api.post(base, { name: n, memory: withRAM.checked }), name + ": snapshot");
            if (t.state === "succeeded") snapName.value = "";
        } catch (e) { msg.textContent = e.message; } finally { take.disabled = false; }
        load();
    });
    load();
    return h("section.card#snapshots", h("h3", "Snapshots"), tree,
        h("div.row", snapName, h("label", withRAM, " with RAM"), take), msg);
}

// Clone: a linked clone of a template (its disks over the template's) or a full copy.
function cloneCard(name) {
    const newName = h("input#clone-name", { placeholder: name + "-2", maxlength: 63, "aria-label": "New VM name",
        autocapitalize: "off", spellcheck: "false" });
    const linked = h("input#clone-linked", { type: "checkbox" });
    const go = h("button.small#clone-go", { type: "button" }, "Clone");
    const msg = h("span.field-error#clone-error", { role: "alert" });
    const sync = () => {
        const vm = live.vms.find((v) => v.name === name);
        linked.disabled = !(vm && vm.template);
        if (linked.disabled) linked.checked = false;
        else if (!linked.dataset.touched) linked.checked = true;
    };
    linked.addEventListener("change", () => { linked.dataset.touched = "1"; });
    live.listeners.add(sync);
    sync();
    go.addEventListener("click", async () => {
        msg.textContent = "";
        const n = newName.value.trim();
        if (!NAME_RE.test(n)) { msg.textContent = "lower-case letters, digits and '-'"; return; }
        go.disabled = true;
        try {
            const t = await followTask(await api.post("/vms/" + enc(name) + "/clone", { name: n, linked: linked.checked }), name + ": clone");
            if (t.state === "succeeded") location.hash = "#/vms/" + enc(n);
        } catch (e) { msg.textContent = e.message; } finally { go.disabled = false; }
    });
    const card = h("section.card#clone", h("h3", "Clone"),
        h("p.muted", "A new VM with this one's disks: linked (over a template's disks, made in a moment) or a full copy. New MACs, a new cloud-init instance, the new name as host name."),
        h("div.row", newName, h("label", linked, " linked (templates)"), go), msg);
    card.stop = () => live.listeners.delete(sync);
    return card;
}

// ---------------------------------------------------------------- images

export function imagesPage(main) {
    const tbody = h("tbody#image-rows");
    const uploads = h("div.uploads#uploads");
    const picker = h("input#image-file", { type: "file", multiple: true });
    const nameInput = h("input#image-name", { placeholder: "name (from the file name)", autocapitalize: "off", spellcheck: "false" });
    const drop = h("label.drop#image-drop", { for: "image-file" },
        h("strong", "Drop ISOs, kernels, initrds or disk images here"), h("span.muted", " or click to choose files"), picker);
    clear(main,
        h("section.card",
            h("h2", "Image store"),
            h("div.row", h("label", { for: "image-name" }, "Name"), nameInput),
            drop, uploads),
        h("section.card",
            h("table.images", h("thead", h("tr", h("th", "Name"), h("th", "Size"), h("th", "SHA-256"), h("th", "Used by"), h("th", ""))),
                tbody)));

    const load = async () => {
        const list = await api.get("/images");
        const imgs = Array.isArray(list) ? list : [];
        clear(tbody, imgs.length ? imgs.map((img) => {
            const used = img.in_use_by || [];
            return h("tr", { "data-image": img.name },
                h("td", { "data-label": "Name" }, img.name),
                h("td", { "data-label": "Size" }, fmtBytes(img.size)),
                h("td.hash", { "data-label": "SHA-256", title: img.sha256 || "" }, img.sha256 ? img.sha256.slice(0, 16) + "…" : "–"),
                h("td", { "data-label": "Used by" }, used.length ? used.join(", ") : "–"),
                h("td", h("button.danger.small", {
                    type: "button", disabled: used.length > 0, title: used.length ? "in use by " + used.join(", ") : "",
                    onclick: async () => {
                        if (!await ask("Delete image " + img.name + "?", "The file is removed from the image store.", "Delete", true)) return;
                        try { await api.del("/images/" + enc(img.name)); flash(img.name + " deleted"); } catch (e) { flash(e.message, "error"); }
                        load();
                    },
                }, "Delete")));
        }) : h("tr", h("td", { colspan: 5 }, "The image store is empty.")));
    };

    const upload = (file) => {
        let name = nameInput.value.trim();
        if (!name || picker.files.length > 1) name = file.name.replace(/[^A-Za-z0-9._-]+/g, "-");
        nameInput.value = "";
        const bar = h("progress.upload-bar", { max: 100, value: 0 });
        const pct = h("span.num", "0 %");
        const status = h("span.muted");
        const cancel = h("button.small", { type: "button" }, "Cancel");
        const row = h("div.upload", { "data-upload": name }, h("strong", name), " ", h("span.muted", fmtBytes(file.size)), bar, pct, status, cancel);
        uploads.append(row);
        const started = performance.now();
        const job = api.uploadImage(name, file, (done, total) => {
            const p = total ? Math.floor(100 * done / total) : 100;
            bar.value = p;
            pct.textContent = p + " %";
            const secs = (performance.now() - started) / 1000;
            if (secs > 0.5) status.textContent = fmtBytes(done / secs) + "/s";
        });
        cancel.addEventListener("click", () => job.abort());
        job.done.then(() => {
            row.classList.add("done");
            status.textContent = "uploaded";
            cancel.remove();
            flash(name + " uploaded");
            load();
        }, (e) => {
            row.classList.add("failed");
            status.textContent = e.message;
            cancel.remove();
        });
    };
    picker.addEventListener("change", () => { for (const f of picker.files) upload(f); picker.value = ""; });
    for (const t of ["dragenter", "dragover"]) drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); });
    for (const t of ["dragleave", "drop"]) drop.addEventListener(t, () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
        e.preventDefault();
        for (const f of e.dataTransfer.files) upload(f);
    });
    const stop = poller(load, 10000);
    return { unmount: stop };
}

// ---------------------------------------------------------------- disks

const GPT_TYPES = {
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "EFI system", "21686148-6449-6e6f-744e-656564454649": "BIOS boot",
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "Linux filesystem", "ebd0a0a2-b9e5-4433-87c0-68b6b72699c7": "Basic data",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "Linux swap", "e6d6d379-f507-44c2-a23c-238f2a3df928": "Linux LVM",
    "a19d880f-05fc-4d3b-a006-743f0f84911e": "Linux RAID", "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "Linux root (x86-64)",
};
const partType = (t) => t ? GPT_TYPES[String(t).toLowerCase()] || t : null;

function cell(label, v) { return h("td", { "data-label": label }, v === undefined || v === null || v === "" ? "–" : String(v)); }

export function disksPage(main) {
    const box = h("div#disks");
    clear(main, h("section.card", h("h2", "Disks"), box));
    (async () => {
        try {
            const install = await import("/install.js");
            const r = await api.get("/disks");
            const disks = Array.isArray(r) ? r : (r.disks || []);
            if (!disks.length) { clear(box, h("p", "No block devices.")); return; }
            clear(box, disks.map((d) => {
                const parts = d.partitions || [];
                const fss = d.filesystems || [];
                return h("article.disk", { "data-disk": d.path || d.name },
                    h("h3", d.path || d.name, " ", h("span.muted", fmtBytes(d.size))),
                    h("p.muted", [d.model, d.serial ? "serial " + d.serial : null, d.transport, d.ssd ? "SSD" : null,
                        d.removable ? "removable" : null, d.read_only ? "read-only" : null, d.partition_table,
                        d.boot_medium ? "boot medium" : null, d.cloudbios_installed ? "CloudBIOS installed" : null,
                        d.backing_file ? "file " + d.backing_file : null,
                        (d.mountpoints || []).length ? "mounted at " + d.mountpoints.join(", ") : null].filter(Boolean).join(" · ")),
                    d.boot_medium || d.read_only ? null : dataDiskForm(d),
                    d.boot_medium || d.read_only ? null : install.installForm(d),
                    d.by_id ? h("p.muted.hash", d.by_id) : null,
                    fss.length ? h("p", "Filesystem: ", fss.map((x) => typeof x === "string" ? x : [x.type || x.fstype, x.label, x.uuid].filter(Boolean).join(" ")).join(", ")) : null,
                    parts.length ? h("table.parts",
                        h("thead", h("tr", h("th", "Partition"), h("th", "Size"), h("th", "Type"), h("th", "Filesystem"), h("th", "Label"), h("th", "Mounted"))),
                        h("tbody", parts.map((p) => h("tr",
                            cell("Partition", p.path || "#" + p.number), cell("Size", fmtBytes(p.size)),
                            cell("Type", partType(p.type)), cell("Filesystem", p.filesystem || p.fstype),
                            cell("Label", p.label || p.name), cell("Mounted", (p.mountpoints || []).join(", ") || p.mountpoint))))) : h("p.muted", "no partitions"));
            }));
        } catch (e) {
            clear(box, h("p.msg", e.message));
        }
    })();
    return { unmount() {} };
}

// A disk made a data disk (CB-DATA): the state (images, VMs, backups) lives
// on it. A disk holding anything is refused unless "wipe" is ticked.
function dataDiskForm(d) {
    const name = (d.path || d.name || "").replace(/^\/dev\//, "");
    const wipe = h("input", { type: "checkbox", name: "wipe" });
    const msg = h("span.msg");
    const btn = h("button", { type: "button", "data-init": name }, "Make data disk (CB-DATA)");
    btn.addEventListener("click", async () => {
        const destroy = wipe.checked ? " Everything on it is destroyed." : "";
        if (!(await ask("Make " + (d.path || name) + " a data disk?",
            "It gets one partition labelled CB-DATA that keeps images, VMs and backups across boots." + destroy,
            "Make data disk", wipe.checked))) return;
        btn.disabled = true;
        msg.textContent = "";
        try {
            const t = await api.post("/disks/" + encodeURIComponent(name) + "/init", { wipe: wipe.checked });
            msg.textContent = "Started: task " + t.id + " (see Tasks).";
            flash("Making " + (d.path || name) + " a data disk: task " + t.id);
        } catch (e) {
            msg.textContent = e.message;
        } finally {
            btn.disabled = false;
        }
    });
    return h("p.row.data-disk", btn, h("label.check", wipe, " wipe what it holds"), msg);
}

// ---------------------------------------------------------------- tasks

export function tasksPage(main) {
    const tbody = h("tbody#task-rows");
    clear(main, h("section.card", h("h2", "Tasks"),
        h("table.tasks", h("thead", h("tr", h("th", "Task"), h("th", "Kind"), h("th", "State"), h("th", "Progress"), h("th", "Message"))), tbody)));
    const stop = poller(async () => {
        const r = await api.get("/tasks");
        const tasks = Array.isArray(r) ? r : (r.tasks || []);
        clear(tbody, tasks.length ? [...tasks].reverse().map((t) => {
            const p = typeof t.progress === "number" ? Math.max(0, Math.min(100, t.progress)) : null;
            return h("tr", { "data-task": t.id },
                cell("Task", t.id), cell("Kind", t.kind),
                h("td", { "data-label": "State" }, h("span.state.state-" + String(t.state).replace(/[^a-z]/g, ""), t.state)),
                h("td", { "data-label": "Progress" }, p === null ? "–" : [h("progress", { max: 100, value: Math.round(p) }), " " + Math.round(p) + " %"]),
                h("td.message", { "data-label": "Message" }, t.message || ""));
        }) : h("tr", h("td", { colspan: 5 }, "No tasks.")));
    }, 2000);
    return { unmount: stop };
}

// ---------------------------------------------------------------- nodes

export function nodesPage(main) {
    const tbody = h("tbody#node-rows");
    const note = h("p.hint#nodes-note", "");
    const join = joinForm();
    join.hidden = true;
    clear(main, h("section.card", h("h2", "Nodes"), note,
        h("table.nodes", h("thead", h("tr", h("th", "Node"), h("th", "Address"), h("th", "State"), h("th", "CPUs"),
            h("th", "Memory"), h("th", "Free"), h("th", "VMs"), h("th", ""))), tbody)), join);
    const stop = poller(async () => {
        let nodes;
        try {
            nodes = await api.get("/nodes", { quiet: true });
        } catch (e) {
            if (e.status !== 409) throw e;
            note.textContent = e.message;
            clear(tbody, h("tr", h("td", { colspan: 8 }, "This machine is on its own.")));
            join.hidden = false;
            return;
        }
        join.hidden = true;
        note.textContent = "A node is down once it has missed its heartbeats for 10 s; its VMs are not started elsewhere.";
        clear(tbody, nodes.map((n) => h("tr", { "data-node": n.name, "data-local": n.local ? "true" : null },
            cell("Node", n.local ? n.name + " (this node)" : n.name), cell("Address", n.address),
            h("td", { "data-label": "State" }, h("span.state.state-" + (n.state === "up" ? "running" : "stopped"), n.state)),
            cell("CPUs", n.cpus), cell("Memory", fmtMiB(n.memory)), cell("Free", fmtMiB(n.memory_free)), cell("VMs", n.vms),
            h("td", n.state === "down" ? h("button.danger.small", {
                type: "button",
                onclick: async () => {
                    if (!await ask("Remove node " + n.name + "?", "Its etcd member and its record leave the fleet.", "Remove", true)) return;
                    try { await api.del("/nodes/" + enc(n.name)); flash(n.name + " removed"); } catch (e) { flash(e.message, "error"); }
                },
            }, "Remove") : n.local ? h("button.danger.small#leave-fleet", {
                type: "button",
                onclick: async () => {
                    if (!await ask("Leave the fleet?", "This node's etcd member and record leave the fleet and it runs on its own; " +
                        "its VMs stay here (none may run: stop or migrate them first).", "Leave", true)) return;
                    try { await api.del("/nodes/" + enc(n.name)); flash(n.name + " left the fleet"); } catch (e) { flash(e.message, "error"); }
                },
            }, "Leave") : ""))));
    }, 3000);
    return { unmount: stop };
}

// Joining a fleet from a machine on its own: through one of its nodes, with
// the fleet's name and token (its cloudbios.yaml's cluster: section).
function joinForm() {
    const input = (name, attrs) => h("input#join-" + name, Object.assign({ name, autocomplete: "off" }, attrs || {}));
    const fields = {
        member: input("member", { placeholder: "10.0.0.11", required: true }),
        fleet: input("fleet", { placeholder: "lab", required: true }),
        token: input("token", { type: "password", required: true, minlength: 16 }),
        node: input("node", { placeholder: "the hostname" }),
        address: input("address", { placeholder: "this machine's first address" }),
    };
    const msg = h("p.msg#join-msg");
    const btn = h("button#join-submit", { type: "submit" }, "Join");
    const row = (label, el, hint) => h("label.field", h("span", label), el, hint ? h("small.hint", hint) : null);
    const form = h("form.card#join-form", { novalidate: true },
        h("h2", "Join a fleet"),
        h("p.hint", "This machine becomes a node of a running fleet: its config file gets the cluster: section, " +
            "and it joins now. No VM may run here meanwhile."),
        row("A node of the fleet", fields.member, "its IPv4 address"),
        row("Fleet name", fields.fleet, "cluster.name on its nodes"),
        row("Token", fields.token, "the fleet's shared secret"),
        row("This node's name", fields.node, "optional"),
        row("This node's address", fields.address, "optional: the IPv4 address the others reach"),
        h("p.row", btn), msg);
    form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const body = { member: fields.member.value.trim(), fleet: fields.fleet.value.trim(), token: fields.token.value };
        if (fields.node.value.trim()) body.node = fields.node.value.trim();
        if (fields.address.value.trim()) body.address = fields.address.value.trim();
        btn.disabled = true;
        msg.textContent = "Joining " + body.fleet + " through " + body.member + "…";
        try {
            const r = await api.post("/cluster/join", body);
            msg.textContent = "";
            fields.token.value = "";
            flash("Joined fleet " + r.fleet + " as " + r.node);
        } catch (e) {
            msg.textContent = e.message;
        } finally {
            btn.disabled = false;
        }
    });
    return form;
}
