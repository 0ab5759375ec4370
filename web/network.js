// The network page: what is in effect (each interface as the kernel has it,
// the default gateways, the name servers; GET /api/v1/host) beside what the
// config's `network.interfaces` asks for (applied by PID 1 at boot).
import * as api from "/api.js";
import { h, clear } from "/ui.js";

const dash = (v) => (v === undefined || v === null || v === "" || (Array.isArray(v) && !v.length) ? "–" : Array.isArray(v) ? v.join(", ") : String(v));
const td = (label, v) => h("td", { "data-label": label }, dash(v));

function effect(net) {
    const ifs = net.interfaces || [];
    return [
        h("table.net#net-effect",
            h("thead", h("tr", ["Interface", "Kind", "State", "Addresses", "MAC", "MTU", "Member of"].map((t) => h("th", t)))),
            h("tbody", ifs.length ? ifs.map((i) => h("tr", { "data-if": i.name },
                td("Interface", i.name), td("Kind", i.kind), td("State", i.state), td("Addresses", i.addresses),
                td("MAC", i.mac), td("MTU", i.mtu), td("Member of", i.master))) : h("tr", h("td", { colspan: 7 }, "No interfaces.")))),
        h("p#net-routes", "Gateways: ", h("strong", dash(net.gateways)), " · DNS: ", h("strong", dash(net.dns))),
    ];
}

function configured(c) {
    if (c === undefined || c === null) return h("p.muted#net-configured", "Not reported.");
    if (c === "dhcp") return h("p#net-configured", "dhcp: DHCP on every wired NIC (the default).");
    return h("table.net#net-configured",
        h("thead", h("tr", ["Entry", "Makes", "Addresses", "Gateway", "DNS", "MTU"].map((t) => h("th", t)))),
        h("tbody", c.map((e) => h("tr", { "data-entry": e.name || e.match },
            td("Entry", e.name ? e.name : "match " + e.match),
            td("Makes", e.bond ? "bond (" + e.bond.mode + ") of " + dash(e.bond.members) : e.vlan ? "VLAN " + e.vlan.id + " on " + e.vlan.link : "NIC"),
            td("Addresses", [e.dhcp ? "DHCP" : null, ...(e.addresses || [])].filter(Boolean)),
            td("Gateway", [e.gateway, e.gateway6].filter(Boolean)), td("DNS", e.dns), td("MTU", e.mtu)))));
}

export function networkPage(main) {
    const now = h("div#net-now", "…");
    const conf = h("div#net-conf", "…");
    clear(main,
        h("section.card", h("h2", "Network in effect"), now),
        h("section.card", h("h2", "Configured: network.interfaces"),
            h("p.hint", "From cloudbios.yaml; PID 1 applies it at boot, checked like the rest of the file. ",
                "The host console (Ctrl+Alt+F12 on the machine's screen) sets DHCP or a static address now."), conf));
    let stopped = false;
    const load = async () => {
        if (stopped) return;
        try {
            const net = (await api.get("/host")).network || {};
            clear(now, effect(net));
            clear(conf, configured(net.configured));
        } catch (e) {
            clear(now, h("p.msg", e.message));
        }
        if (!stopped) setTimeout(load, 5000);
    };
    load();
    return { unmount() { stopped = true; } };
}
