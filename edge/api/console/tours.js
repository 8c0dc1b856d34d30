// Guard tours (P21): tonight's rounds of each route, each with its state and the timeline of its taps. Hidden
// on a gate without tours. Read again when a tour event or alarm arrives, and every half minute (a round is
// missed or late with time alone).
import { api } from "/console/api.js";
import { person } from "/console/people.js";
import { t, timeOf, word } from "/console/lang.js";

export async function refresh() {
  const tours = await api("GET", "/tours");
  const root = document.getElementById("tours");
  root.hidden = tours.length === 0;
  document.getElementById("tour-list").replaceChildren(...tours.map(route));
}

export const follows = (e) => e.type.startsWith("tour.") || (e.type === "alarm.raised" && /^tour_/.test(e.data?.alarm || ""));

function route(tour) {
  const sec = document.createElement("section");
  sec.className = "tour";
  sec.dataset.tour = tour.tour;
  const h = document.createElement("h3");
  const meta = document.createElement("small");
  meta.textContent = ` ${tour.checkpoints.join(" → ")} · ${t("tour_limit")} ${tour.limit_min} ${t("tour_minutes")}`;
  h.append(tour.tour, meta);
  const ol = document.createElement("ol");
  ol.className = "rounds";
  ol.append(...tour.rounds.map(round));
  sec.append(h, ol);
  return sec;
}

function round(r) {
  const li = document.createElement("li");
  li.dataset.round = r.round;
  li.dataset.state = r.state;
  li.className = `round ${r.state}${r.late ? " late" : ""}`;
  const head = document.createElement("div");
  const state = [word("tour_state", r.state), r.late ? t("tour_late") : ""].filter(Boolean).join(" · ");
  head.className = "round-head";
  head.append(`${t("tour_round")} ${r.round} · ${timeOf(r.due)} · ${state}`);
  if (r.holder) head.append(" · ", person({ holder: r.holder }));
  li.append(head);
  if (r.timeline.length) {
    const tl = document.createElement("ul");
    tl.className = "timeline";
    tl.append(...r.timeline.map((tap) => {
      const item = document.createElement("li");
      item.className = tap.order;
      item.textContent = `${timeOf(tap.at)} ${tap.checkpoint}` + (tap.order === "in_order" ? "" : ` (${word("tour_order", tap.order)})`);
      return item;
    }));
    li.append(tl);
  }
  if (r.skipped.length) {
    const s = document.createElement("p");
    s.className = "skipped";
    s.textContent = `${t("tour_skipped")}: ${r.skipped.join(", ")}`;
    li.append(s);
  }
  return li;
}
