// The guard console: plain DOM modules, no build step. Every text from the gate is set with textContent,
// never parsed as HTML. This file signs in and out and wires the views to the live feed.
import { api, whenSignedOut } from "/console/api.js";
import * as alarms from "/console/alarms.js";
import * as desk from "/console/desk.js";
import * as doors from "/console/doors.js";
import * as feed from "/console/feed.js";
import * as held from "/console/held.js";
import * as vehicles from "/console/vehicles.js";
import * as muster from "/console/muster.js";
import * as tours from "/console/tours.js";
import { setRole } from "/console/people.js";
import { applyStatic, setZone, t, word } from "/console/lang.js";

const $ = (id) => document.getElementById(id);
let musterTimer = null;
let toursTimer = null;

applyStatic();

function showSignIn() {
  feed.close();
  alarms.clear();
  doors.hide();
  clearInterval(musterTimer);
  clearInterval(toursTimer);
  $("console").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("who").textContent = "";
  document.title = t("title");
}
whenSignedOut(showSignIn);

async function start() {
  const me = await api("GET", "/session");
  setRole(me.role);
  const status = await api("GET", "/status");
  if (status.timezone) setZone(status.timezone);
  $("signin").hidden = true;
  $("console").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = `${me.person} · ${word("role", me.role)}`;
  $("where").textContent = `${me.site} / ${me.gate}`;
  $("walkin").hidden = !me.walkin;
  doors.start(me, status);
  await alarms.load(status.last_seq);
  feed.connect(Math.max(0, status.last_seq - 30));
  await Promise.all([held.refresh(), vehicles.refresh(), muster.refresh(), tours.refresh()]);
  clearInterval(musterTimer);
  musterTimer = setInterval(() => muster.refresh().catch(() => {}), 10000);
  clearInterval(toursTimer);
  toursTimer = setInterval(() => tours.refresh().catch(() => {}), 30000);
}

// a busy gate sends many events a second: each list is fetched again at most every half second
const pending = new Set();
function soon(fn) {
  if (pending.has(fn)) return;
  pending.add(fn);
  setTimeout(() => { pending.delete(fn); fn().catch(() => {}); }, 500);
}

feed.onEvent(doors.follow);
feed.onEvent(alarms.follow);
feed.onEvent((e) => {
  if (e.type.startsWith("exit.") || e.type === "visit.checked_out" || e.type === "visit.signed_off") soon(held.refresh);
  if (["access.granted", "access.passage", "exit.released", "muster.marked_safe", "mode.changed",
       "visit.checked_out"].includes(e.type)) soon(muster.refresh);
  if (tours.follows(e)) soon(tours.refresh);
  if (vehicles.follows(e)) soon(vehicles.refresh);  // P26
});

$("signin-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("signin-error").textContent = "";
  alarms.unlockSound();
  try {
    await api("POST", "/session", { token: $("token").value.trim() });
    $("token").value = "";  // the cookie carries the session; the token leaves the page
    await start();
  } catch { $("signin-error").textContent = t("bad_token"); }
});

$("signout").addEventListener("click", async () => {
  await api("DELETE", "/session").catch(() => {});
  showSignIn();
});
$("mv-print").addEventListener("click", () => window.print());

doors.setUp();
desk.setUp();
start().catch(() => showSignIn());
