// The walk-in desk (P13): register after the host confirmed, print the pass, copy its text for a phone. The
// form clears once the pass is made (the ID number never stays on screen); registering the same ID twice the
// same day asks the guard first.
import { api } from "/console/api.js";
import { person } from "/console/people.js";
import { dateTimeOf, t } from "/console/lang.js";

const $ = (id) => document.getElementById(id);
let pending = null;  // the body the guard is asked to register again

export function setUp() {
  $("walkin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    submit({
      visitor: { name: $("w-name").value.trim(), company: $("w-company").value.trim(), id_number: $("w-id").value.trim() },
      purpose: $("w-purpose").value.trim(), host: $("w-host").value.trim(), host_confirmation: $("w-confirm").value,
      party: parseInt($("w-party").value, 10) || 1,
    });
  });
  $("w-repeat").addEventListener("click", () => { if (pending) submit({ ...pending, repeat: true }); });
  $("print").addEventListener("click", () => window.print());
  $("copy-pass").addEventListener("click", copy);
}

async function submit(body) {
  $("walkin-error").textContent = "";
  $("w-repeat-box").hidden = true;
  try {
    const v = await api("POST", "/visits", body);
    pending = null;
    $("walkin-form").reset();
    show(v);
  } catch (x) {
    if (x.code === "already_registered_today") {
      pending = body;
      $("w-repeat-text").textContent = x.message;
      $("w-repeat-box").hidden = false;
      return;
    }
    $("walkin-error").textContent = x.message;
  }
}

function show(v) {
  $("pass-qr").src = v.pass_png;
  $("pass-name").replaceChildren(person({ holder: v.holder, name: v.name, company: v.company, category: "visitor" }));
  $("pass-host").replaceChildren(person({ holder: v.host }));
  $("pass-areas").textContent = v.areas.join(", ");
  $("pass-until").textContent = dateTimeOf(v.valid_until);
  $("pass-visit").textContent = v.visit;
  $("pass-text").value = v.pass;
  $("copy-msg").textContent = "";
  $("printed").hidden = false;
  $("printed").scrollIntoView({ block: "center" });
}

async function copy() {
  const text = $("pass-text").value;
  try {
    await navigator.clipboard.writeText(text);  // only on https or loopback
    $("copy-msg").textContent = t("copied");
  } catch {
    $("pass-text").hidden = false;
    $("pass-text").select();
    $("copy-msg").textContent = t("copy_failed");
  }
}
