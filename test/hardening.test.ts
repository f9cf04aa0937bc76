import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import fc from "fast-check";
import { defaultHost } from "../src/cli/serve.ts";
import { gatewayClient } from "./support/client.ts";
import { makeLavfiAudio } from "./support/media.ts";
import { type RunningServer, startServer } from "./support/server.ts";

/**
 * What a stranger can reach of the real server process: the data files, /metrics, the headers
 * of every answer, and a bounded fuzz of headers, query strings and multipart bodies (never a 5xx,
 * a hang or a stack trace, and the server keeps serving).
 */

const ADMIN = { email: "admin@example.com", password: "admin-password-1" };
const METRICS_TOKEN = "metrics-token-0123456789";

describe("hardening of the real server", () => {
  let dir: string;
  let server: RunningServer;
  let client: ReturnType<typeof gatewayClient>;
  let token: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-hardening-"));
    server = await startServer(
      {
        DATA_DIR: path.join(dir, "data"),
        ADMIN_EMAIL: ADMIN.email,
        ADMIN_PASSWORD: ADMIN.password,
        HOST: "", // unset: `serve all` chooses
        METRICS_TOKEN,
      },
      { timeoutMs: 120_000 },
    );
    client = gatewayClient(server.url);
    token = await client.token(ADMIN.email, ADMIN.password);
  });
  after(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("serve all listens on 127.0.0.1 when HOST is unset", () => {
    assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  });

  test("a service served alone (a container) listens on every interface when HOST is unset", () => {
    assert.equal(defaultHost("all"), "127.0.0.1");
    for (const name of ["gateway", "auth", "converter", "notification"] as const)
      assert.equal(defaultHost(name), "0.0.0.0", name);
  });

  test("the data dir is 0700 and every file in it 0600 (password hashes, key, uploads, MP3s)", async () => {
    const upload = await client.upload(
      token,
      await makeLavfiAudio(path.join(dir, "a.flac"), "anullsrc=r=8000", 1, "flac"),
    );
    const { jobId } = (await upload.json()) as { jobId: string };
    assert.equal(((await client.waitForJob(token, jobId, 120_000)) as { status: string }).status, "done");
    const data = path.join(dir, "data");
    assert.equal((await stat(data)).mode & 0o777, 0o700);
    const entries = await readdir(data, { recursive: true, withFileTypes: true });
    const files = entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
    for (const name of ["auth.sqlite", "gateway.sqlite"])
      assert.ok(
        files.some((f) => f.endsWith(name)),
        name,
      );
    assert.ok(
      files.some((f) => f.includes("mp3s")),
      "an MP3 was stored",
    );
    for (const file of files) {
      // The job's upload is removed once it has ended, which may be while this walks the folder.
      const info = await stat(file).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT") return undefined;
        throw error;
      });
      if (info) assert.equal(info.mode & 0o077, 0, `${file} is private`);
    }
  });

  test("/metrics needs the METRICS_TOKEN", async () => {
    const anonymous = await fetch(new URL("/metrics", server.url));
    assert.equal(anonymous.status, 403);
    assert.equal(((await anonymous.json()) as { error: { code: string } }).error.code, "forbidden");
    const wrong = await fetch(new URL("/metrics", server.url), { headers: { authorization: "Bearer nope" } });
    assert.equal(wrong.status, 403);
    const scraped = await fetch(new URL("/metrics", server.url), {
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    });
    assert.equal(scraped.status, 200);
    assert.match(await scraped.text(), /http_request_duration_seconds/);
  });

  test("every answer carries the security headers, and no CORS header invites other origins", async () => {
    for (const [url, init] of [
      ["/healthz", {}],
      ["/jobs", { headers: { authorization: `Bearer ${token}`, origin: "https://evil.example" } }],
      ["/nope", {}],
      [
        "/jobs",
        {
          method: "OPTIONS",
          headers: { origin: "https://evil.example", "access-control-request-method": "DELETE" },
        },
      ],
    ] as const) {
      const response = await fetch(new URL(url, server.url), init as RequestInit);
      assert.equal(response.headers.get("x-content-type-options"), "nosniff", url);
      assert.ok(response.headers.get("content-security-policy"), url);
      assert.equal(response.headers.get("access-control-allow-origin"), null, url);
      await response.body?.cancel();
    }
  });

  test("fuzz: random headers, query strings and multipart bodies never get a 5xx, a hang or a stack trace", async () => {
    const paths = [
      "/upload",
      "/jobs",
      "/download",
      "/login",
      "/me",
      "/me/password",
      "/users",
      "/events",
      "/jobs/x",
    ];
    const headerValue = fc
      .string({ unit: "binary-ascii", maxLength: 80 })
      .map((v) => v.replace(/[\r\n\0]/g, ""));
    const part = fc.record({
      name: fc.string({ maxLength: 20 }),
      filename: fc.option(fc.string({ maxLength: 40 }), { nil: undefined }),
      type: fc.constantFrom("video/mp4", "audio/wav", "text/plain", "", "multipart/mixed"),
      body: fc.uint8Array({ maxLength: 600 }),
    });
    const request = fc.record({
      method: fc.constantFrom("GET", "POST", "DELETE", "PATCH", "HEAD", "PUT"),
      path: fc.constantFrom(...paths),
      query: fc.string({ unit: "binary", maxLength: 60 }),
      auth: fc.constantFrom("none", "valid", "garbage"),
      garbage: headerValue,
      extra: fc.dictionary(fc.stringMatching(/^x-[a-z]{1,10}$/), headerValue, { maxKeys: 4 }),
      boundary: fc.stringMatching(/^[A-Za-z0-9'()+_,-.=]{1,40}$/),
      parts: fc.array(part, { maxLength: 3 }),
      truncate: fc.nat({ max: 2000 }),
    });
    const deadline = Date.now() + 20_000;
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(request, async (r) => {
        if (Date.now() > deadline) return; // bounded time: later runs are skipped
        sent++;
        const chunks: Buffer[] = [];
        for (const p of r.parts) {
          const disposition = `form-data; name="${p.name.replace(/["\r\n]/g, "")}"${p.filename === undefined ? "" : `; filename="${p.filename.replace(/["\r\n]/g, "")}"`}`;
          chunks.push(
            Buffer.from(
              `--${r.boundary}\r\nContent-Disposition: ${disposition}\r\nContent-Type: ${p.type}\r\n\r\n`,
            ),
            Buffer.from(p.body),
            Buffer.from("\r\n"),
          );
        }
        chunks.push(Buffer.from(`--${r.boundary}--\r\n`));
        const body = Buffer.concat(chunks).subarray(0, r.truncate);
        const headers: Record<string, string> = {
          ...r.extra,
          "content-type": `multipart/form-data; boundary=${r.boundary}`,
        };
        if (r.auth === "valid") headers.authorization = `Bearer ${token}`;
        if (r.auth === "garbage") headers.authorization = r.garbage;
        const url = `${server.url}${r.path}?${encodeURIComponent(r.query).replace(/%26/g, "&").replace(/%3D/g, "=")}`;
        const controller = new AbortController();
        const timer = setTimeout(() => controller.abort(), 15_000);
        try {
          const response = await fetch(url, {
            method: r.method,
            headers,
            body: r.method === "GET" || r.method === "HEAD" ? undefined : body,
            signal: controller.signal,
          });
          const text = r.path === "/events" && response.status === 200 ? "" : await response.text();
          if (r.path === "/events") controller.abort();
          assert.ok(response.status < 500, `${r.method} ${r.path}: ${response.status} ${text}`);
          assert.doesNotMatch(text, /\bat \S+ \(|node:internal|\.ts:\d+/, "no stack trace");
        } catch (error) {
          // fetch refusing to send a header value is the client's check, not the server's answer.
          if (error instanceof TypeError && !controller.signal.aborted) return;
          if (r.path === "/events" && controller.signal.aborted) return;
          throw error;
        } finally {
          clearTimeout(timer);
        }
      }),
      { numRuns: 400, interruptAfterTimeLimit: 25_000, markInterruptAsFailure: false },
    );
    assert.ok(sent > 20, `sent ${sent} requests`);
    // Still serving, for this user too.
    const health = await fetch(new URL("/healthz", server.url));
    assert.equal(health.status, 200);
    const other = await client.jobs(token);
    assert.equal(other.status, 200);
    assert.doesNotMatch(server.output(), /"level":50/, "nothing logged as a server error");
  });
});
