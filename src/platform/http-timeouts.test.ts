import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import type { FastifyInstance } from "fastify";
import { createHttpServer } from "./http.ts";
import { createLogger } from "./logger.ts";

/**
 * Slow and stalled clients against a real listening server (short timeouts, same code): each is
 * answered or closed in bounded time, and the server keeps serving everyone else.
 */

const TIMEOUTS = { headersMs: 500, idleMs: 1500, requestMs: 1500 };

describe("request timeouts", () => {
  let app: FastifyInstance;
  let port: number;

  before(async () => {
    app = await createHttpServer(createLogger("silent", "test"), {
      timeouts: TIMEOUTS,
      unboundedBody: (request) => request.routeOptions.url === "/upload",
    });
    app.post("/echo", async (request) => ({ received: request.body }));
    app.addContentTypeParser("application/octet-stream", (_request, payload, done) => {
      let bytes = 0;
      payload.on("data", (chunk: Buffer) => {
        bytes += chunk.length;
      });
      payload.on("end", () => done(null, bytes));
      payload.on("error", (error) => done(error));
    });
    app.post("/upload", async (request) => ({ bytes: request.body }));
    await app.listen({ host: "127.0.0.1", port: 0 });
    port = (app.server.address() as { port: number }).port;
  });
  after(() => app.close());

  /** A raw connection; resolves with everything the server sent once it closes (or after `maxMs`). */
  function rawClient(): { socket: Socket; received: Promise<{ text: string; ms: number }> } {
    const started = Date.now();
    const socket = connect(port, "127.0.0.1");
    let text = "";
    const received = new Promise<{ text: string; ms: number }>((resolve) => {
      socket.on("data", (chunk) => {
        text += chunk.toString();
      });
      socket.on("close", () => resolve({ text, ms: Date.now() - started }));
      socket.on("error", () => {});
    });
    return { socket, received };
  }

  async function stillServing(): Promise<void> {
    const response = await fetch(`http://127.0.0.1:${port}/echo`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"ok":true}',
    });
    assert.equal(response.status, 200);
  }

  test("headers that never end are answered 408 in the error shape, with the security headers", async () => {
    const { socket, received } = rawClient();
    socket.write("GET /echo HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n");
    const { text, ms } = await received;
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.match(text, /x-content-type-options: nosniff/i);
    assert.match(text, /\{"error":\{"code":"request_timeout","message":"[^"]+"\}\}$/);
    assert.ok(ms < 5000, `closed after ${ms} ms`);
    await stillServing();
  });

  test("a body trickled byte by byte to an ordinary route is cut at the request deadline with 408", async () => {
    const { socket, received } = rawClient();
    socket.write(
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
    );
    const trickle = setInterval(() => socket.writable && socket.write(" "), 200);
    const { text, ms } = await received;
    clearInterval(trickle);
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.match(text, /"code":"request_timeout"/);
    assert.ok(ms >= TIMEOUTS.requestMs - 100 && ms < 5000, `closed after ${ms} ms`);
    await stillServing();
  });

  test("an upload may take longer than the request deadline while it flows, and is closed once it stalls", async () => {
    const flowing = rawClient();
    flowing.socket.write(
      "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 12\r\nConnection: close\r\n\r\n",
    );
    for (let i = 0; i < 12; i++) {
      await sleep(250); // 3 s in all: twice the request deadline, never idle for long
      flowing.socket.write("x");
    }
    const done = await flowing.received;
    assert.match(done.text, /^HTTP\/1\.1 200 /);
    assert.match(done.text, /\{"bytes":12\}$/);

    const stalled = rawClient();
    stalled.socket.write(
      "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\nxx",
    );
    const { text, ms } = await stalled.received;
    assert.match(text, /^HTTP\/1\.1 408 /);
    assert.ok(
      ms >= TIMEOUTS.idleMs - 100 && ms < 6000,
      `a stalled upload is closed after the idle timeout (${ms} ms)`,
    );
    await stillServing();
  });

  test("Fastify's own errors (bad URL, huge headers, bad JSON) use the error shape and do not quote the input", async () => {
    const base = `http://127.0.0.1:${port}`;
    const badUrl = rawClient();
    badUrl.socket.end("GET /%zz<script> HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const { text } = await badUrl.received;
    assert.match(text, /^HTTP\/1\.1 (400|404) /);
    assert.doesNotMatch(text, /script|%zz/);
    assert.match(text, /\{"error":\{"code":"[a-z_]+","message":"[^"]+"\}\}$/);

    const huge = await fetch(`${base}/echo`, { headers: { "x-big": "a".repeat(20_000) } });
    assert.equal(huge.status, 431);
    assert.deepEqual(Object.keys(((await huge.json()) as { error: object }).error), ["code", "message"]);

    const badJson = await fetch(`${base}/echo`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"secret-input<b>":',
    });
    assert.equal(badJson.status, 400);
    const body = await badJson.text();
    assert.doesNotMatch(body, /secret-input/);
    assert.equal(badJson.headers.get("x-frame-options"), "DENY");

    const notFound = await fetch(`${base}/nothing-here-<i>`);
    assert.equal(notFound.status, 404);
    assert.doesNotMatch(await notFound.text(), /nothing-here/);
    await stillServing();
  });
});
