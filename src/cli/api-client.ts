import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import http, { type IncomingMessage, STATUS_CODES } from "node:http";
import https from "node:https";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { IssuedToken as Login, User } from "../contracts/auth-api.ts";
import { isFinalStatus, type Job, type JobPage } from "../contracts/jobs.ts";
import { errorMessage } from "../platform/error-message.ts";

export type { Job, JobPage, Login, User };

/** One Server-Sent Event. */
export interface ServerEvent {
  event: string;
  data: string;
}

/** An answer of the API that is not a success: its status, and the `{error: {code, message}}` it sent. */
export class ApiError extends Error {
  override name = "ApiError";
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }

  /** The token is missing, invalid or expired, or its account disabled: logging in again helps. */
  get isAuthProblem(): boolean {
    return (
      this.status === 401 ||
      (this.status === 403 && this.code !== "forbidden" && this.code !== "wrong_password")
    );
  }
}

/** The server could not be reached at all (refused, DNS, reset, TLS). */
export class ConnectionError extends Error {
  override name = "ConnectionError";
}

export const isEnded = (job: Job): boolean => isFinalStatus(job.status);

/**
 * The gateway's public HTTP API, as the `vid2mp3` command uses it. Every non-2xx answer becomes
 * an `ApiError` carrying the server's own message; a network failure a `ConnectionError`.
 */
export class ApiClient {
  readonly baseUrl: URL;
  readonly token: string | undefined;

  constructor(baseUrl: string | URL, token?: string) {
    const base = new URL(baseUrl);
    // Paths are resolved relative to the base, so a gateway behind a path prefix works too.
    if (!base.pathname.endsWith("/")) base.pathname += "/";
    base.search = "";
    base.hash = "";
    this.baseUrl = base;
    this.token = token;
  }

  /** The same server with a token. */
  withToken(token: string): ApiClient {
    return new ApiClient(this.baseUrl, token);
  }

  url(path: string): URL {
    return new URL(path.replace(/^\//, ""), this.baseUrl);
  }

  /** `POST /login` with Basic credentials → the token and when it expires. */
  async login(email: string, password: string): Promise<Login> {
    const basic = Buffer.from(`${email}:${password}`, "utf8").toString("base64");
    const response = await this.request("login", {
      method: "POST",
      headers: { authorization: `Basic ${basic}`, accept: "application/json" },
      authenticated: false,
    });
    return (await response.json()) as Login;
  }

  /**
   * `POST /upload`: streams the file as multipart/form-data with an exact Content-Length, read
   * chunk by chunk as the connection takes it, and `onBytes` hears how many bytes of the file
   * have gone out. This one request uses node:http rather than fetch: Node's fetch (undici) keeps
   * every chunk of a streamed request body in memory until the request ends (nodejs/undici#4058),
   * so a 2 GB video would cost 2 GB of memory; node:http holds a few hundred kB whatever the size.
   */
  async upload(
    file: string,
    fileName: string,
    options: {
      onBytes?: (sent: number, total: number) => void;
      /** Text fields (the conversion options), sent before the file as the API requires. */
      fields?: readonly [string, string][];
    } = {},
  ): Promise<Job> {
    const { size } = await stat(file);
    const envelope = multipartEnvelope(fileName, options.fields);
    const onBytes = options.onBytes;
    async function* body(): AsyncGenerator<Uint8Array> {
      yield envelope.head;
      let sent = 0;
      onBytes?.(0, size);
      // Never more than announced: a file that grows while being sent is cut at its size then.
      if (size > 0) {
        for await (const chunk of createReadStream(file, { end: size - 1, highWaterMark: 256 * 1024 })) {
          sent += (chunk as Buffer).length;
          yield chunk as Buffer;
          onBytes?.(sent, size);
        }
      }
      if (sent !== size)
        throw new Error(`The file shrank while it was being uploaded (${sent} of ${size} bytes).`);
      yield envelope.tail;
    }
    const headers: Record<string, string> = {
      "content-type": envelope.contentType,
      "content-length": String(envelope.head.byteLength + size + envelope.tail.byteLength),
    };
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    const { status, text } = await this.send(this.url("upload"), headers, Readable.from(body()));
    if (status < 200 || status >= 300) throw apiErrorFrom(status, "", text);
    const accepted = JSON.parse(text) as { jobId: string; job?: Job };
    return accepted.job ?? (await this.job(accepted.jobId));
  }

  /** A POST over node:http(s) with a streamed body; an answer that comes early (415, 413) wins. */
  private async send(
    url: URL,
    headers: Record<string, string>,
    body: Readable,
  ): Promise<{ status: number; text: string }> {
    const transport = url.protocol === "https:" ? https : http;
    const request = transport.request(url, { method: "POST", headers });
    const response = new Promise<IncomingMessage>((resolve, reject) => {
      request.once("response", resolve);
      request.once("error", reject);
    });
    // A failure while sending shows as the request's error (before an answer) or not at all
    // (the server answered early and stopped reading, which is its right).
    const sending = pipeline(body, request).catch((error: unknown) => {
      request.destroy(error as Error);
    });
    let answer: IncomingMessage;
    try {
      answer = await response;
    } catch (error) {
      body.destroy();
      const local = (error as NodeJS.ErrnoException).code === undefined;
      if (local) throw error;
      throw new ConnectionError(
        `Cannot reach the vid2mp3 server at ${this.baseUrl.href}: ${describeCause(error)}`,
        {
          cause: error,
        },
      );
    }
    const chunks: Buffer[] = [];
    for await (const chunk of answer) chunks.push(chunk as Buffer);
    body.destroy();
    await sending;
    return { status: answer.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") };
  }

  async job(id: string): Promise<Job> {
    return (await (await this.request(`jobs/${encodeURIComponent(id)}`)).json()) as Job;
  }

  async jobs(options: { limit?: number; offset?: number } = {}): Promise<JobPage> {
    const query = new URLSearchParams();
    if (options.limit !== undefined) query.set("limit", String(options.limit));
    if (options.offset !== undefined) query.set("offset", String(options.offset));
    const suffix = query.size > 0 ? `?${query}` : "";
    return (await (await this.request(`jobs${suffix}`)).json()) as JobPage;
  }

  async deleteJob(id: string): Promise<void> {
    await this.request(`jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
  }

  /** `GET /download?fid=`: the response, its body not yet read (the caller streams it). */
  async download(fid: string, signal?: AbortSignal): Promise<Response> {
    return this.request(`download?fid=${encodeURIComponent(fid)}`, { signal });
  }

  /**
   * `GET /events`: resolves once the server has answered (so it is subscribed and no later change
   * is missed), with the events as they arrive. Abort the signal to close the stream.
   */
  async events(signal: AbortSignal): Promise<AsyncIterable<ServerEvent>> {
    const response = await this.request("events", { headers: { accept: "text/event-stream" }, signal });
    if (!response.body) throw new ApiError(response.status, "no_body", "The event stream has no body.");
    return parseEventStream(response.body);
  }

  /** `GET /me`: the caller's own account. */
  async me(): Promise<{ id: string; email: string; admin: boolean }> {
    return (await (await this.request("me")).json()) as { id: string; email: string; admin: boolean };
  }

  /** `POST /me/password`: tokens issued before stop working. */
  async changePassword(currentPassword: string, newPassword: string): Promise<void> {
    await this.request("me/password", { method: "POST", json: { currentPassword, newPassword } });
  }

  async users(options: { limit?: number; offset?: number } = {}): Promise<{ users: User[]; total: number }> {
    const query = new URLSearchParams({
      limit: String(options.limit ?? 100),
      offset: String(options.offset ?? 0),
    });
    return (await (await this.request(`users?${query}`)).json()) as { users: User[]; total: number };
  }

  async createUser(email: string, password: string, admin: boolean): Promise<User> {
    const response = await this.request("users", { method: "POST", json: { email, password, admin } });
    return (await response.json()) as User;
  }

  async updateUser(
    id: string,
    changes: { disabled?: boolean; admin?: boolean; password?: string },
  ): Promise<User> {
    const response = await this.request(`users/${encodeURIComponent(id)}`, {
      method: "PATCH",
      json: changes,
    });
    return (await response.json()) as User;
  }

  /** One request; resolves with a 2xx response, rejects with ApiError or ConnectionError. */
  async request(
    path: string,
    init: {
      method?: string;
      headers?: Record<string, string>;
      body?: string;
      json?: unknown;
      signal?: AbortSignal | undefined;
      authenticated?: boolean;
    } = {},
  ): Promise<Response> {
    const headers: Record<string, string> = { ...init.headers };
    if (init.authenticated !== false && this.token !== undefined)
      headers.authorization = `Bearer ${this.token}`;
    let body = init.body;
    if (init.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(init.json);
    }
    const url = this.url(path);
    let response: Response;
    try {
      response = await fetch(url, {
        method: init.method ?? "GET",
        headers,
        body,
        signal: init.signal,
      });
    } catch (error) {
      if (init.signal?.aborted) throw error;
      throw new ConnectionError(
        `Cannot reach the vid2mp3 server at ${this.baseUrl.href}: ${describeCause(error)}`,
        {
          cause: error,
        },
      );
    }
    if (response.ok) return response;
    throw await toApiError(response);
  }
}

/** The server's `{error: {code, message}}`, or the status line when the body is something else. */
async function toApiError(response: Response): Promise<ApiError> {
  return apiErrorFrom(response.status, response.statusText, await response.text().catch(() => ""));
}

function apiErrorFrom(status: number, statusText: string, text: string): ApiError {
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof parsed.error?.message === "string") {
      return new ApiError(status, String(parsed.error.code ?? "error"), parsed.error.message);
    }
  } catch {
    // not JSON: fall through
  }
  const reason = statusText || STATUS_CODES[status] || "error";
  return new ApiError(status, "http_error", `The server answered ${status} ${reason}.`);
}

function describeCause(error: unknown): string {
  let current: unknown = error;
  // fetch wraps the socket error ("fetch failed" → cause: connect ECONNREFUSED ...).
  while (current instanceof Error && current.cause instanceof Error) current = current.cause;
  if (current instanceof AggregateError && current.errors[0] instanceof Error) current = current.errors[0];
  return errorMessage(current);
}

/**
 * The multipart/form-data envelope around the text fields and then one part, `file`, as browsers
 * and curl send it.
 */
export function multipartEnvelope(
  fileName: string,
  fields: readonly [string, string][] = [],
): { head: Buffer; tail: Buffer; contentType: string } {
  const boundary = `----vid2mp3-${randomUUID()}`;
  // The WHATWG form encoding of a name: quotes and line breaks percent-encoded, the rest as UTF-8.
  const quote = (text: string) => text.replaceAll('"', "%22").replaceAll("\r", "%0D").replaceAll("\n", "%0A");
  const textParts = fields.map(
    ([name, value]) =>
      `--${boundary}\r\nContent-Disposition: form-data; name="${quote(name)}"\r\n\r\n${value}\r\n`,
  );
  const head = Buffer.from(
    `${textParts.join("")}--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${quote(fileName)}"\r\n` +
      "Content-Type: application/octet-stream\r\n\r\n",
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  return { head, tail, contentType: `multipart/form-data; boundary=${boundary}` };
}

/** Parses a text/event-stream body (the `event` and `data` fields; comments and `retry` skipped). */
export async function* parseEventStream(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerEvent> {
  let buffer = "";
  let event = "";
  let data: string[] = [];
  for await (const chunk of body.pipeThrough(new TextDecoderStream())) {
    buffer += chunk;
    for (let newline = buffer.search(/\r\n|\r|\n/); newline !== -1; newline = buffer.search(/\r\n|\r|\n/)) {
      // A lone \r at the very end may be the first half of \r\n: wait for the next chunk.
      if (buffer[newline] === "\r" && newline === buffer.length - 1) break;
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
      if (line === "") {
        if (data.length > 0) yield { event: event || "message", data: data.join("\n") };
        event = "";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
  }
}
