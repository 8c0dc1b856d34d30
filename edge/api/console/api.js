// Calls to the gate's API with the session cookie. Changes carry X-Requested-With, which the API demands of
// a cookie session. An error comes back as ApiError with the API's stable code, shown in the guard's language.
import { errorText, t } from "/console/lang.js";

export class ApiError extends Error {
  constructor(status, code, message, detail) {
    super(message);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

let onSignedOut = () => {};
export function whenSignedOut(fn) { onSignedOut = fn; }

export async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { "X-Requested-With": "gatekeeper-console" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  const data = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
  if (r.ok) return data;
  const code = data?.code || null;
  if (r.status === 401 && path !== "/session") onSignedOut();
  const fields = Array.isArray(data?.detail) ? data.detail.map(fieldLabel).filter(Boolean) : [];
  const text = errorText(code, englishDetail(data) || r.statusText);
  throw new ApiError(r.status, code, fields.length ? `${text} (${[...new Set(fields)].join(", ")})` : text, data?.detail);
}

// the form's own label for a field the API names, so the guard sees which box to correct
const FIELDS = { "visitor.name": "name", "visitor.company": "company", "visitor.id_number": "id_number",
                 purpose: "purpose", host: "host_label", reason: "reason", areas: "areas", party: "party",
                 token: "token" };
function fieldLabel(e) {
  const key = FIELDS[(e.loc || []).filter((x) => x !== "body" && x !== "query" && x !== "path").join(".")];
  return key ? t(key) : null;
}

// FastAPI's detail: a text, or a list naming each bad field (shown only when the code is not known here)
function englishDetail(data) {
  if (!data || data.detail === undefined) return "";
  if (typeof data.detail === "string") return data.detail;
  return data.detail.map((e) => `${(e.loc || []).filter((x) => x !== "body").join(".")}: ${e.msg}`).join("; ");
}
