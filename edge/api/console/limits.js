// Occupancy limits (P35): each area with a max_occupancy, its count against the limit (full stands out), and
// for a supervisor a way to correct a count with a reason, asked once more before it goes to every gate.
import { api } from "/console/api.js";
import { ask } from "/console/confirm.js";
import { t } from "/console/lang.js";

export function draw(root, areas, supervisor, refresh) {
  root.hidden = !areas || areas.length === 0;
  if (root.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return;  // typing
  root.replaceChildren(...(areas || []).map((a) => row(a, supervisor, refresh)));
}

function row(a, supervisor, refresh) {
  const div = document.createElement("div");
  div.className = "limit";
  div.dataset.area = a.area;
  const taken = a.count + a.reserved;
  if (taken >= a.max_occupancy) div.classList.add("full");
  const head = document.createElement("p");
  const n = document.createElement("strong");
  n.className = "limit-count";
  n.textContent = `${taken} / ${a.max_occupancy}`;
  head.append(`${a.area} `, n);
  if (a.reserved > 0) head.append(` · ${a.reserved} ${t("limit_reserved")}`);
  if (taken >= a.max_occupancy) head.append(` · ${t("limit_full")}`);
  div.append(head);
  if (supervisor) div.append(form(a, refresh));
  return div;
}

function form(a, refresh) {
  const f = document.createElement("form");
  f.className = "limit-correct noprint";
  const count = document.createElement("input");
  count.type = "number"; count.min = 0; count.max = 1000000; count.required = true; count.value = a.count;
  count.className = "limit-new-count";
  count.setAttribute("aria-label", t("limit_count_now"));
  const reason = document.createElement("input");
  reason.required = true; reason.minLength = 3; reason.maxLength = 200;
  reason.placeholder = t("limit_reason");
  reason.setAttribute("aria-label", t("limit_reason"));
  reason.className = "limit-reason";
  const btn = document.createElement("button");
  btn.type = "submit"; btn.textContent = t("limit_correct"); btn.className = "limit-submit";
  const err = document.createElement("p");
  err.className = "error";
  f.append(count, reason, btn, err);
  f.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const n = Number(count.value);
    if (!(await ask(t("limit_confirm").replace("{area}", a.area).replace("{n}", String(n))))) return;
    try {
      await api("POST", `/areas/${encodeURIComponent(a.area)}/occupancy`, { count: n, reason: reason.value });
      await refresh();
    } catch (x) { err.textContent = x.message; }
  });
  return f;
}
