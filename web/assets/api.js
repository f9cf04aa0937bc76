// The gateway's HTTP API, as the page uses it: the session token, JSON calls, uploads with
// progress, downloads. Every request is same-origin and sends the token itself; no cookies
// (`credentials: "omit"` also keeps the browser from offering its own login prompt on a 401).

import { session } from "./session.js";

export { session };

/** An answer other than 2xx, with the API's `{error: {code, message}}` when it sent one. */
export class ApiError extends Error {
  /** @param {number} status @param {string} code @param {string} message */
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }

  /** True when the token is missing, expired or its account disabled: the user must sign in again. */
  get sessionEnded() {
    return (
      this.status === 401 || (this.status === 403 && !["forbidden", "wrong_password"].includes(this.code))
    );
  }

  /** The server could not be reached at all. */
  get unreachable() {
    return this.status === 0 && this.code === "network";
  }
}

/** Listeners told when a request finds the session ended (expired token, disabled account). */
const sessionEndedListeners = new Set();
export function onSessionEnded(listener) {
  sessionEndedListeners.add(listener);
}

function check(error) {
  if (error instanceof ApiError && error.sessionEnded && session.token) {
    for (const listener of sessionEndedListeners) listener(error);
  }
  return error;
}

/** Reads an error answer into an ApiError, with a sentence even when the body is not the API's JSON. */
async function errorFrom(response) {
  let code = "error";
  let message = "";
  try {
    const body = await response.json();
    code = body?.error?.code ?? code;
    message = body?.error?.message ?? "";
  } catch {
    // not JSON: fall back to the status below
  }
  return new ApiError(response.status, code, message || fallbackMessage(response.status));
}

function fallbackMessage(status) {
  if (status === 413) return "The file is larger than this server accepts.";
  if (status === 415) return "This file is not a video or audio file we can convert.";
  if (status === 503 || status === 502 || status === 504)
    return "The service is briefly unavailable; try again shortly.";
  return `The server answered ${status}.`;
}

/** Listeners told whether the server answered (true) or could not be reached (false). */
const reachabilityListeners = new Set();
export function onReachability(listener) {
  reachabilityListeners.add(listener);
}
function reached(ok) {
  for (const listener of reachabilityListeners) listener(ok);
}

const offline = () => {
  reached(false);
  return new ApiError(0, "network", "The server could not be reached; check your connection and try again.");
};

async function send(path, { method = "GET", body, headers = {} } = {}) {
  const token = session.token;
  let response;
  try {
    response = await fetch(path, {
      method,
      credentials: "omit",
      cache: "no-store",
      headers: {
        accept: "application/json",
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body === undefined ? {} : { "content-type": "application/json" }),
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw offline();
  }
  reached(response.status < 502 || response.status > 504);
  if (!response.ok) throw check(await errorFrom(response));
  return response;
}

/** A JSON call; resolves to the parsed body (undefined for 204). */
export async function api(path, options) {
  const response = await send(path, options);
  return response.status === 204 ? undefined : response.json();
}

/** A POST without the session's token (login, registration); resolves to the JSON answer. */
async function postWithoutToken(path, headers, body) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      credentials: "omit",
      cache: "no-store",
      headers: { accept: "application/json", ...headers },
      body,
    });
  } catch {
    throw offline();
  }
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

/** `POST /login` with Basic credentials; resolves to `{token, expiresAt}`. */
export async function login(email, password) {
  const bytes = new TextEncoder().encode(`${email}:${password}`);
  const basic = btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""));
  return postWithoutToken("/login", { authorization: `Basic ${basic}` });
}

/** `POST /register` (only when the server has registration open); resolves to the new account. */
export async function register(email, password) {
  return postWithoutToken(
    "/register",
    { "content-type": "application/json" },
    JSON.stringify({ email, password }),
  );
}

/**
 * `POST /upload` of one file with XMLHttpRequest, whose upload progress fetch cannot report.
 * Returns the promise of the 202 body and a function that cancels the upload. `fields` are the
 * option fields, sent before the file as the API requires.
 * @param {File} file @param {(fraction: number) => void} onProgress @param {[string, string][]} fields
 */
export function upload(file, onProgress, fields = []) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open("POST", "/upload");
    xhr.setRequestHeader("accept", "application/json");
    const token = session.token;
    if (token) xhr.setRequestHeader("authorization", `Bearer ${token}`);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let body;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = undefined;
      }
      if (xhr.status >= 200 && xhr.status < 300 && body) return resolve(body);
      const error = new ApiError(
        xhr.status,
        body?.error?.code ?? "error",
        body?.error?.message ?? fallbackMessage(xhr.status),
      );
      reject(check(error));
    });
    xhr.addEventListener("error", () =>
      reject(
        new ApiError(
          0,
          "network",
          "The upload stopped before the server answered: the connection dropped, or the file is larger than the server accepts.",
        ),
      ),
    );
    xhr.addEventListener("abort", () => reject(new ApiError(0, "aborted", "Upload cancelled.")));
    const form = new FormData();
    for (const [name, value] of fields) form.append(name, value);
    form.append("file", file, file.name);
    xhr.send(form);
  });
  return { promise, cancel: () => xhr.abort() };
}

/** Fetches `/download?fid=` with the token: the MP3 and the server's name for it. */
export async function fetchMp3(fid) {
  const response = await send(`/download?fid=${encodeURIComponent(fid)}`, {
    headers: { accept: "audio/mpeg" },
  });
  const name = fileNameFrom(response.headers.get("content-disposition")) ?? "audio.mp3";
  return { name, blob: await response.blob() };
}

/** Hands a blob to the browser as a download under `name`. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  // The browser has taken the blob once the click's navigation started; give it time anyway.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Fetches `/download?fid=` with the token and saves it under the server's file name. */
export async function download(fid) {
  const { name, blob } = await fetchMp3(fid);
  saveBlob(blob, name);
  return name;
}

/**
 * A short-lived signed URL of the MP3 (`POST /download/link`): what an `<audio>` element can
 * fetch without the bearer header, streaming and seeking with Range requests.
 */
export async function downloadLink(fid) {
  return api(`/download/link?fid=${encodeURIComponent(fid)}`, { method: "POST" });
}

/** `HEAD /download?fid=`: the MP3's file name and size, or an ApiError (404 when not yours or gone). */
export async function describeDownload(fid) {
  const response = await send(`/download?fid=${encodeURIComponent(fid)}`, { method: "HEAD" });
  return {
    name: fileNameFrom(response.headers.get("content-disposition")) ?? "audio.mp3",
    size: Number(response.headers.get("content-length")) || undefined,
  };
}

/** The file name of a Content-Disposition header: RFC 5987 `filename*` first, then `filename`. */
export function fileNameFrom(header) {
  if (!header) return undefined;
  const extended = /filename\*\s*=\s*([^']*)'[^']*'([^;]+)/i.exec(header);
  if (extended?.[2]) {
    try {
      return decodeURIComponent(extended[2].trim());
    } catch {
      // malformed: try the plain parameter
    }
  }
  const quoted = /filename\s*=\s*"((?:[^"\\]|\\.)*)"/i.exec(header);
  if (quoted?.[1]) return quoted[1].replace(/\\(.)/g, "$1");
  const plain = /filename\s*=\s*([^;\s]+)/i.exec(header);
  return plain?.[1];
}
