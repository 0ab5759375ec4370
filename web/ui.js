// Small DOM helpers, formatters and the SVG sparkline used by the panel.

const SVG = "http://www.w3.org/2000/svg";

// h("tag.class#id", {attr: v, onclick: fn}, child, "text", [children]…)
export function h(spec, attrs, ...children) {
    const m = /^([a-z0-9]+)?((?:[.#][\w-]+)*)$/i.exec(spec);
    const el = document.createElement(m[1] || "div");
    for (const part of (m[2] || "").match(/[.#][\w-]+/g) || []) {
        if (part[0] === ".") el.classList.add(part.slice(1));
        else el.id = part.slice(1);
    }
    if (attrs && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
        children.unshift(attrs);
        attrs = null;
    }
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === undefined || v === null || v === false) continue;
        if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
        else if (k === "text") el.textContent = v;
        else if (v === true) el.setAttribute(k, "");
        else el.setAttribute(k, String(v));
    }
    append(el, children);
    return el;
}

function append(el, children) {
    for (const c of children) {
        if (c === null || c === undefined || c === false) continue;
        if (Array.isArray(c)) append(el, c);
        else el.append(c instanceof Node ? c : String(c));
    }
}

export function clear(el, ...children) {
    el.replaceChildren();
    append(el, children);
    return el;
}

export function fmtBytes(n) {
    if (n === undefined || n === null || isNaN(n)) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let v = Number(n);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)) + " " + units[i];
}

export function fmtMiB(n) {
    if (n === undefined || n === null || isNaN(n)) return "–";
    return fmtBytes(Number(n) * 1048576);
}

export function fmtDuration(seconds) {
    if (seconds === undefined || seconds === null || isNaN(seconds)) return "–";
    let s = Math.floor(Number(seconds));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const hh = Math.floor(s / 3600); s -= hh * 3600;
    const mm = Math.floor(s / 60); s -= mm * 60;
    if (d) return d + "d " + hh + "h " + mm + "m";
    if (hh) return hh + "h " + mm + "m";
    if (mm) return mm + "m " + s + "s";
    return s + "s";
}

export function fmtPercent(p) {
    if (p === undefined || p === null || isNaN(p)) return "–";
    return Number(p).toFixed(Number(p) < 10 ? 1 : 0) + " %";
}

// Sizes as the config file writes them: 256M, 8G, 8GiB, or bare bytes.
export function parseSize(text) {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?\s*$/i.exec(String(text));
    if (!m) return null;
    const mult = { "": 1, K: 1 << 10, M: 1 << 20, G: 1 << 30, T: 2 ** 40 }[m[2].toUpperCase()];
    return Math.round(Number(m[1]) * mult);
}

// Memory in MiB from the API's value: a number (MiB) or a size string.
export function memoryMiB(v) {
    if (typeof v === "number") return v;
    if (typeof v === "string" && /^\d+$/.test(v.trim())) return Number(v);
    const b = parseSize(v);
    return b === null ? null : b / 1048576;
}

// A sparkline of the values (0…max) as inline SVG; redrawn in place.
export function sparkline(values, max, label) {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 100 24");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("class", "spark");
    svg.setAttribute("role", "img");
    const title = document.createElementNS(SVG, "title");
    svg.append(title);
    const area = document.createElementNS(SVG, "polygon");
    area.setAttribute("class", "spark-area");
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("class", "spark-line");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(area, line);
    svg.update = (vals, mx, lbl) => {
        const n = Math.max(vals.length, 2);
        const top = Math.max(mx || 0, ...vals.filter((x) => x !== null), 1e-9);
        const pts = [];
        vals.forEach((v, i) => {
            if (v === null || v === undefined) return;
            const x = (i + (n - vals.length)) * 100 / (n - 1);
            const y = 23 - Math.min(v / top, 1) * 22;
            pts.push(x.toFixed(1) + "," + y.toFixed(1));
        });
        line.setAttribute("points", pts.join(" "));
        if (pts.length) {
            const first = pts[0].split(",")[0];
            const last = pts[pts.length - 1].split(",")[0];
            area.setAttribute("points", first + ",24 " + pts.join(" ") + " " + last + ",24");
        } else {
            area.setAttribute("points", "");
        }
        title.textContent = lbl || "";
    };
    svg.update(values, max, label);
    return svg;
}

// A modal question; resolves true when confirmed.
export function ask(title, text, confirmLabel, danger) {
    return new Promise((resolve) => {
        const dlg = h("dialog.dialog", { "aria-labelledby": "dlg-title" },
            h("h2#dlg-title", { text: title }),
            h("p", { text }),
            h("div.row.end",
                h("button", { type: "button", value: "cancel", onclick: () => dlg.close("cancel") }, "Cancel"),
                h("button" + (danger ? ".danger" : ".primary"),
                    { type: "button", "data-confirm": "1", onclick: () => dlg.close("ok") }, confirmLabel)));
        dlg.addEventListener("close", () => { dlg.remove(); resolve(dlg.returnValue === "ok"); });
        document.body.append(dlg);
        dlg.showModal();
    });
}

let flashTimer = null;
export function flash(message, kind) {
    const el = document.getElementById("flash");
    el.textContent = message;
    el.className = "flash " + (kind || "info");
    el.hidden = false;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 8000 : 4000);
}
