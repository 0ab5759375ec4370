// The panel's only way to the daemon: /api/v1 with the session cookie.
// Every state-changing request carries the CSRF token of the session.

export class APIError extends Error {
    constructor(status, message, body) {
        super(message);
        this.status = status;
        this.body = body || {};
    }
}

const session = { user: null, csrf: null, expires: null };
let onExpired = () => {};

export function setExpiredHandler(fn) { onExpired = fn; }
export function currentSession() { return session; }

function remember(s) {
    session.user = s.user || session.user;
    session.csrf = s.csrf || null;
    session.expires = s.expires || null;
}

function forget() {
    session.user = null;
    session.csrf = null;
    session.expires = null;
}

async function errorFrom(res) {
    let body = null;
    let message = res.status + " " + res.statusText;
    try {
        body = await res.json();
        if (body && typeof body.error === "string") message = body.error;
    } catch (_) { /* not JSON */ }
    return new APIError(res.status, message, body);
}

// request(method, path, {json, body, text, raw, quiet: no expiry handling}) -> parsed JSON, text, or null
export async function request(method, path, opts = {}) {
    const headers = { "Accept": "application/json" };
    let body;
    if (opts.json !== undefined) {
        headers["Content-Type"] = "application/json";
        body = JSON.stringify(opts.json);
    } else if (opts.body !== undefined) {
        body = opts.body;
    }
    if (method !== "GET" && method !== "HEAD" && session.csrf) {
        headers["X-CSRF-Token"] = session.csrf;
    }
    let res;
    try {
        res = await fetch("/api/v1" + path, {
            method, headers, body, credentials: "same-origin", cache: "no-store",
        });
    } catch (e) {
        throw new APIError(0, "the daemon cannot be reached (" + e.message + ")");
    }
    if (res.status === 401 && !opts.quiet && path !== "/login" && path !== "/session" && path !== "/setup") {
        forget();
        onExpired();
        throw new APIError(401, "session expired");
    }
    if (!res.ok) throw await errorFrom(res);
    if (opts.raw) return res;
    if (opts.text) return res.text();
    if (res.status === 204) return null;
    const type = res.headers.get("Content-Type") || "";
    if (!type.includes("json")) return res.text();
    return res.json();
}

export const get = (path, opts) => request("GET", path, opts);
export const post = (path, json) => request("POST", path, { json: json === undefined ? {} : json });
export const put = (path, json) => request("PUT", path, { json });
export const del = (path) => request("DELETE", path);

export async function login(user, password) {
    const r = await request("POST", "/login", { json: { user, password } });
    remember({ user, csrf: r.csrf, expires: r.expires });
    return r;
}

// First run: creates the first admin with the console's setup code and
// logs in as that admin.
export async function setup(body) {
    const r = await request("POST", "/setup", { json: body });
    remember({ user: r.user, csrf: r.csrf, expires: r.expires });
    return r;
}

// The session of a page reload (the cookie); null when there is none.
export async function restore() {
    try {
        const s = await request("GET", "/session");
        remember(s);
        return s;
    } catch (e) {
        if (e.status === 401) { forget(); return null; }
        throw e;
    }
}

export async function logout() {
    try { await request("POST", "/logout", { json: {} }); } finally { forget(); }
}

// Streams a File to PUT /api/v1/images/{name} (XHR for upload progress; the
// File is the body, so the browser reads it from disk as it sends).
export function uploadImage(name, file, onProgress) {
    return uploadBody("PUT", "/api/v1/images/" + encodeURIComponent(name), file, onProgress);
}

// Streams a CloudBIOS ISO to POST /api/v1/system/upgrade (answers a task).
export function uploadUpgrade(file, onProgress) {
    return uploadBody("POST", "/api/v1/system/upgrade", file, onProgress);
}

function uploadBody(method, url, file, onProgress) {
    const xhr = new XMLHttpRequest();
    const done = new Promise((resolve, reject) => {
        xhr.open(method, url);
        xhr.setRequestHeader("Content-Type", "application/octet-stream");
        if (session.csrf) xhr.setRequestHeader("X-CSRF-Token", session.csrf);
        xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded, e.total); };
        xhr.onload = () => {
            if (xhr.status >= 200 && xhr.status < 300) {
                onProgress(file.size, file.size);
                let body = null;
                try { body = JSON.parse(xhr.responseText); } catch (_) { /* empty */ }
                resolve(body);
                return;
            }
            let message = xhr.status + " " + xhr.statusText;
            try { message = JSON.parse(xhr.responseText).error || message; } catch (_) { /* not JSON */ }
            if (xhr.status === 401) { forget(); onExpired(); }
            reject(new APIError(xhr.status, message));
        };
        xhr.onerror = () => reject(new APIError(0, "upload failed: connection lost"));
        xhr.onabort = () => reject(new APIError(0, "upload cancelled"));
        xhr.send(file);
    });
    return { done, abort: () => xhr.abort() };
}
