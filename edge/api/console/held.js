// Exits held for the host's sign-off (P9): the visitor by name, the host, the door; the guard phones the host
// and releases the exit with a reason. Exits held for a visitor card (P27): the guard takes the card and marks it
// returned, which opens the door once; at a lane with a collector the visitor drops it in and nobody need act.
// The tab's title counts them, so a guard who looks away still sees it.
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
  if (h.reason === "card_return_required") {
    li.classList.add("card");
    if (h.collector) {  // the collector opens the lane itself once the card is in
      const note = document.createElement("p");
      note.className = "card-note";
      note.textContent = t("card_into_collector");
      li.append(head, note);
      return li;
    }
    li.append(head, cardForm(h));
    return li;
  }
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

function cardForm(h) {
  // P27: the visit key of a held card is the card's ref, the one the API takes (a private guest's too)
  const form = document.createElement("form");
  const note = document.createElement("p");
  note.className = "card-note";
  note.textContent = t("take_card");
  const reason = document.createElement("input");
  reason.required = true; reason.minLength = 3; reason.maxLength = 200;
  reason.placeholder = t("card_reason");
  reason.setAttribute("aria-label", t("card_reason"));
  reason.className = "card-reason";
  const btn = document.createElement("button");
  btn.type = "submit"; btn.textContent = t("card_taken"); btn.className = "card-taken";
  const err = document.createElement("p");
  err.className = "error";
  form.append(note, reason, btn, err);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", `/cards/${encodeURIComponent(h.visit)}/returned`, { reason: reason.value });
      refresh();
    } catch (x) { err.textContent = x.message; }
  });
  return form;
}
