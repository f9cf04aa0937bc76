// `GET /events` (Server-Sent Events) read with fetch, because EventSource cannot send the
// Authorization header. Reconnects with exponential backoff and jitter; tells the page when the
// stream is live again so it can fetch what it missed while disconnected.

import { ApiError } from "./api.js";

const MAX_DELAY_MS = 30_000;

/**
 * @param {object} options
 * @param {() => string | null} options.token
 * @param {(type: string, data: string) => void} options.onEvent
 * @param {(state: "connecting" | "live" | "reconnecting", detail?: {first: boolean}) => void} options.onState
 * @param {(error: ApiError) => void} options.onSessionEnded
 * @returns {() => void} stops the stream for good
 */
export function connectEvents({ token, onEvent, onState, onSessionEnded }) {
  let stopped = false;
  let controller = new AbortController();
  let wake = () => {};
  let baseDelay = 1000;
  let first = true;

  const onOnline = () => wake();
  window.addEventListener("online", onOnline);

  async function run() {
    let attempt = 0;
    while (!stopped) {
      controller = new AbortController();
      onState(first ? "connecting" : "reconnecting");
      try {
        const response = await fetch("/events", {
          credentials: "omit",
          cache: "no-store",
          headers: { accept: "text/event-stream", authorization: `Bearer ${token()}` },
          signal: controller.signal,
        });
        if (response.status === 401 || response.status === 403) {
          if (stopped) return;
          let body;
          try {
            body = await response.json();
          } catch {
            body = undefined;
          }
          if (stopped) return;
          onSessionEnded(
            new ApiError(response.status, body?.error?.code ?? "error", body?.error?.message ?? ""),
          );
          return;
        }
        if (!response.ok || !response.body) throw new Error(`/events answered ${response.status}`);
        attempt = 0;
        onState("live", { first });
        first = false;
        await read(response.body, onEvent, (ms) => {
          baseDelay = ms;
        });
      } catch {
        // a dropped connection or a refused one: retry below
      }
      if (stopped) return;
      first = false;
      onState("reconnecting");
      const delay = Math.min(MAX_DELAY_MS, baseDelay * 2 ** attempt) * (0.5 + Math.random() / 2);
      attempt += 1;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, delay);
        wake = () => {
          clearTimeout(timer);
          resolve(undefined);
        };
      });
    }
  }
  run();

  return () => {
    stopped = true;
    window.removeEventListener("online", onOnline);
    controller.abort();
    wake();
  };
}

/** Parses an event stream (the WHATWG format: fields, comments, blank line ends an event). */
async function read(body, onEvent, onRetry) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let type = "";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    // A CR at the very end may be the first half of a CRLF split across chunks: keep it back.
    const heldCr = buffer.endsWith("\r") ? "\r" : "";
    const lines = (heldCr ? buffer.slice(0, -1) : buffer).split(/\r\n|\r|\n/);
    // The last piece is an unfinished line: keep it for the next chunk.
    buffer = (lines.pop() ?? "") + heldCr;
    for (const line of lines) {
      if (line === "") {
        if (data.length > 0) onEvent(type || "message", data.join("\n"));
        type = "";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let fieldValue = colon < 0 ? "" : line.slice(colon + 1);
      if (fieldValue.startsWith(" ")) fieldValue = fieldValue.slice(1);
      if (field === "event") type = fieldValue;
      else if (field === "data") data.push(fieldValue);
      else if (field === "retry" && /^\d+$/.test(fieldValue)) onRetry(Number(fieldValue));
    }
  }
}
