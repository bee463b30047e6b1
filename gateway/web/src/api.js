// The REST API, called by RPC name: the gateway's OpenAPI document says, for each
// operation, its HTTP method, its path template and which field is the body (the same
// google.api.http annotations the gateway routes by). Auth rides in the HttpOnly
// sign-in cookie; the key never reaches this script.

let operations = null;

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.httpStatus = status;
    this.status = error.status || "UNKNOWN";
    this.details = error.details || [];
  }
  get violations() {
    const bad = this.details.find((d) => (d["@type"] || "").endsWith("google.rpc.BadRequest"));
    return (bad && bad.field_violations) || [];
  }
  get info() {
    return this.details.find((d) => (d["@type"] || "").endsWith("google.rpc.ErrorInfo")) || {};
  }
}

export async function loadOperations() {
  if (operations) return operations;
  const spec = await (await fetch("/openapi.json")).json();
  operations = {};
  for (const [, methods] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(methods)) {
      operations[op.operationId] = {
        method: method.toUpperCase(), template: op["x-http-template"], body: op["x-body-field"],
      };
    }
  }
  return operations;
}

export function hasOperation(id) {
  return Boolean(operations && operations[id]);
}

function getPath(obj, path) {
  return path.split(".").reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

// Fills `/v1/{name=projects/*/datasets/*}:verb` from the request; returns [url, fields used].
export function expandTemplate(template, request) {
  const used = [];
  const url = template.replace(/\{([^}=]+)(=[^}]*)?\}/g, (_, field) => {
    const value = getPath(request, field);
    if (value === undefined || value === "") throw new Error(`${field} is required`);
    used.push(field);
    return String(value).split("/").map(encodeURIComponent).join("/");
  });
  return [url, used];
}

function withoutPaths(request, paths) {
  const copy = structuredClone(request);
  for (const path of paths) {
    const parts = path.split(".");
    const last = parts.pop();
    const parent = parts.reduce((o, k) => (o == null ? undefined : o[k]), copy);
    if (parent) delete parent[last];
  }
  return copy;
}

// Nested objects become dotted field paths: {header: {size_bytes: 3}} → header.size_bytes=3.
function flatten(fields, prefix = "", out = []) {
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined || value === null || value === "") continue;
    const path = prefix + key;
    if (typeof value === "object" && !Array.isArray(value)) flatten(value, `${path}.`, out);
    else for (const v of Array.isArray(value) ? value : [value]) out.push([path, String(v)]);
  }
  return out;
}

function queryString(fields) {
  const params = new URLSearchParams();
  for (const [key, value] of flatten(fields)) params.append(key, value);
  const text = params.toString();
  return text ? `?${text}` : "";
}

// Builds (method, url, body) for an operation and a request object.
export async function prepare(operationId, request = {}) {
  const ops = await loadOperations();
  const op = ops[operationId];
  if (!op) {
    throw new ApiError(503, { error: { status: "UNAVAILABLE",
      message: `This part of MTW (${operationId.split(".")[0]}) is not available yet.` } });
  }
  const [url, used] = expandTemplate(op.template, request);
  const rest = withoutPaths(request, used);
  let body;
  let query = rest;
  if (op.body === "*") {
    body = rest;
    query = {};
  } else if (op.body) {
    body = rest[op.body] || {};
    delete rest[op.body];
  }
  return { method: op.method, url: url + queryString(query), body };
}

export async function call(operationId, request = {}) {
  const { method, url, body } = await prepare(operationId, request);
  const response = await fetch(url, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// Streams a File as the raw body of the upload operation, reporting progress.
export async function upload(operationId, request, file, onProgress) {
  const { method, url } = await prepare(operationId, request);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    xhr.setRequestHeader("content-type", "application/octet-stream");
    xhr.upload.onprogress = (e) => onProgress && onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.upload.onload = () => onProgress && onProgress(file.size, file.size, true);
    xhr.onerror = () => reject(new ApiError(0, { error: { message: "The upload was interrupted." } }));
    xhr.onload = () => {
      let data = {};
      try { data = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, data));
    };
    xhr.send(file);
  });
}

// Follows a Watch operation as Server-Sent Events. The browser resends Last-Event-ID
// when it reconnects, so nothing is missed or repeated. Returns a stop function.
export async function watch(operationId, request, { onEvent, onEnd, onError }) {
  const { url } = await prepare(operationId, request);
  const source = new EventSource(url);
  let stopped = false;
  const stop = () => { stopped = true; source.close(); };
  source.onmessage = (e) => onEvent && onEvent(JSON.parse(e.data));
  source.addEventListener("end", () => { stop(); onEnd && onEnd(); });
  source.addEventListener("error", (e) => {
    if (e.data) {  // an error event from the gateway: the call failed
      stop();
      const body = JSON.parse(e.data);
      onError && onError(new ApiError(body.error.code, body));
    } else if (!stopped && source.readyState === EventSource.CLOSED) {
      onError && onError(new ApiError(0, { error: { message: "Lost the connection to MTW." } }));
    }
  });
  return stop;
}

export async function session() {
  return (await fetch("/auth/session", { credentials: "same-origin" })).json();
}

export async function signIn(project, apiKey) {
  const response = await fetch("/auth/sign-in", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ project, api_key: apiKey }), credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export async function signOut() {
  await fetch("/auth/sign-out", { method: "POST", credentials: "same-origin" });
}
