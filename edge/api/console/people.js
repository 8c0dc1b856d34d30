// People as a guard sees them: one function renders every person on every view, by name (and company for a
// visitor), with the id on a second line. Events carry only holder ids, so names are looked up in batches
// (GET /people) and filled in when they come. Role-aware: a private guest is shown to a guard as such, with
// neither name nor id (P29); a supervisor sees everything.
import { api } from "/console/api.js";
import { t, word } from "/console/lang.js";

const known = new Map();  // holder -> {name, company, category, private} or null (not known to the gate)
const waiting = new Set();
let role = "guard";
let timer = null;

export function setRole(r) { role = r; }
export function roleNow() { return role; }

// `p`: {holder, name?, company?, category?, private?}; a missing name is looked up
export function person(p) {
  const el = document.createElement("span");
  el.className = "person";
  el.dataset.holder = p.holder ?? "";
  const info = { ...(known.get(p.holder) || {}), ...strip(p) };
  draw(el, info);
  if (p.holder && !info.name && !info.private && !known.has(p.holder)) ask(p.holder);
  return el;
}

function strip(p) {
  return Object.fromEntries(Object.entries(p).filter(([, v]) => v !== undefined && v !== null));
}

function draw(el, p) {
  el.replaceChildren();
  if (p.private && role === "guard") {
    el.append(t("private_guest"));
    el.classList.add("private");
    return;
  }
  const name = document.createElement("span");
  name.className = "pname";
  name.textContent = p.name || p.holder || t("unknown_person");
  el.append(name);
  if (p.company && p.category !== "staff") {
    const co = document.createElement("span");
    co.className = "pco";
    co.textContent = p.company;
    el.append(co);
  }
  if (p.name && p.holder) {
    const id = document.createElement("small");
    id.className = "pid";
    id.textContent = p.holder;
    el.append(id);
    el.title = p.holder;
  }
}

export function categoryOf(p) {
  return [word("cat", p.category), p.tier ? word("tier", p.tier) : ""].filter(Boolean).join(" · ");
}

function ask(holder) {
  waiting.add(holder);
  if (!timer) timer = setTimeout(lookup, 150);
}

async function lookup() {
  timer = null;
  const holders = [...waiting].slice(0, 200);
  holders.forEach((h) => waiting.delete(h));
  if (waiting.size) timer = setTimeout(lookup, 150);
  let found = {};
  try {
    found = await api("GET", "/people?" + holders.map((h) => "holder=" + encodeURIComponent(h)).join("&"));
  } catch { return; }  // asked again the next time the person is shown
  for (const h of holders) {
    known.set(h, found[h] || null);
    if (!found[h]) continue;
    document.querySelectorAll(`.person[data-holder="${CSS.escape(h)}"]`).forEach((el) => draw(el, { holder: h, ...found[h] }));
  }
}
