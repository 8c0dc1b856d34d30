// Cars held at a barrier for the guard (P26): the plate, the barrier, why it waits; the guard lets it through
// once with a reason (or registers it to a visit through the API, which opens nothing by itself).
import { api } from "/console/api.js";
import { t, timeOf, word } from "/console/lang.js";

export async function refresh() {
  const held = await api("GET", "/vehicles/held");
  document.getElementById("vehicles-empty").hidden = held.length > 0;
  document.getElementById("vehicles").replaceChildren(...held.map(item));
}

export const follows = (e) => e.type === "vehicle.held" || (e.type === "override.opened" && e.data && e.data.plate)
  || (e.type === "access.granted" && e.data && e.data.credential_kind === "plate");

function item(v) {
  const li = document.createElement("li");
  li.dataset.plate = v.plate;
  const head = document.createElement("div");
  head.className = "held-head";
  const plate = document.createElement("strong");
  plate.className = "plate";
  plate.textContent = v.plate;  // text, never markup: a plate comes from a camera
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.append(`${word("reason", v.reason)} · ${t("at_door")} ${v.door} (${t("dir_" + v.direction)})`
              + ` · ${t("waiting_since")} ${timeOf(v.since)}`);
  head.append(plate, meta);
  const form = document.createElement("form");
  const reason = document.createElement("input");
  reason.required = true; reason.minLength = 3; reason.maxLength = 200;
  reason.placeholder = t("admit_reason");
  reason.setAttribute("aria-label", t("admit_reason"));
  reason.className = "admit-reason";
  const btn = document.createElement("button");
  btn.type = "submit"; btn.textContent = t("admit"); btn.className = "admit";
  const err = document.createElement("p");
  err.className = "error";
  form.append(reason, btn, err);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", `/vehicles/${encodeURIComponent(v.plate)}/admit`, { reason: reason.value });
      refresh();
    } catch (x) { err.textContent = x.message; }
  });
  li.append(head, form);
  return li;
}
