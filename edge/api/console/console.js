// The guard console: plain DOM, no build step. Every text from the gate is set with textContent, never
// parsed as HTML. Changes carry X-Requested-With, which the API demands of a cookie session.
"use strict";
(function () {
  const lang = (navigator.languages || [navigator.language || "en"]).some((l) => /^zh/i.test(l)) ? "zh" : "en";
  const T = window.GK_I18N[lang];
  const t = (k) => T[k] || window.GK_I18N.en[k] || k;
  const $ = (id) => document.getElementById(id);
  const FEED_MAX = 200;
  const DENY = new Set(["access.denied"]);
  const ALARM = new Set(["alarm.raised", "door.forced", "door.held_open", "device.fault"]);
  let me = null;
  let source = null;
  let musterTimer = null;
  let modeScope = "gate";  // a site-wide lockdown is ended site-wide

  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });

  async function api(method, path, body) {
    const init = { method, credentials: "same-origin", headers: { "X-Requested-With": "gatekeeper-console" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    if (r.status === 401 && path !== "/session") {
      showSignIn();
      throw new Error(t("bad_token"));
    }
    const data = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
    if (!r.ok) throw new Error(explain(data) || r.statusText);
    return data;
  }

  // FastAPI's errors: a text, or a list naming each bad field
  function explain(data) {
    if (!data || data.detail === undefined) return "";
    if (typeof data.detail === "string") return data.detail;
    return data.detail.map((e) => `${(e.loc || []).filter((x) => x !== "body").join(".")}: ${e.msg}`).join("; ");
  }

  function showSignIn() {
    if (source) { source.close(); source = null; }
    clearInterval(musterTimer);
    $("console").hidden = true;
    $("signout").hidden = true;
    $("mode").hidden = true;
    $("signin").hidden = false;
    $("who").textContent = "";
  }

  async function start() {
    me = await api("GET", "/session");
    $("signin").hidden = true;
    $("console").hidden = false;
    $("signout").hidden = false;
    $("who").textContent = `${me.person} · ${me.role}`;
    $("where").textContent = `${me.site} / ${me.gate}`;
    $("lockdown-end").hidden = me.role !== "supervisor";
    const sel = $("open-door");
    sel.replaceChildren(...me.doors.map((d) => new Option(d, d)));
    const status = await api("GET", "/status");
    modeScope = status.mode_scope;
    showMode(status.mode);
    connectFeed(Math.max(0, status.last_seq - 30));
    refreshHeld();
    refreshMuster();
    musterTimer = setInterval(refreshMuster, 10000);
  }

  function showMode(mode) {
    const el = $("mode");
    el.textContent = t("mode_" + mode);
    el.className = "mode " + mode;
    el.hidden = false;
  }

  function connectFeed(after) {
    if (source) source.close();
    source = new EventSource(`/events/stream?after_seq=${after}`);
    source.onmessage = (m) => onEvent(JSON.parse(m.data));
  }

  function onEvent(e) {
    const d = e.data || {};
    const li = document.createElement("li");
    li.dataset.type = e.type;
    if (DENY.has(e.type)) li.className = "deny";
    else if (ALARM.has(e.type)) li.className = "alarm";
    else if (e.type === "exit.held") li.className = "held";
    const when = document.createElement("time");
    when.textContent = new Date(e.time).toLocaleTimeString(lang === "zh" ? "zh-CN" : undefined);
    const what = document.createElement("span");
    what.className = "what";
    what.textContent = t(e.type);
    const detail = document.createElement("span");
    detail.textContent = describe(e.type, d);
    li.append(when, what, detail);
    const feed = $("feed");
    feed.prepend(li);
    while (feed.children.length > FEED_MAX) feed.lastChild.remove();
    if (e.type === "mode.changed") { showMode(d.mode); modeScope = d.scope || "gate"; }
    if (e.type.startsWith("exit.") || e.type === "visit.checked_out" || e.type === "visit.signed_off") soon(refreshHeld);
    if (e.type === "access.granted" || e.type === "access.passage" || e.type === "exit.released") soon(refreshMuster);
  }

  // a busy gate sends many events a second: each list is fetched again at most every half second
  const pending = new Set();
  function soon(fn) {
    if (pending.has(fn)) return;
    pending.add(fn);
    setTimeout(() => { pending.delete(fn); fn().catch(() => {}); }, 500);
  }

  function describe(type, d) {
    const parts = [d.holder || d.credential_ref, d.door, d.reason && d.reason !== "ok" ? d.reason : null, d.alarm, d.person, d.mode,
      d.device, d.name];
    return parts.filter((x) => x !== undefined && x !== null && x !== "").join(" · ");
  }

  async function refreshHeld() {
    const held = await api("GET", "/exits/held");
    $("held-empty").hidden = held.length > 0;
    // a guard who looks away still sees, from the tab or the home screen, that someone waits at the exit
    document.title = held.length ? `(${held.length}) ${t("held_exits")} · ${t("title")}` : t("title");
    $("held").replaceChildren(...held.map(heldItem));
  }

  function heldItem(h) {
    const li = document.createElement("li");
    li.dataset.visit = h.visit;
    const head = document.createElement("div");
    head.textContent = `${h.holder} (${h.party} ${t("people")}) · ${t("host")}: ${h.host || "?"} · ${t("at_door")} ${h.door}`;
    const form = document.createElement("form");
    const reason = document.createElement("input");
    reason.required = true; reason.minLength = 3; reason.maxLength = 200;
    reason.placeholder = t("release_reason");
    reason.className = "release-reason";
    const label = document.createElement("label");
    const ok = document.createElement("input");
    ok.type = "checkbox"; ok.required = true; ok.className = "host-confirmed";
    label.append(ok, " ", t("host_confirmed"));
    const btn = document.createElement("button");
    btn.type = "submit"; btn.textContent = t("release"); btn.className = "release";
    const err = document.createElement("p");
    err.className = "error";
    form.append(reason, label, btn, err);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api("POST", `/visits/${encodeURIComponent(h.visit)}/release`, { reason: reason.value, host_confirmed: true });
        refreshHeld();
      } catch (x) { err.textContent = x.message; }
    });
    li.append(head, form);
    return li;
  }

  async function refreshMuster() {
    const m = await api("GET", "/occupancy");
    $("muster-count").textContent = `(${m.count})`;
    $("muster").tBodies[0].replaceChildren(...m.people.map((p) => {
      const tr = document.createElement("tr");
      for (const v of [p.holder, p.category, p.area, new Date(p.since).toLocaleTimeString(), p.party]) {
        const td = document.createElement("td");
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    }));
  }

  $("signin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("signin-error").textContent = "";
    try {
      await api("POST", "/session", { token: $("token").value.trim() });
      $("token").value = "";  // the cookie carries the session; the token leaves the page
      await start();
    } catch (x) { $("signin-error").textContent = t("bad_token"); }
  });

  $("signout").addEventListener("click", async () => {
    await api("DELETE", "/session").catch(() => {});
    showSignIn();
  });

  $("open-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const door = $("open-door").value;
    try {
      const r = await api("POST", `/doors/${encodeURIComponent(door)}/open`, { reason: $("open-reason").value });
      $("doors-msg").textContent = `${door}: ${r.opened ? t("opened") : t("not_opened")}`;
      $("open-reason").value = "";
    } catch (x) { $("doors-msg").textContent = x.message; }
  });

  async function setMode(mode, scope, reason) {
    try {
      const r = await api("POST", "/mode", { mode, scope, reason });
      showMode(r.mode);
      $("doors-msg").textContent = "";
    } catch (x) { $("doors-msg").textContent = x.message; }
  }
  $("lockdown-gate").addEventListener("click", () => setMode("lockdown", "gate", t("lockdown_reason")));
  $("lockdown-site").addEventListener("click", () => setMode("lockdown", "site", t("lockdown_reason")));
  $("lockdown-end").addEventListener("click", () => setMode("normal", modeScope, t("lockdown_end_reason")));

  $("walkin-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    $("walkin-error").textContent = "";
    try {
      const v = await api("POST", "/visits", {
        visitor: { name: $("w-name").value, company: $("w-company").value, id_number: $("w-id").value },
        purpose: $("w-purpose").value, host: $("w-host").value, host_confirmation: $("w-confirm").value,
        party: parseInt($("w-party").value, 10) || 1,
      });
      $("w-id").value = "";  // the ID number is not kept on screen either
      $("pass-qr").src = v.pass_png;
      $("pass-name").textContent = v.name;
      $("pass-areas").textContent = v.areas.join(", ");
      $("pass-until").textContent = new Date(v.valid_until).toLocaleString(lang === "zh" ? "zh-CN" : undefined);
      $("pass-visit").textContent = v.visit;
      $("printed").hidden = false;
      $("printed").scrollIntoView({ block: "center" });
    } catch (x) { $("walkin-error").textContent = x.message; }
  });
  $("print").addEventListener("click", () => window.print());

  start().catch(() => showSignIn());
})();
