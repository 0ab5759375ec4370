// The machine itself, on the dashboard: the VM on its local screen now, and
// reboot or shut down (its VMs shut down cleanly first); POST
// /api/v1/system/display, reboot and shutdown.
import * as api from "/api.js";
import { h, clear, ask } from "/ui.js";

export function machineCard(live) {
    const sel = h("select#display-vm");
    const msg = h("p.muted#machine-msg", "");
    const act = async (path, body, said) => {
        msg.textContent = "";
        try { msg.textContent = said(await api.post(path, body)); } catch (e) { msg.textContent = e.message; }
    };
    const fill = () => {
        const names = live.vms.map((v) => v.name);
        const cur = sel.value;
        if (sel.options.length === names.length + 1 && names.every((n, i) => sel.options[i + 1].value === n)) return;
        clear(sel, h("option", { value: "" }, "the host console"), names.map((n) => h("option", { value: n, selected: n === cur }, n)));
    };
    const power = (what, path, label) => h("button.danger#host-" + what, {
        type: "button",
        onclick: async () => {
            if (!(await ask(label + " this machine?", "Its VMs shut down cleanly first (powered off after a timeout); the panel is gone until it is back.", label, true))) return;
            act(path, {}, () => label + ": under way.");
        },
    }, label);
    const card = h("section.card.stat#machine", h("h3", "Machine"),
        h("p.row", h("label", "Local screen ", sel), h("button#display-set", {
            type: "button",
            onclick: () => act("/system/display", { vm: sel.value || null }, (r) => "The local screen shows " + (r.display || "the host console") + "."),
        }, "Show")),
        h("p.row", power("reboot", "/system/reboot", "Reboot"), power("shutdown", "/system/shutdown", "Shut down")), msg);
    card.update = fill;
    fill();
    return card;
}
