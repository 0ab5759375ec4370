// The serial console of a VM, interactive, on xterm.js: the daemon's
// WebSocket /api/v1/vms/{name}/terminal carries the guest's serial bytes
// both ways (authenticated by the session cookie, same origin only).
const vm = new URLSearchParams(location.search).get("vm") || "";
const $ = (id) => document.getElementById(id);
$("vm-name").textContent = vm;
document.title = vm + " · Terminal · CloudBIOS";

const FONT = { fontFamily: "monospace", fontSize: 15 };
const term = new window.XtermBundle.Terminal(Object.assign({ cursorBlink: true, scrollback: 5000 }, FONT));
term.open($("term"));

// as many rows and columns as the window holds (measured with the same font)
function fit() {
    const probe = document.createElement("span");
    probe.style.cssText = "position:absolute;visibility:hidden;white-space:pre;font-family:" + FONT.fontFamily + ";font-size:" + FONT.fontSize + "px";
    probe.textContent = "W".repeat(20);
    document.body.appendChild(probe);
    const cw = probe.getBoundingClientRect().width / 20, ch = probe.getBoundingClientRect().height;
    probe.remove();
    const box = $("term");
    const cols = Math.max(20, Math.floor((box.clientWidth - 16) / cw));
    const rows = Math.max(5, Math.floor((box.clientHeight - 8) / ch));
    if (cols !== term.cols || rows !== term.rows) term.resize(cols, rows);
}
fit();
window.addEventListener("resize", fit);
// what the page shows, for tests and screen readers
window.cloudbiosTerminal = { text: "" };
let ws = null;
const decoder = new TextDecoder();
const encoder = new TextEncoder();

function status(text) { $("status").textContent = text; }

function connect() {
    $("reconnect").hidden = true;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(proto + "//" + location.host + "/api/v1/vms/" + encodeURIComponent(vm) + "/terminal", ["binary"]);
    ws.binaryType = "arraybuffer";
    status("connecting…");
    ws.onopen = () => { status("connected (serial console)"); term.focus(); };
    ws.onmessage = (ev) => {
        const text = decoder.decode(new Uint8Array(ev.data), { stream: true });
        window.cloudbiosTerminal.text = (window.cloudbiosTerminal.text + text).slice(-65536);
        term.write(text);
    };
    ws.onclose = () => {
        status("disconnected: the VM stopped, or another terminal has its serial console");
        $("reconnect").hidden = false;
    };
}

term.on("data", (data) => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(data)); });
$("reconnect").addEventListener("click", connect);

// what the guest wrote before the page opened (the log's last 64 KiB), then live
(async () => {
    try {
        const res = await fetch("/api/v1/vms/" + encodeURIComponent(vm) + "/serial", { credentials: "same-origin", cache: "no-store" });
        if (res.ok) {
            const text = (await res.text()).slice(-65536);
            window.cloudbiosTerminal.text = text;
            term.write(text.replace(/\r?\n/g, "\r\n"));
        } else if (res.status === 401) {
            status("log in to the panel first");
            return;
        }
    } catch (_) { /* the live part still works */ }
    connect();
})();
