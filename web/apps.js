// The Apps page: container images run as microVMs. A form runs one
// (POST /api/v1/apps); the list shows each app's state, ports and exit code
// with stop and remove; an app's page shows its logs and runs commands in it.
import * as api from "/api.js";
import { h, clear, ask, flash } from "/ui.js";

const enc = encodeURIComponent;

function cell(label, v) { return h("td", { "data-label": label }, v === undefined || v === null || v === "" ? "–" : String(v)); }
function ports(a) { return (a.ports || []).map((p) => p.host + "→" + p.guest).join(", "); }

export function appsPage(main) {
    const tbody = h("tbody#app-rows");
    const msg = h("p.msg", { role: "alert" });
    const image = h("input#app-image", { name: "image", required: true, placeholder: "registry/repo:tag or store:NAME", spellcheck: "false" });
    const name = h("input#app-name", { name: "name", placeholder: "(from the image)", pattern: "[a-z0-9][a-z0-9-]{0,62}" });
    const portText = h("input#app-ports", { name: "ports", placeholder: "8080:80, 8443:443" });
    const envText = h("textarea#app-env", { name: "env", rows: 2, placeholder: "KEY=VALUE, one a line", spellcheck: "false" });
    const cmdText = h("input#app-cmd", { name: "cmd", placeholder: "(the image's command)", spellcheck: "false" });
    const memory = h("input#app-memory", { name: "memory", type: "number", min: 64, max: 65536, value: 256 });
    const restart = h("select#app-restart", { name: "restart" }, ["no", "on-failure", "always"].map((r) => h("option", { value: r }, r)));
    const form = h("form#app-form.card",
        h("h2", "Run an app"), msg,
        h("label", "Image ", image), h("label", "Name ", name), h("label", "Ports (host:guest) ", portText),
        h("label", "Environment ", envText), h("label", "Command (words) ", cmdText),
        h("label", "Memory (MiB) ", memory), h("label", "Restart ", restart),
        h("button#app-run.primary", { type: "submit" }, "Run"));
    form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        msg.textContent = "";
        const body = { image: image.value.trim(), memory: Number(memory.value), restart: restart.value };
        if (name.value.trim()) body.name = name.value.trim();
        try {
            const ps = portText.value.split(",").map((s) => s.trim()).filter(Boolean);
            body.ports = ps.map((p) => {
                const m = /^(\d+):(\d+)$/.exec(p);
                if (!m) throw new Error("a port is HOST:GUEST, not '" + p + "'");
                return { host: Number(m[1]), guest: Number(m[2]) };
            });
            const env = {};
            for (const line of envText.value.split("\n").map((s) => s.trim()).filter(Boolean)) {
                const i = line.indexOf("=");
                if (i < 1) throw new Error("an environment line is KEY=VALUE, not '" + line + "'");
                env[line.slice(0, i)] = line.slice(i + 1);
            }
            body.env = env;
            const cmd = cmdText.value.trim();
            if (cmd) body.cmd = cmd.split(/\s+/);
        } catch (e) { msg.textContent = e.message; return; }
        const button = form.querySelector("button");
        button.disabled = true;
        button.textContent = "Pulling and starting…";
        try {
            const a = await api.post("/apps", body);
            flash("app " + a.name + " started", "info");
            form.reset();
            await refresh();
        } catch (e) {
            msg.textContent = e.message;
        } finally {
            button.disabled = false;
            button.textContent = "Run";
        }
    });
    clear(main, form, h("section.card", h("h2", "Apps"),
        h("table.apps", h("thead", h("tr", h("th", "App"), h("th", "State"), h("th", "Image"), h("th", "Ports"),
            h("th", "Exit"), h("th", "Restarts"), h("th", ""))), tbody)));

    async function refresh() {
        const apps = await api.get("/apps");
        clear(tbody, apps.length ? apps.map((a) => h("tr", { "data-app": a.name },
            h("td", { "data-label": "App" }, h("a", { href: "#/apps/" + enc(a.name) }, a.name)),
            h("td", { "data-label": "State" }, h("span.state.state-" + String(a.state).replace(/[^a-z]/g, ""), a.state)),
            cell("Image", a.image), cell("Ports", ports(a)), cell("Exit", a.exit_code), cell("Restarts", a.restarts),
            h("td", { "data-label": "" },
                a.state === "running" ? h("button", { type: "button", onclick: () => act(a.name, "stop") }, "Stop") : null, " ",
                h("button.danger", { type: "button", onclick: () => act(a.name, "rm") }, "Remove"))))
            : h("tr", h("td", { colspan: 7 }, "No apps.")));
    }
    async function act(app, what) {
        try {
            if (what === "rm") {
                if (!await ask("Remove " + app + "?", "The app stops and its logs are removed; its image stays cached.", "Remove", true)) return;
                await api.del("/apps/" + enc(app));
            } else {
                await api.post("/apps/" + enc(app) + "/stop");
            }
            await refresh();
        } catch (e) { flash(e.message, "error"); }
    }
    let stopped = false;
    let timer = null;
    const tick = async () => {
        if (stopped) return;
        try { await refresh(); } catch (e) { if (e.status !== 401) flash(e.message, "error"); }
        if (!stopped) timer = setTimeout(tick, 3000);
    };
    tick();
    return { unmount() { stopped = true; clearTimeout(timer); } };
}

export function appDetail(main, name) {
    const log = h("pre#app-log.serial");
    const state = h("p#app-state.muted");
    const cmd = h("input#app-exec-cmd", { placeholder: "cat /etc/os-release", spellcheck: "false" });
    const out = h("pre#app-exec-out.serial");
    const form = h("form#app-exec.row", cmd, h("button", { type: "submit" }, "Run in the app"));
    form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const words = cmd.value.trim().split(/\s+/).filter(Boolean);
        if (!words.length) return;
        out.textContent = "…";
        try {
            const r = await api.post("/apps/" + enc(name) + "/exec", { cmd: words });
            out.textContent = r.stdout + (r.stderr ? "\n[stderr]\n" + r.stderr : "") + "\n[exit " + r.exit_code + "]";
        } catch (e) { out.textContent = e.message; }
    });
    clear(main, h("section.card", h("h2", h("a", { href: "#/apps" }, "Apps"), " / " + name), state,
        h("h3", "Logs"), log, h("h3", "Exec"), form, out));
    let offset = 0;
    let stopped = false;
    let timer = null;
    const tick = async () => {
        if (stopped) return;
        try {
            const a = await api.get("/apps/" + enc(name));
            state.textContent = a.state + (a.pid ? " · pid " + a.pid : "") + " · " + a.image + (a.message ? " · " + a.message : "");
            const res = await api.get("/apps/" + enc(name) + "/logs" + (offset ? "?offset=" + offset : ""), { raw: true });
            const text = await res.text();
            const next = Number(res.headers.get("X-Log-Offset"));
            if (next < offset) log.textContent = "";
            log.textContent += text;
            offset = Number.isFinite(next) ? next : offset + text.length;
        } catch (e) { if (e.status !== 401) state.textContent = e.message; }
        if (!stopped) timer = setTimeout(tick, 2000);
    };
    tick();
    return { unmount() { stopped = true; clearTimeout(timer); } };
}
