// The console's language (the browser's: Chinese when it asks for any zh, else English), its words, and
// times shown in the site's zone (from /status), not the tablet's.
import { WORDS } from "/console/words.js";

export const lang = (navigator.languages || [navigator.language || "en"]).some((l) => /^zh/i.test(l)) ? "zh" : "en";
export const locale = lang === "zh" ? "zh-CN" : "en-GB";
const table = WORDS[lang];
const errors = () => (window.GK_ERRORS || {})[lang] || {};
let zone;  // undefined: the browser's, until /status names the site's

export function t(key) {
  const v = table[key] ?? WORDS.en[key];
  return typeof v === "string" ? v : key;
}

// a word of a group (`reason`, `cat`, …) for a code from the gate; an unknown code is shown as it came,
// so a newer gate's code is still readable
export function word(group, code) {
  if (code === undefined || code === null || code === "") return "";
  const v = table[`${group}.${code}`] ?? WORDS.en[`${group}.${code}`];
  return typeof v === "string" ? v : String(code);
}

export const isCode = (group, code) => `${group}.${code}` in WORDS.en;

export function count(key, n) {
  const forms = table[key] || WORDS.en[key];
  const form = forms[new Intl.PluralRules(locale).select(n)] ?? forms.other;
  return form.replace("{n}", new Intl.NumberFormat(locale).format(n));
}

export function errorText(code, fallback) {
  return (code && errors()[code]) || fallback || t("error");
}

export function setZone(tz) {
  try {
    new Intl.DateTimeFormat(locale, { timeZone: tz });
    zone = tz;
  } catch { zone = undefined; }  // a zone this browser does not know: its own is the best left
}

function fmt(iso, opts) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return new Intl.DateTimeFormat(locale, { timeZone: zone, hourCycle: "h23", ...opts }).format(d);
}
export const timeOf = (iso) => fmt(iso, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
export const dateTimeOf = (iso) => fmt(iso, { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
                                              minute: "2-digit" });

export function applyStatic(root = document) {
  document.documentElement.lang = locale === "zh-CN" ? "zh-CN" : "en";
  root.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  root.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
  root.querySelectorAll("[data-i18n-label]").forEach((el) => { el.setAttribute("aria-label", t(el.dataset.i18nLabel)); });
}
