// Who is on site (P16). In normal times a card among the others; in fire mode it is the whole page: people by
// area, a count of those not yet accounted for that falls as they badge out or a guard marks them safe at the
// assembly point, and a printout for the person with the clipboard.
import { api } from "/console/api.js";
import { categoryOf, person, roleNow } from "/console/people.js";
import * as limits from "/console/limits.js";
import { count, t, timeOf } from "/console/lang.js";

let emergency = false;

export function setEmergency(on) {
  const changed = on !== emergency;
  emergency = on;
  document.getElementById("muster-view").hidden = !on;
  if (changed) refresh().catch(() => {});  // the list again, with or without the guard's marks
}

export async function refresh() {
  const m = await api("GET", "/occupancy");
  const unaccounted = m.unaccounted ?? m.count;
  document.getElementById("muster-count").textContent = `(${count("people_count", m.count)})`;
  document.getElementById("mv-on-site").textContent = count("people_count", m.count);
  document.getElementById("mv-unaccounted").textContent = count("people_count", unaccounted);
  document.getElementById("mv-unaccounted").dataset.n = unaccounted;
  document.getElementById("mv-all-safe").hidden = unaccounted > 0 || m.count === 0;
  document.getElementById("mv-nobody").hidden = m.count > 0;
  document.getElementById("muster-nobody").hidden = m.count > 0;
  draw(document.getElementById("muster-areas"), m.people, false);
  limits.draw(document.getElementById("muster-limits"), m.areas, roleNow() === "supervisor", refresh);  // P35
  draw(document.getElementById("mv-areas"), m.people, emergency);
}

function draw(root, people, marking) {
  const areas = new Map();
  for (const p of people) {
    if (!areas.has(p.area)) areas.set(p.area, []);
    areas.get(p.area).push(p);
  }
  root.replaceChildren(...[...areas].map(([area, ps]) => {
    const sec = document.createElement("section");
    sec.className = "area";
    sec.dataset.area = area;
    const h = document.createElement("h3");
    const left = ps.filter((p) => !p.safe).reduce((n, p) => n + p.party, 0);
    const all = ps.reduce((n, p) => n + p.party, 0);
    h.append(area, " ");
    const c = document.createElement("small");
    c.textContent = marking ? `${t("unaccounted")}: ${left} · ${t("on_site")}: ${all}` : count("people_count", all);
    h.append(c);
    const ul = document.createElement("ul");
    ul.append(...ps.map((p) => row(p, marking)));
    sec.append(h, ul);
    return sec;
  }));
}

function row(p, marking) {
  const li = document.createElement("li");
  li.dataset.holder = p.holder;
  if (p.safe) li.classList.add("safe");
  const who = person(p);
  const meta = document.createElement("span");
  meta.className = "meta";
  meta.textContent = [categoryOf(p), `${t("since")} ${timeOf(p.since)}`, p.party > 1 ? count("people_count", p.party) : ""]
    .filter(Boolean).join(" · ");
  li.append(who, meta);
  if (p.safe) {
    const ok = document.createElement("span");
    ok.className = "safe-mark";
    ok.textContent = `✓ ${t("marked_safe")} · ${t("safe_by")} ${p.safe.by} ${timeOf(p.safe.at)}`;
    li.append(ok);
  } else if (marking) {
    const btn = document.createElement("button");
    btn.className = "mark-safe noprint";
    btn.textContent = t("mark_safe");
    btn.addEventListener("click", async () => {
      btn.disabled = true;
      try {
        await api("POST", `/muster/${encodeURIComponent(p.holder)}/safe`, {});
        await refresh();
      } catch (x) {
        btn.disabled = false;
        btn.title = x.message;
        refresh().catch(() => {});  // the person may have badged out meanwhile
      }
    });
    li.append(btn);
  }
  return li;
}
