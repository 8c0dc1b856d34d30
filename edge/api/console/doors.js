// Doors and modes: a guard's one-off opening (P20), lockdown (P15), fire mode (P16) and drills (P28). The mode
// shows on every view: a banner under lockdown, the muster page in fire and in a drill (titled as a drill).
// Site-wide lockdown, fire on or off and drills are confirmed first; one tap never locks a whole site.
import { api } from "/console/api.js";
import { ask } from "/console/confirm.js";
import { setEmergency } from "/console/muster.js";
import { t, word } from "/console/lang.js";

const $ = (id) => document.getElementById(id);
let role = "guard";
let scope = "gate";  // a site-wide lockdown is ended site-wide

export function setUp() {
  $("open-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const door = $("open-door").value;
    try {
      const r = await api("POST", `/doors/${encodeURIComponent(door)}/open`, { reason: $("open-reason").value });
      $("doors-msg").textContent = `${door}: ${r.opened ? t("opened") : t("not_opened")}`;
      $("open-reason").value = "";
    } catch (x) { $("doors-msg").textContent = x.message; }
  });
  $("lockdown-gate").addEventListener("click", () => setMode("lockdown", "gate", t("lockdown_reason")));
  $("lockdown-site").addEventListener("click", async () => {
    if (await ask(t("confirm_lockdown_site"))) await setMode("lockdown", "site", t("lockdown_reason"));
  });
  $("lockdown-end").addEventListener("click", async () => {
    if (scope === "site" && !(await ask(t("confirm_lockdown_end_site")))) return;
    await setMode("normal", scope, t("lockdown_end_reason"));
  });
  $("fire-on").addEventListener("click", async () => {
    if (await ask(t("confirm_fire_on"))) await setMode("fire", "gate", t("fire_on_reason"));
  });
  for (const id of ["fire-off", "mv-fire-off"]) {
    $(id).addEventListener("click", async () => {
      if (await ask(t("confirm_fire_off"))) await setMode("normal", "gate", t("fire_off_reason"));
    });
  }
  $("drill-on").addEventListener("click", async () => {
    if (await ask(t("confirm_drill_on"))) await setMode("drill", "gate", t("drill_on_reason"));
  });
  $("drill-site").addEventListener("click", async () => {
    if (await ask(t("confirm_drill_site"))) await setMode("drill", "site", t("drill_on_reason"));
  });
  $("mv-drill-off").addEventListener("click", async () => {  // a site-wide drill ends site-wide
    if (await ask(t("confirm_drill_off"))) await setMode("normal", scope, t("drill_off_reason"));
  });
}

export function start(me, status) {
  role = me.role;
  $("open-door").replaceChildren(...me.doors.map((d) => new Option(d, d)));
  show(status.mode, status.mode_scope);
}

async function setMode(mode, sc, reason) {
  try {
    const r = await api("POST", "/mode", { mode, scope: sc, reason });
    show(r.mode, mode === "normal" ? "gate" : sc);
    $("doors-msg").textContent = "";
  } catch (x) { $("doors-msg").textContent = x.message; $("mv-msg").textContent = x.message; }
}

export function follow(e) {
  if (e.type === "mode.changed") show(e.data.mode, e.data.scope || "gate");
}

function show(mode, sc) {
  scope = sc || "gate";
  const pill = $("mode");
  pill.textContent = word("mode", mode);
  pill.className = "mode " + mode;
  pill.hidden = false;
  document.body.dataset.mode = mode;
  const banner = $("banner");
  banner.hidden = mode === "normal";
  banner.className = "banner " + mode;
  banner.textContent = mode === "lockdown" ? t(scope === "site" ? "banner_lockdown_site" : "banner_lockdown")
    : mode === "fire" ? t("banner_fire") : mode === "drill" ? t("banner_drill") : "";
  const sup = role === "supervisor";
  $("lockdown-end").hidden = !sup || mode !== "lockdown";
  $("lockdown-gate").hidden = mode !== "normal";
  $("lockdown-site").hidden = !(mode === "normal" || (mode === "lockdown" && scope === "gate"));
  $("fire-on").hidden = !sup || mode === "fire";
  $("fire-off").hidden = !sup || mode !== "fire";
  $("drill-on").hidden = $("drill-site").hidden = !sup || mode !== "normal";
  const muster = mode === "fire" || mode === "drill";  // P28: a drill is the fire's muster page, marked so
  $("mv-fire-off").hidden = !sup || mode !== "fire";
  $("mv-drill-off").hidden = !sup || mode !== "drill";
  $("mv-title").dataset.i18n = mode === "drill" ? "muster_title_drill" : "muster_title";
  $("mv-title").textContent = t($("mv-title").dataset.i18n);
  $("muster-view").dataset.mode = mode;
  $("console").hidden = muster;
  setEmergency(muster);
}

export function hide() {
  $("mode").hidden = true;
  $("banner").hidden = true;
  $("muster-view").hidden = true;
  delete document.body.dataset.mode;
}
