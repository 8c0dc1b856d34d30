// Exits held for the host's sign-off (P9): the visitor by name, the host, the door; the guard phones the host
// and releases the exit with a reason. The tab's title counts them, so a guard who looks away still sees it.
import { api } from "/console/api.js";
import { person } from "/console/people.js";
import { count, t, timeOf } from "/console/lang.js";

export async function refresh() {
  const held = await api("GET", "/exits/held");
  document.getElementById("held-empty").hidden = held.length > 0;
  document.title = held.length ? `(${held.length}) ${t("held_exits")} · ${t("title")}` : t("title");
  document.getElementById("held").replaceChildren(...held.map(item));
}

function item(h) {
  const li = document.createElement("li");
  li.dataset.visit = h.visit;
  const head = document.createElement("div");
  head.className = "held-head";
  head.append(person({ holder: h.holder, name: h.name, company: h.company, category: "visitor", private: h.private }));
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.append(count("people_count", h.party), ` · ${t("host_label")}: `, h.host ? person({ holder: h.host }) : "—",
              ` · ${t("at_door")} ${h.door} · ${t("waiting_since")} ${timeOf(h.since)}`);
  head.append(meta);
  const form = document.createElement("form");
  const reason = document.createElement("input");
  reason.required = true; reason.minLength = 3; reason.maxLength = 200;
  reason.placeholder = t("release_reason");
  reason.setAttribute("aria-label", t("release_reason"));
  reason.className = "release-reason";
  const label = document.createElement("label");
  label.className = "check";
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
      refresh();
    } catch (x) { err.textContent = x.message; }
  });
  li.append(head, form);
  return li;
}
