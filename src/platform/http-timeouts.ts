import { type ServerResponse, STATUS_CODES } from "node:http";
import { Socket } from "node:net";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { securityHeaders } from "./security-headers.ts";

/**
 * Every request is answered or closed in bounded time, so slow or stalled clients cannot pile up
 * open connections:
 * - the headers must arrive within `HEADERS_TIMEOUT_MS` (Node answers 408 and closes);
 * - a connection idle for `IDLE_TIMEOUT_MS` in both directions is closed (a body that stops
 *   flowing, an upload included; event streams send a heartbeat well within it);
 * - a whole request other than an upload (bodies up to 1 MiB) must have arrived within
 *   `REQUEST_TIMEOUT_MS`, which a body trickled byte by byte cannot dodge. Uploads may take as long
 *   as the file needs, as long as it keeps flowing.
 */
export const HEADERS_TIMEOUT_MS = 10_000;
export const IDLE_TIMEOUT_MS = 30_000;
export const REQUEST_TIMEOUT_MS = 30_000;

/** Fastify's options for the timeouts above (Node's own request timeout is off: it would cut long uploads). */
export function timeoutServerOptions(overrides: Partial<HttpTimeouts> = {}) {
  const timeouts = { ...defaultTimeouts, ...overrides };
  return {
    connectionTimeout: timeouts.idleMs,
    keepAliveTimeout: 5_000,
    requestTimeout: 0,
    http: {
      headersTimeout: timeouts.headersMs,
      // How often Node looks for requests past their headers timeout (its default, 30 s, would
      // let a slow client hold a connection four times longer than the limit).
      connectionsCheckingInterval: Math.min(1_000, timeouts.headersMs),
    },
  };
}

export interface HttpTimeouts {
  headersMs: number;
  idleMs: number;
  requestMs: number;
}

const defaultTimeouts: HttpTimeouts = {
  headersMs: HEADERS_TIMEOUT_MS,
  idleMs: IDLE_TIMEOUT_MS,
  requestMs: REQUEST_TIMEOUT_MS,
};

/**
 * The whole-request deadline for everything but the routes `unbounded` names (uploads): a request
 * whose body has not fully arrived in time is answered 408 and its connection closed.
 */
export function registerRequestDeadline(
  app: FastifyInstance,
  options: { requestMs?: number; unbounded?: (request: FastifyRequest) => boolean } = {},
): void {
  const requestMs = options.requestMs ?? REQUEST_TIMEOUT_MS;
  // A connection idle past its timeout: answered 408 if its request has no answer yet, else closed.
  const unanswered = new WeakMap<Socket, ServerResponse>();
  app.server.on("timeout", (socket: Socket) => {
    const response = unanswered.get(socket);
    if (response && !response.headersSent) {
      answerRaw(socket, 408, "request_timeout", "The request stalled: nothing arrived for too long.");
    } else {
      socket.destroy();
    }
  });
  app.addHook("onResponse", async (request) => {
    unanswered.delete(request.raw.socket);
  });
  app.addHook("onRequest", async (request, reply) => {
    // Requests injected in-process (`serve all` reaching auth) have no connection to time out.
    if (!(request.raw.socket instanceof Socket)) return;
    unanswered.set(request.raw.socket, reply.raw);
    if (request.raw.complete || options.unbounded?.(request)) return;
    const timer = setTimeout(() => {
      if (request.raw.complete) return;
      request.log.info("request body did not arrive in time; answered 408");
      answerRaw(request.raw.socket, 408, "request_timeout", "The request took too long to arrive.");
    }, requestMs);
    timer.unref();
    request.raw.once("end", () => clearTimeout(timer));
    request.raw.once("close", () => clearTimeout(timer));
  });
}

/**
 * Errors Node meets before a request reaches Fastify (header timeout, headers too large, a line
 * that is not HTTP), in the project's error shape; the default would use another and say less.
 */
export function clientErrorHandler(error: NodeJS.ErrnoException, socket: Socket): void {
  if (error.code === "ECONNRESET" || socket.destroyed) return;
  if (error.code === "ERR_HTTP_REQUEST_TIMEOUT") {
    answerRaw(socket, 408, "request_timeout", "The request took too long to arrive.");
  } else if (error.code === "HPE_HEADER_OVERFLOW") {
    answerRaw(socket, 431, "headers_too_large", "The request headers are too large.");
  } else {
    answerRaw(socket, 400, "bad_request", "The request is not valid HTTP.");
  }
}

/** Writes a complete error response straight to the socket and closes it. */
function answerRaw(socket: Socket, status: number, code: string, message: string): void {
  if (socket.writable && !socket.destroyed) {
    const body = JSON.stringify({ error: { code, message } });
    const headers = Object.entries({
      ...securityHeaders,
      "content-type": "application/json; charset=utf-8",
      "content-length": String(Buffer.byteLength(body)),
      connection: "close",
    })
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join("");
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n${headers}\r\n${body}`);
  }
  // Once the answer is flushed (or at once when nothing could be written).
  if (socket.writableEnded) socket.once("finish", () => socket.destroy());
  else socket.destroy();
}
