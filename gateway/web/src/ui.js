// Small DOM helpers and formatters shared by the pages.

// h("div", {class: "x", onclick: f}, child, "text") → an element.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;
export const nextId = (prefix = "f") => `${prefix}-${++uid}`;

export const num = (v) => Number(v || 0);
export const fmtInt = (v) => num(v).toLocaleString("en");
export const pct = (v, digits = 1) => `${(num(v) * 100).toFixed(digits)} %`;

export function fmtBytes(v) {
  let n = num(v);
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${n.toFixed(n < 10 && i ? 1 : 0)} ${units[i]}`;
}

export function fmtParams(v) {
  const n = num(v);
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} B parameters`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(0)} M parameters`;
  return `${fmtInt(n)} parameters`;
}

// Proto3 JSON durations look like "93.5s".
export function seconds(duration) {
  return duration ? parseFloat(String(duration)) : 0;
}

export function fmtDuration(duration) {
  let s = Math.round(typeof duration === "number" ? duration : seconds(duration));
  if (s < 60) return `${s} s`;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.round(s / 60);
  return h ? `${h} h ${m} min` : `${m} min`;
}

export const enumLabel = (value, prefix) =>
  String(value || "").replace(prefix, "").toLowerCase().replace(/_/g, " ");

export const TASK_LABELS = {
  TASK_SEQUENCE_CLASSIFICATION: "Text classification",
  TASK_CAUSAL_LM: "Text generation (continue text)",
  TASK_CHAT_SFT: "Chat assistant",
};

export const FORMAT_LABELS = {
  DATA_FORMAT_CSV: "CSV", DATA_FORMAT_TSV: "TSV", DATA_FORMAT_JSONL: "JSON Lines",
  DATA_FORMAT_JSON: "JSON", DATA_FORMAT_PARQUET: "Parquet", DATA_FORMAT_TEXT: "Plain text",
};

export const STATE_LABELS = {
  JOB_STATE_QUEUED: "Queued", JOB_STATE_PREPARING: "Preparing", JOB_STATE_RUNNING: "Running",
  JOB_STATE_SUCCEEDED: "Succeeded", JOB_STATE_FAILED: "Failed",
  JOB_STATE_CANCELLING: "Cancelling", JOB_STATE_CANCELLED: "Cancelled",
};
export const TERMINAL = new Set(["JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"]);

// Announces a message to screen readers (and shows it) in the page's live region.
export function announce(message) {
  const region = document.getElementById("announcer");
  if (region) region.textContent = message;
}

// An error box: the message, and the field violations as a list.
export function errorBox(error, { title = "Something went wrong" } = {}) {
  const violations = (error && error.violations) || [];
  return h("div", { class: "error", role: "alert" },
    h("strong", {}, title), h("p", {}, error.message || String(error)),
    violations.length ? h("ul", {}, violations.map((v) => h("li", {}, h("code", {}, v.field), " — ", v.description))) : null);
}

export function slug(text, fallback = "item") {
  const base = String(text || "").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40);
  const start = /^[a-z]/.test(base) ? base : `${fallback}-${base}`.replace(/-+$/, "");
  return `${start}-${Math.random().toString(36).slice(2, 7)}`;
}

export function copyButton(getText, label = "Copy") {
  const button = h("button", { type: "button", class: "secondary small" }, label);
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(getText());
      announce("Copied to the clipboard");
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select and copy";
    }
    setTimeout(() => { button.textContent = label; }, 1500);
  });
  return button;
}
