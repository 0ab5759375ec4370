// Full-page VM console: noVNC (Debian's package, served at /novnc/) over the
// daemon's WebSocket /api/v1/vms/{name}/console, authenticated by the cookie.
import RFB from "/novnc/core/rfb.js";
import KeyTable from "/novnc/core/input/keysym.js";
import keysyms from "/novnc/core/input/keysymdef.js";

const $ = (id) => document.getElementById(id);
const vm = new URLSearchParams(location.search).get("vm") || "";
let rfb = null;
let scaled = true;
let connected = false;

function status(text, kind) {
    const s = $("status");
    s.textContent = text;
    s.className = "status " + (kind || "");
}

// US-layout physical keys for printable ASCII: char -> [code, shifted].
const US = (() => {
    const m = new Map();
    for (let i = 0; i < 26; i++) {
        const l = String.fromCharCode(97 + i);
        m.set(l, ["Key" + l.toUpperCase(), false]);
        m.set(l.toUpperCase(), ["Key" + l.toUpperCase(), true]);
    }
    const rows = [
        ["1!", "Digit1"], ["2@", "Digit2"], ["3#", "Digit3"], ["4$", "Digit4"], ["5%", "Digit5"],
        ["6^", "Digit6"], ["7&", "Digit7"], ["8*", "Digit8"], ["9(", "Digit9"], ["0)", "Digit0"],
        ["-_", "Minus"], ["=+", "Equal"], ["[{", "BracketLeft"], ["]}", "BracketRight"], ["\\|", "Backslash"],
        [";:", "Semicolon"], ["'\"", "Quote"], ["`~", "Backquote"], [",<", "Comma"], [".>", "Period"], ["/?", "Slash"],
    ];
    for (const [chars, code] of rows) { m.set(chars[0], [code, false]); m.set(chars[1], [code, true]); }
    m.set(" ", ["Space", false]);
    return m;
})();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Types text into the guest as key presses: keysym + US scancode, with Shift
// held for shifted characters; Enter for newlines, Tab for tabs.
export async function typeText(text) {
    if (!rfb || !connected) return 0;
    let n = 0;
    for (const ch of text.replace(/\r\n?/g, "\n")) {
        if (!connected) break;
        if (ch === "\n") {
            rfb.sendKey(KeyTable.XK_Return, "Enter");
        } else if (ch === "\t") {
            rfb.sendKey(KeyTable.XK_Tab, "Tab");
        } else {
            const keysym = keysyms.lookup(ch.codePointAt(0));
            const us = US.get(ch);
            if (us && us[1]) rfb.sendKey(KeyTable.XK_Shift_L, "ShiftLeft", true);
            rfb.sendKey(keysym, us ? us[0] : null);
            if (us && us[1]) rfb.sendKey(KeyTable.XK_Shift_L, "ShiftLeft", false);
        }
        n++;
        // let the guest's keyboard buffer keep up with long pastes
        if (n % 16 === 0) await sleep(15);
    }
    return n;
}

// Key combinations: [label, [[keysym, code], …]] pressed in order, released in reverse.
const CTRL = [KeyTable.XK_Control_L, "ControlLeft"];
const ALT = [KeyTable.XK_Alt_L, "AltLeft"];
const COMBOS = [
    ...[1, 2, 3, 4, 5, 6, 7].map((i) => ["Ctrl-Alt-F" + i, [CTRL, ALT, [KeyTable["XK_F" + i], "F" + i]]]),
    ["Ctrl-Alt-Backspace", [CTRL, ALT, [KeyTable.XK_BackSpace, "Backspace"]]],
    ["Alt-Tab", [ALT, [KeyTable.XK_Tab, "Tab"]]],
    ["Alt-F4", [ALT, [KeyTable.XK_F4, "F4"]]],
    ["Ctrl-C", [CTRL, [KeyTable.XK_c, "KeyC"]]],
    ["Ctrl-D", [CTRL, [KeyTable.XK_d, "KeyD"]]],
    ["Ctrl-Z", [CTRL, [KeyTable.XK_z, "KeyZ"]]],
    ["Alt-SysRq", [ALT, [KeyTable.XK_Print, "PrintScreen"]]],
    ["Super", [[KeyTable.XK_Super_L, "MetaLeft"]]],
    ["Print Screen", [[KeyTable.XK_Print, "PrintScreen"]]],
    ["Escape", [[KeyTable.XK_Escape, "Escape"]]],
    ["Tab", [[KeyTable.XK_Tab, "Tab"]]],
    ["Enter", [[KeyTable.XK_Return, "Enter"]]],
];

function sendCombo(keys) {
    if (!rfb || !connected) return;
    for (const [sym, code] of keys) rfb.sendKey(sym, code, true);
    for (const [sym, code] of [...keys].reverse()) rfb.sendKey(sym, code, false);
    rfb.focus();
}

function consoleURL() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    return proto + "//" + location.host + "/api/v1/vms/" + encodeURIComponent(vm) + "/console";
}

function connect() {
    if (rfb) { try { rfb.disconnect(); } catch (_) { /* already closed */ } }
    $("reconnect").hidden = true;
    const screen = $("screen");
    screen.replaceChildren();
    status("connecting to " + vm + "…");
    rfb = new RFB(screen, consoleURL(), { wsProtocols: ["binary"], shared: true });
    rfb.scaleViewport = scaled;
    rfb.resizeSession = false;
    rfb.background = "#000";
    rfb.addEventListener("connect", () => {
        connected = true;
        status("connected", "ok");
        rfb.focus();
    });
    rfb.addEventListener("disconnect", (e) => {
        connected = false;
        status(e.detail.clean ? "disconnected" : "connection lost (is the VM running?)", "bad");
        $("reconnect").hidden = false;
    });
    rfb.addEventListener("securityfailure", (e) => status("security failure: " + (e.detail.reason || e.detail.status), "bad"));
    rfb.addEventListener("credentialsrequired", () => status("the VM's VNC server asks for a password", "bad"));
    rfb.addEventListener("desktopname", (e) => { document.title = e.detail.name + " · CloudBIOS"; });
    window.cloudbiosConsole.rfb = rfb;
}

function setup() {
    window.cloudbiosConsole = { rfb: null, typeText, get connected() { return connected; } };
    $("vm-name").textContent = vm;
    document.title = vm + " · Console · CloudBIOS";
    if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(vm)) {
        status("no VM given: open /console?vm=NAME", "bad");
        return;
    }
    const keys = $("keys");
    COMBOS.forEach(([label], i) => keys.append(new Option(label, String(i))));
    keys.addEventListener("change", () => {
        if (keys.value !== "") sendCombo(COMBOS[Number(keys.value)][1]);
        keys.value = "";
    });
    $("cad").addEventListener("click", () => { if (rfb && connected) { rfb.sendCtrlAltDel(); rfb.focus(); } });
    $("scale").addEventListener("click", () => {
        scaled = !scaled;
        $("scale").setAttribute("aria-pressed", String(scaled));
        if (rfb) { rfb.scaleViewport = scaled; rfb.clipViewport = !scaled; }
    });
    $("fullscreen").addEventListener("click", () => {
        if (document.fullscreenElement) document.exitFullscreen();
        else document.documentElement.requestFullscreen().catch((e) => status("full screen refused: " + e.message, "bad"));
    });
    document.addEventListener("fullscreenchange", () => {
        $("fullscreen").textContent = document.fullscreenElement ? "Exit full screen" : "Full screen";
    });
    $("reconnect").addEventListener("click", connect);

    const dlg = $("paste-dialog");
    $("paste").addEventListener("click", async () => {
        const ta = $("paste-text");
        ta.value = "";
        dlg.showModal();
        ta.focus();
        try {
            if (navigator.clipboard && navigator.clipboard.readText) ta.value = await navigator.clipboard.readText();
            ta.select();
        } catch (_) { /* no permission: the user pastes into the box */ }
    });
    dlg.addEventListener("close", async () => {
        if (dlg.returnValue !== "type") { rfb && rfb.focus(); return; }
        const text = $("paste-text").value;
        status("typing " + text.length + " characters…");
        const n = await typeText(text);
        status(connected ? "connected · typed " + n + " characters" : "disconnected", connected ? "ok" : "bad");
        rfb && rfb.focus();
    });
    connect();
}

setup();
