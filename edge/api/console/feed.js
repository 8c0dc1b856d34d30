// The live feed: one line per journal event, newest on top, denials and alarms impossible to miss. Every
// event is also handed to the views that follow the gate's state (mode, held exits, muster, alarms).
import { person } from "/console/people.js";
import { isCode, t, word, timeOf } from "/console/lang.js";

const FEED_MAX = 200;
export const ALARM_TYPES = new Set(["alarm.raised", "door.forced", "door.held_open", "device.fault"]);
const listeners = [];
let source = null;

export function onEvent(fn) { listeners.push(fn); }

export function connect(after) {
  close();
  source = new EventSource(`/events/stream?after_seq=${after}`);
  source.onmessage = (m) => {
    const e = JSON.parse(m.data);
    show(e);
    for (const fn of listeners) {
      try { fn(e); } catch (x) { console.error(x); }
    }
  };
  source.onerror = () => document.body.classList.add("offline");
  source.onopen = () => document.body.classList.remove("offline");
}

export function close() {
  if (source) { source.close(); source = null; }
  document.getElementById("feed").replaceChildren();
}

function show(e) {
  const d = e.data || {};
  const li = document.createElement("li");
  li.dataset.type = e.type;
  li.dataset.seq = e.seq;
  if (e.type === "access.denied") li.className = "deny";
  else if (ALARM_TYPES.has(e.type)) li.className = "alarm";
  else if (e.type === "exit.held") li.className = "held";
  const when = document.createElement("time");
  when.dateTime = e.time;
  when.textContent = timeOf(e.time);
  const what = document.createElement("span");
  what.className = "what";
  what.textContent = word("event", e.type);
  const detail = document.createElement("span");
  detail.className = "detail";
  detail.append(...describe(e.type, d));
  li.append(when, what, detail);
  const feed = document.getElementById("feed");
  feed.prepend(li);
  while (feed.children.length > FEED_MAX) feed.lastChild.remove();
}

// the parts of an event a guard reads, each translated; ids only where there is nothing better
export function describe(type, d) {
  const parts = [];
  const add = (x) => { if (x !== undefined && x !== null && x !== "") parts.push(x); };
  if (d.holder) add(person({ holder: d.holder, category: d.category, private: d.private }));
  else if (d.private) add(person({ private: true }));  // P29: the gate told a guard no more than that
  else if (d.credential_ref) add(d.credential_ref);
  if (type === "visit.overstay" && d.area) add(`${t("area_last")}: ${d.area}`);  // P36
  if (d.door) add(d.direction ? `${d.door} (${word("dir", d.direction)})` : d.door);
  if (d.reason && d.reason !== "ok" && isCode("reason", d.reason)) add(word("reason", d.reason));
  for (const f of d.flags || []) add(word("flag", f));
  if (d.alarm) add(word("alarm", d.alarm));
  if (d.open_doors?.length) add(`${t("open_doors")}: ${d.open_doors.join(", ")}`);  // P32: what the guard bypassed
  if (d.mode) add(`${word("mode", d.mode)}${d.scope ? " · " + word("scope", d.scope) : ""}`);
  if (d.device) add(d.device);
  // SPEC §2 names who acted `actor`; journals written before that said person, by, guard or released_by
  const actor = d.actor || d.person || d.by || d.guard || d.released_by;
  if (actor) add(`${t("by")} ${actor}`);
  if (d.reason && !isCode("reason", d.reason)) add(`“${d.reason}”`);  // a person's own words, as written
  return parts.flatMap((p, i) => (i ? [" · ", p] : [p]));
}
