// Open alarms (a forced door, a door held open, a blocklisted person, a device fault…) stay on top of every
// view until a guard acknowledges them; the acknowledgement is journaled with who (P19). A new alarm sounds
// once: a guard who looked away hears it, and a room of tablets is not left beeping.
import { api } from "/console/api.js";
import { ALARM_TYPES, describe } from "/console/feed.js";
import { count, t, word, timeOf } from "/console/lang.js";

const open = new Map();  // seq -> alarm
let audio = null;
let liveFrom = Infinity;  // alarms after this seq arrived live: they sound

// made on the sign-in click: a browser lets a page play sound only after a person's gesture
export function unlockSound() {
  try { audio = audio || new AudioContext(); audio.resume(); } catch { audio = null; }
}

function beep() {
  document.body.dataset.beeps = String(Number(document.body.dataset.beeps || 0) + 1);
  if (!audio) return;
  const osc = audio.createOscillator();
  const gain = audio.createGain();
  osc.frequency.value = 880;
  gain.gain.setValueAtTime(0.3, audio.currentTime);
  gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.8);
  osc.connect(gain).connect(audio.destination);
  osc.start();
  osc.stop(audio.currentTime + 0.8);
}

export async function load(lastSeq) {
  liveFrom = lastSeq;
  open.clear();
  try {
    for (const a of await api("GET", "/alarms")) open.set(a.seq, a);
  } finally { draw(); }
}

export function clear() { open.clear(); liveFrom = Infinity; draw(); }

export function follow(e) {
  if (ALARM_TYPES.has(e.type) && !open.has(e.seq)) {
    open.set(e.seq, { seq: e.seq, type: e.type, time: e.time, data: e.data || {},
                      priority: e.data?.priority || (e.type === "door.forced" ? "high" : "normal") });
    draw();
    if (e.seq > liveFrom) beep();
  } else if (e.type === "alarm.acknowledged" && open.delete(e.data?.alarm_seq)) {
    draw();
  }
}

function draw() {
  const box = document.getElementById("alarms");
  const list = document.getElementById("alarm-list");
  const items = [...open.values()].sort((a, b) => b.seq - a.seq);
  box.hidden = items.length === 0;
  document.getElementById("alarm-count").textContent = count("alarms_count", items.length);
  list.replaceChildren(...items.map(item));
}

function item(a) {
  const li = document.createElement("li");
  li.dataset.seq = a.seq;
  li.className = a.priority === "high" ? "high" : "";
  const head = document.createElement("div");
  head.className = "alarm-head";
  const what = document.createElement("strong");
  what.textContent = word("event", a.type);
  const when = document.createElement("time");
  when.dateTime = a.time;
  when.textContent = timeOf(a.time);
  const detail = document.createElement("span");
  detail.append(...describe(a.type, a.data || {}));
  head.append(what, " ", when, " ", detail);
  const btn = document.createElement("button");
  btn.className = "ack";
  btn.textContent = t("acknowledge");
  const err = document.createElement("p");
  err.className = "error";
  btn.addEventListener("click", async () => {
    btn.disabled = true;
    try {
      await api("POST", `/alarms/${a.seq}/ack`, {});
      open.delete(a.seq);
      draw();
    } catch (x) {
      if (x.code === "already_acknowledged") { open.delete(a.seq); draw(); return; }
      err.textContent = x.message;
      btn.disabled = false;
    }
  });
  li.append(head, btn, err);
  return li;
}
