import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, type TestContext, test } from "node:test";
import type { Kysely } from "kysely";
import { type AuthDatabase, createAuthService } from "../src/auth/service.ts";
import type { Job } from "../src/contracts/jobs.ts";
import { type JobEvent, mp3Key, VideoMessage, videoKey } from "../src/contracts/messages.ts";
import { appliedOptions } from "../src/contracts/options.ts";
import type { GatewayDatabase } from "../src/gateway/jobs.ts";
import { createGatewayService, type GatewayService } from "../src/gateway/service.ts";
import type { BlobStore } from "../src/platform/blobs/blob-store.ts";
import { createFolderBlobStore } from "../src/platform/blobs/folder-blob-store.ts";
import type { Broker } from "../src/platform/broker/broker.ts";
import { createMemoryBroker } from "../src/platform/broker/memory-broker.ts";
import { type Config, loadConfig } from "../src/platform/config.ts";
import { openDatabase } from "../src/platform/database.ts";
import { createLogger } from "../src/platform/logger.ts";
import { injectServiceFetch } from "../src/platform/service-fetch.ts";

/**
 * The gateway composed with the real auth service (in-process, as in `serve all`), the in-process
 * broker and the folder blob store. No converter: the test publishes the converter's job events
 * itself, so it can play them in any order.
 */

const ADMIN = { email: "admin@example.com", password: "admin-password-1" };
const MAX_UPLOAD_BYTES = 100_000;

interface System {
  dir: string;
  config: Config;
  gateway: GatewayService;
  broker: Broker;
  blobs: BlobStore;
  db: Kysely<GatewayDatabase>;
  /** VideoMessages the gateway published, as the converter would receive them. */
  videos: VideoMessage[];
  close(): Promise<void>;
}

async function startSystem(env: Record<string, string> = {}): Promise<System> {
  const dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-gateway-"));
  const config = loadConfig({
    DATA_DIR: dir,
    LOG_LEVEL: "silent",
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
    MAX_UPLOAD_BYTES: String(MAX_UPLOAD_BYTES),
    RETRY_DELAY_MS: "10",
    ...env,
  });
  const logger = createLogger("silent", "test");
  const authDb = openDatabase<AuthDatabase>({ sqliteFile: path.join(dir, "auth.sqlite") });
  const db = openDatabase<GatewayDatabase>({ sqliteFile: path.join(dir, "gateway.sqlite") });
  const auth = await createAuthService(config, { logger, db: authDb, bootstrap: { print: () => {} } });
  await auth.app.ready();
  const broker = createMemoryBroker({ logger });
  const blobs = createFolderBlobStore(path.join(dir, "blobs"));
  const gateway = await createGatewayService(config, {
    logger,
    db,
    broker,
    blobs,
    authFetch: injectServiceFetch(auth.app),
  });
  await gateway.start();
  const videos: VideoMessage[] = [];
  await broker.consume<VideoMessage>(
    config.queues.video,
    async ({ body }) => {
      videos.push(body);
    },
    { parse: (body) => body as VideoMessage, concurrency: 1 },
  );
  return {
    dir,
    config,
    gateway,
    broker,
    blobs,
    db,
    videos,
    async close() {
      await gateway.close();
      await auth.close();
      await broker.close();
      await Promise.all([db.destroy(), authDb.destroy()]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const basic = (email: string, password: string) =>
  `Basic ${Buffer.from(`${email}:${password}`).toString("base64")}`;
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function login(system: System, email: string, password: string): Promise<string> {
  const response = await system.gateway.app.inject({
    method: "POST",
    url: "/login",
    headers: { authorization: basic(email, password) },
  });
  assert.equal(response.statusCode, 200, response.body);
  return response.body;
}

/** The first bytes of an MP4 (an `ftyp` box, brand isom): enough for the sniffer, padded to `size`. */
function mp4Bytes(size: number): Buffer {
  const bytes = Buffer.alloc(size);
  Buffer.from([0, 0, 0, 0x18]).copy(bytes, 0);
  Buffer.from("ftypisom\0\0\x02\0isomiso2", "latin1").copy(bytes, 4);
  return bytes;
}

/** Text fields sent before the file (the options) and after it. */
type Fields = { before?: [string, string][]; after?: [string, string][] };

/** A multipart/form-data body with one file (and fields), as a browser's FormData sends it. */
async function multipart(
  bytes: Buffer,
  name = "clip.mp4",
  fields: Fields = {},
): Promise<{ body: Buffer; contentType: string }> {
  const form = new FormData();
  for (const [field, value] of fields.before ?? []) form.append(field, value);
  form.append("file", new Blob([bytes]), name);
  for (const [field, value] of fields.after ?? []) form.append(field, value);
  const request = new Request("http://localhost/upload", { method: "POST", body: form });
  return {
    body: Buffer.from(await request.arrayBuffer()),
    contentType: String(request.headers.get("content-type")),
  };
}

async function upload(system: System, token: string, bytes: Buffer, name?: string, fields?: Fields) {
  const { body, contentType } = await multipart(bytes, name, fields);
  return system.gateway.app.inject({
    method: "POST",
    url: "/upload",
    headers: { ...bearer(token), "content-type": contentType },
    payload: body,
  });
}

async function uploadJob(system: System, token: string): Promise<{ jobId: string; mp3Id: string }> {
  const response = await upload(system, token, mp4Bytes(2000));
  assert.equal(response.statusCode, 202, response.body);
  const { jobId } = response.json() as { jobId: string };
  await waitFor(() => system.videos.some((v) => v.jobId === jobId), "the video message");
  const message = system.videos.find((v) => v.jobId === jobId);
  return { jobId, mp3Id: String(message?.mp3Id) };
}

async function jobRows(system: System) {
  return system.db.selectFrom("jobs").selectAll().execute();
}

/** Every file under the blob folder (including half-written ones in .tmp). */
async function blobFiles(system: System): Promise<string[]> {
  const root = path.join(system.dir, "blobs");
  if (!existsSync(root)) return [];
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.relative(root, path.join(e.parentPath, e.name)));
}

async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const event = {
  converting: (jobId: string): JobEvent => ({
    version: 1,
    jobId,
    at: new Date().toISOString(),
    type: "converting",
  }),
  done: (jobId: string, mp3Id: string): JobEvent => ({
    version: 1,
    jobId,
    at: new Date().toISOString(),
    type: "done",
    mp3Id,
    mp3Size: 3,
    durationSeconds: 1,
  }),
  failed: (jobId: string): JobEvent => ({
    version: 1,
    jobId,
    at: new Date().toISOString(),
    type: "failed",
    error: "The file has no audio.",
  }),
};

async function jobStatus(system: System, token: string, jobId: string): Promise<string> {
  const response = await system.gateway.app.inject({
    method: "GET",
    url: `/jobs/${jobId}`,
    headers: bearer(token),
  });
  return (response.json() as { status: string }).status;
}

describe("gateway with auth, broker and blob store in one process", () => {
  let system: System;
  let token: string;

  before(async () => {
    system = await startSystem();
    token = await login(system, ADMIN.email, ADMIN.password);
  });
  after(() => system.close());

  test("repeated failed logins get 429 with Retry-After, and a forged X-Forwarded-For does not dodge it", async () => {
    const attempt = (forwardedFor: string) =>
      system.gateway.app.inject({
        method: "POST",
        url: "/login",
        headers: { authorization: basic("victim@example.com", "guess"), "x-forwarded-for": forwardedFor },
      });
    for (let i = 0; i < 10; i++) assert.equal((await attempt(`10.0.0.${i}`)).statusCode, 401);
    const throttled = await attempt("10.0.0.99");
    assert.equal(throttled.statusCode, 429, throttled.body);
    assert.ok(Number(throttled.headers["retry-after"]) > 0);
    assert.equal(throttled.json().error.code, "too_many_attempts");
  });

  test("every protected route answers 401 without a token, before looking at its input", async () => {
    const routes = [
      ["GET", "/jobs"],
      ["GET", "/jobs?limit=oops"],
      ["GET", "/jobs/abc"],
      ["GET", "/jobs/00000000-0000-4000-8000-000000000000"],
      ["DELETE", "/jobs/abc"],
      ["GET", "/download"],
      ["GET", "/download?fid=abc"],
      ["HEAD", "/download?fid=abc"],
      ["POST", "/upload"],
      ["GET", "/events"],
      ["GET", "/users"],
      ["POST", "/users"],
      ["GET", "/users/abc"],
      ["PATCH", "/users/abc"],
      ["GET", "/me"],
      ["POST", "/me/password"],
    ] as const;
    for (const [method, url] of routes) {
      const response = await system.gateway.app.inject({ method, url });
      assert.equal(response.statusCode, 401, `${method} ${url}: ${response.body}`);
      if (method !== "HEAD") assert.equal(response.json().error.code, "unauthorized", `${method} ${url}`);
    }
    const malformed = await system.gateway.app.inject({
      method: "GET",
      url: "/jobs/abc",
      // What `TOKEN=$(curl -s …)` holds after a failed login.
      headers: {
        authorization:
          'Bearer {"error":{"code":"invalid_credentials","message":"Invalid e-mail or password."}}',
      },
    });
    assert.equal(malformed.statusCode, 401, malformed.body);
    assert.match(malformed.json().error.message, /not of the form Bearer <token>/);
  });

  test("/healthz is 200 and /readyz is 200 listing every backend", async () => {
    const health = await system.gateway.app.inject({ method: "GET", url: "/healthz" });
    assert.equal(health.statusCode, 200);
    const ready = await system.gateway.app.inject({ method: "GET", url: "/readyz" });
    assert.equal(ready.statusCode, 200, ready.body);
    assert.deepEqual(ready.json(), {
      status: "ready",
      checks: [
        { name: "database", ok: true },
        { name: "blobs", ok: true },
        { name: "broker", ok: true },
        { name: "auth", ok: true },
      ],
    });
  });

  test("POST /login with Accept: application/json through the gateway gives {token, expiresAt}", async () => {
    const response = await system.gateway.app.inject({
      method: "POST",
      url: "/login",
      headers: { authorization: basic(ADMIN.email, ADMIN.password), accept: "application/json" },
    });
    assert.equal(response.statusCode, 200, response.body);
    assert.match(String(response.headers["content-type"]), /^application\/json/);
    const body = response.json() as { token: string; expiresAt: string };
    assert.deepEqual(Object.keys(body).sort(), ["expiresAt", "token"]);
    assert.ok(Date.parse(body.expiresAt) > Date.now());
    const jobs = await system.gateway.app.inject({
      method: "GET",
      url: "/jobs",
      headers: bearer(body.token),
    });
    assert.equal(jobs.statusCode, 200, "the token works at the gateway");
  });

  test("an upload over MAX_UPLOAD_BYTES is 413 and keeps neither blob nor job row", async () => {
    const before = (await jobRows(system)).length;
    // Just over the limit: caught while streaming (the Content-Length is within the envelope allowance).
    const streamed = await upload(system, token, mp4Bytes(MAX_UPLOAD_BYTES + 1));
    assert.equal(streamed.statusCode, 413, streamed.body);
    assert.equal((streamed.json() as { error: { code: string } }).error.code, "payload_too_large");
    // Far over: refused from the Content-Length before reading.
    const declared = await upload(system, token, mp4Bytes(MAX_UPLOAD_BYTES * 3));
    assert.equal(declared.statusCode, 413, declared.body);

    assert.equal((await jobRows(system)).length, before);
    const videos = (await blobFiles(system)).filter((f) => !f.startsWith("mp3s"));
    assert.deepEqual(videos, [], "no video and no half-written file is left");

    // Exactly at the limit is fine.
    const atLimit = await upload(system, token, mp4Bytes(MAX_UPLOAD_BYTES));
    assert.equal(atLimit.statusCode, 202, atLimit.body);
    const { jobId } = atLimit.json() as { jobId: string };
    assert.equal((await system.blobs.stat(videoKey(jobId)))?.size, MAX_UPLOAD_BYTES);
  });

  test("an upload that is not multipart is 400 and keeps nothing", async () => {
    const before = (await jobRows(system)).length;
    for (const [contentType, payload] of [
      ["application/json", JSON.stringify({ file: "clip.mp4" })],
      ["text/plain", "just text"],
      ["multipart/form-data", "no boundary"],
      ["multipart/form-data; boundary=xyz", '--xyz\r\nContent-Disposition: form-data; name="file"'],
    ]) {
      const response = await system.gateway.app.inject({
        method: "POST",
        url: "/upload",
        headers: { ...bearer(token), "content-type": contentType },
        payload,
      });
      assert.equal(response.statusCode, 400, `${contentType}: ${response.body}`);
      // Not multipart at all: the route's own answer (a broken multipart body is the parser's).
      if (!contentType?.startsWith("multipart/")) {
        assert.equal((response.json() as { error: { code: string } }).error.code, "bad_request");
      }
    }
    // A raw video body (curl --data-binary) is refused by Fastify's content-type parsing before
    // the route runs (415 today; docs/architecture.md says 400): at least nothing is kept.
    const raw = await system.gateway.app.inject({
      method: "POST",
      url: "/upload",
      headers: { ...bearer(token), "content-type": "video/mp4" },
      payload: mp4Bytes(2000),
    });
    assert.ok(raw.statusCode >= 400 && raw.statusCode < 500, raw.body);
    assert.equal((await jobRows(system)).length, before);
    assert.deepEqual(
      (await blobFiles(system)).filter((f) => f.startsWith(".tmp")),
      [],
      "no half-written file",
    );
  });

  test("option fields before the file are kept on the job (as applied) and sent to the converter", async () => {
    const response = await upload(system, token, mp4Bytes(2000), "Talk.mkv", {
      before: [
        ["quality", "320k"],
        ["start", "1:00"],
        ["end", "2:30.5"],
        ["normalize", "true"],
        ["mono", "true"],
        ["track", "eng"],
        ["title", "Ünïcode talk"],
        ["artist", "Me"],
        ["album", "Talks"],
        ["cover", "none"],
        ["chapters", "drop"],
        ["comment", "an unknown field is ignored, as before"],
      ],
    });
    assert.equal(response.statusCode, 202, response.body);
    const { jobId, job } = response.json() as { jobId: string; job: Job };
    const expected = {
      quality: "320k",
      start: 60,
      end: 150.5,
      normalize: true,
      mono: true,
      track: "eng",
      title: "Ünïcode talk",
      artist: "Me",
      album: "Talks",
      cover: "none",
      chapters: "drop",
    } as const;
    assert.deepEqual(job.options, expected);
    assert.equal(job.mp3FileName, "Talk.mp3");
    assert.equal(job.mp3Size, null);
    await waitFor(() => system.videos.some((v) => v.jobId === jobId), "the video message");
    const message = system.videos.find((v) => v.jobId === jobId);
    assert.deepEqual(message?.options, expected);
    assert.equal(VideoMessage.safeParse(message).success, true, "the message passes the converter's schema");

    // Without fields: every default on the job, and no options in the message (as before options).
    const plain = await uploadJob(system, token);
    const plainJob = await system.gateway.app.inject({ url: `/jobs/${plain.jobId}`, headers: bearer(token) });
    assert.deepEqual((plainJob.json() as Job).options, appliedOptions());
    assert.equal(
      system.videos.find((v) => v.jobId === plain.jobId)?.options,
      undefined,
      "an old converter reads it",
    );

    // Done: the MP3's size.
    await system.broker.publish(system.config.queues.jobEvents, event.done(plain.jobId, plain.mp3Id));
    await waitFor(async () => (await jobStatus(system, token, plain.jobId)) === "done", "done");
    const doneJob = await system.gateway.app.inject({ url: `/jobs/${plain.jobId}`, headers: bearer(token) });
    assert.equal((doneJob.json() as Job).mp3Size, 3);
  });

  test("an invalid option, a repeated one, or a field after the file is 400 naming the field, and nothing is kept", async () => {
    const before = (await jobRows(system)).length;
    const cases: [Fields, RegExp][] = [
      [{ before: [["quality", "v10"]] }, /"quality"/],
      [{ before: [["start", "soon"]] }, /"start"/],
      [
        {
          before: [
            ["start", "2:30"],
            ["end", "1:00"],
          ],
        },
        /"end" \(1:00\) must come after "start" \(2:30\)/,
      ],
      [{ before: [["normalize", "yes"]] }, /"normalize"/],
      [{ before: [["mono", "1"]] }, /"mono"/],
      [{ before: [["track", "english"]] }, /"track"/],
      [{ before: [["title", "x".repeat(300)]] }, /"title"/],
      [{ before: [["cover", "first"]] }, /"cover"/],
      [{ before: [["chapters", "all"]] }, /"chapters"/],
      [
        {
          before: [
            ["quality", "v0"],
            ["quality", "v1"],
          ],
        },
        /"quality" was sent twice/,
      ],
      [{ before: [["album", "a".repeat(5000)]] }, /"album" is longer than/],
    ];
    for (const [fields, message] of cases) {
      const response = await upload(system, token, mp4Bytes(2000), "clip.mp4", fields);
      assert.equal(response.statusCode, 400, `${JSON.stringify(fields).slice(0, 80)}: ${response.body}`);
      const error = (response.json() as { error: { code: string; message: string } }).error;
      assert.equal(error.code, "invalid_option");
      assert.match(error.message, message);
    }
    const after = await upload(system, token, mp4Bytes(2000), "clip.mp4", {
      before: [["quality", "v0"]],
      after: [["mono", "true"]],
    });
    assert.equal(after.statusCode, 400, after.body);
    const error = (after.json() as { error: { code: string; message: string } }).error;
    assert.equal(error.code, "field_after_file");
    assert.match(error.message, /"mono" came after the file; send the option fields before the file/);

    assert.equal((await jobRows(system)).length, before, "no job row");
    const videos = (await blobFiles(system)).filter((f) => !f.startsWith("mp3s"));
    const known = new Set((await jobRows(system)).map((row) => videoKey(row.id)));
    assert.deepEqual(
      videos.filter((f) => !known.has(f)),
      [],
      "no video blob and no half-written file is left",
    );
  });

  test("a signed download link opens that one MP3 without a token, with Range, until it is tampered with", async () => {
    const { jobId, mp3Id } = await uploadJob(system, token);
    const bytes = Buffer.from("ID3 the whole mp3 file, 40 bytes long..");
    await system.blobs.put(mp3Key(mp3Id), Readable.from([bytes]));
    const mint = () =>
      system.gateway.app.inject({
        method: "POST",
        url: `/download/link?fid=${mp3Id}`,
        headers: bearer(token),
      });
    assert.equal((await mint()).statusCode, 404, "not before the job is done");
    await system.broker.publish(system.config.queues.jobEvents, event.done(jobId, mp3Id));
    await waitFor(async () => (await jobStatus(system, token, jobId)) === "done", "done");

    const minted = await mint();
    assert.equal(minted.statusCode, 200, minted.body);
    const { url, expiresAt } = minted.json() as { url: string; expiresAt: string };
    assert.match(url, /^\/download\?fid=[0-9a-f-]{36}&expires=\d+&signature=[\w-]+$/);
    const ttl = Date.parse(expiresAt) - Date.now();
    assert.ok(ttl > 30 * 60_000 && ttl <= 60 * 60_000, `${ttl} ms`);

    const ranged = await system.gateway.app.inject({ url, headers: { range: "bytes=4-6" } });
    assert.equal(ranged.statusCode, 206, ranged.body);
    assert.equal(ranged.body, "the");
    assert.equal(ranged.headers["content-range"], `bytes 4-6/${bytes.length}`);
    const head = await system.gateway.app.inject({ method: "HEAD", url });
    assert.equal(head.statusCode, 200);
    assert.equal(Number(head.headers["content-length"]), bytes.length);

    const tampered = url.replace(
      /signature=./,
      (match) => `${match.slice(0, -1)}${match.endsWith("A") ? "B" : "A"}`,
    );
    const forged = await system.gateway.app.inject({ url: tampered });
    assert.equal(forged.statusCode, 403);
    assert.equal((forged.json() as { error: { code: string } }).error.code, "link_invalid");
    const otherFid = url.replace(mp3Id, (await uploadJob(system, token)).mp3Id);
    assert.equal((await system.gateway.app.inject({ url: otherFid })).statusCode, 403, "bound to its fid");
    const later = url.replace(/expires=\d+/, (match) => `${match}0`);
    assert.equal((await system.gateway.app.inject({ url: later })).statusCode, 403, "bound to its expiry");
    assert.equal((await system.gateway.app.inject({ url: `/download?fid=${mp3Id}` })).statusCode, 401);
  });

  test("the uploaded video is deleted once its job is done (or failed); the MP3 stays", async () => {
    const { jobId, mp3Id } = await uploadJob(system, token);
    assert.ok(await system.blobs.stat(videoKey(jobId)), "the video is stored");
    await system.broker.publish(system.config.queues.jobEvents, event.converting(jobId));
    await waitFor(async () => (await jobStatus(system, token, jobId)) === "converting", "converting");
    assert.ok(await system.blobs.stat(videoKey(jobId)), "kept while converting");

    await system.blobs.put(mp3Key(mp3Id), Readable.from([Buffer.from("mp3")]));
    await system.broker.publish(system.config.queues.jobEvents, event.done(jobId, mp3Id));
    await waitFor(async () => (await system.blobs.stat(videoKey(jobId))) === undefined, "the video deleted");
    assert.equal(await jobStatus(system, token, jobId), "done");
    assert.ok(await system.blobs.stat(mp3Key(mp3Id)), "the MP3 stays");

    const failing = await uploadJob(system, token);
    await system.broker.publish(system.config.queues.jobEvents, event.failed(failing.jobId));
    await waitFor(
      async () => (await system.blobs.stat(videoKey(failing.jobId))) === undefined,
      "the failed job's video deleted",
    );
    assert.equal(await jobStatus(system, token, failing.jobId), "failed");
  });

  test("a done event for a job deleted meanwhile removes the orphan MP3", async () => {
    const { jobId, mp3Id } = await uploadJob(system, token);
    await system.broker.publish(system.config.queues.jobEvents, event.converting(jobId));
    await waitFor(async () => (await jobStatus(system, token, jobId)) === "converting", "converting");

    const deleted = await system.gateway.app.inject({
      method: "DELETE",
      url: `/jobs/${jobId}`,
      headers: bearer(token),
    });
    assert.equal(deleted.statusCode, 204);
    assert.equal(await system.blobs.stat(videoKey(jobId)), undefined, "DELETE removes the video");

    // The converter finishes after the delete: it writes the MP3, then reports done.
    await system.blobs.put(mp3Key(mp3Id), Readable.from([Buffer.from("late mp3")]));
    await system.broker.publish(system.config.queues.jobEvents, event.done(jobId, mp3Id));
    await waitFor(
      async () => (await system.blobs.stat(mp3Key(mp3Id))) === undefined,
      "the orphan MP3 removed",
    );
    assert.equal(
      (await jobRows(system)).find((r) => r.id === jobId),
      undefined,
      "no row comes back",
    );
  });

  test("a duplicate done event for a finished job keeps its MP3", async () => {
    // The other side of the orphan rule: a duplicate done for a live, finished job must not delete the MP3.
    const { jobId, mp3Id } = await uploadJob(system, token);
    await system.blobs.put(mp3Key(mp3Id), Readable.from([Buffer.from("mp3")]));
    await system.broker.publish(system.config.queues.jobEvents, event.done(jobId, mp3Id));
    await waitFor(async () => (await jobStatus(system, token, jobId)) === "done", "done");
    await system.broker.publish(system.config.queues.jobEvents, event.done(jobId, mp3Id));
    // A marker event after the duplicate: once it is applied, the duplicate has been handled.
    const marker = await uploadJob(system, token);
    await system.broker.publish(system.config.queues.jobEvents, event.failed(marker.jobId));
    await waitFor(async () => (await jobStatus(system, token, marker.jobId)) === "failed", "the marker");
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(await system.blobs.stat(mp3Key(mp3Id)), "the MP3 of a live job stays");
  });

  test("GET /events streams the caller's own job changes and nothing of another user's", async (t: TestContext) => {
    const created = await system.gateway.app.inject({
      method: "POST",
      url: "/users",
      headers: bearer(token),
      payload: { email: "bob@example.com", password: "bob-password-1", admin: false },
    });
    assert.equal(created.statusCode, 201, created.body);
    const bobToken = await login(system, "bob@example.com", "bob-password-1");

    const url = await system.gateway.app.listen({ host: "127.0.0.1", port: 0 });
    const aborter = new AbortController();
    t.after(() => aborter.abort());
    const response = await fetch(`${url}/events`, { headers: bearer(token), signal: aborter.signal });
    assert.equal(response.status, 200);
    assert.match(String(response.headers.get("content-type")), /^text\/event-stream/);
    let received = "";
    const reading = (async () => {
      const decoder = new TextDecoder();
      try {
        for await (const chunk of response.body as ReadableStream<Uint8Array>) {
          received += decoder.decode(chunk, { stream: true });
        }
      } catch {
        // aborted at the end of the test
      }
    })();
    await waitFor(() => received.includes("retry:"), "the stream to open");

    // Bob's job changes first, and are fully applied, before Alice's one.
    const bobs = await uploadJob(system, bobToken);
    await system.broker.publish(system.config.queues.jobEvents, event.converting(bobs.jobId));
    await waitFor(async () => (await jobStatus(system, bobToken, bobs.jobId)) === "converting", "Bob's job");

    const mine = await uploadJob(system, token);
    await system.broker.publish(system.config.queues.jobEvents, event.converting(mine.jobId));
    await waitFor(() => received.includes('"status":"converting"'), "my converting event");

    const events = received
      .split("\n\n")
      .filter((block) => block.startsWith("event: job\n"))
      .map((block) => {
        const data = block.split("\n").find((line) => line.startsWith("data: "));
        return JSON.parse(String(data).slice("data: ".length)) as { id: string; status: string };
      });
    assert.deepEqual(
      events.map((e) => [e.id, e.status]),
      [
        [mine.jobId, "queued"],
        [mine.jobId, "converting"],
      ],
    );
    assert.ok(!received.includes(bobs.jobId), "nothing about Bob's job");
    aborter.abort();
    await reading;
  });
});

describe("gateway whose broker cannot take messages", () => {
  test("an upload is 503 and keeps neither the job row nor the blob", async (t) => {
    const system = await startSystem();
    t.after(() => system.close());
    const token = await login(system, ADMIN.email, ADMIN.password);
    await system.broker.close();

    const response = await upload(system, token, mp4Bytes(2000));
    assert.equal(response.statusCode, 503, response.body);
    assert.equal((response.json() as { error: { code: string } }).error.code, "queue_unavailable");
    assert.deepEqual(await jobRows(system), []);
    assert.deepEqual(await blobFiles(system), []);

    // The pod stays ready (it answers its own 503s) and says which backend is down.
    const ready = await system.gateway.app.inject({ method: "GET", url: "/readyz" });
    assert.equal(ready.statusCode, 200);
    assert.equal((ready.json() as { status: string }).status, "degraded");
    const checks = (ready.json() as { checks: { name: string; ok: boolean }[] }).checks;
    assert.deepEqual(
      checks.filter((c) => !c.ok).map((c) => c.name),
      ["broker"],
    );
  });
});

describe("gateway with HS256 tokens (JWT_SECRET), asking auth's /validate as the original did", () => {
  let system: System;
  before(async () => {
    system = await startSystem({ JWT_SECRET: "a-shared-secret-of-at-least-32-characters" });
  });
  after(() => system.close());

  test("a token from login is accepted, a forged one is refused with 403", async () => {
    const token = await login(system, ADMIN.email, ADMIN.password);
    const [, payload] = token.split(".");
    assert.equal(JSON.parse(Buffer.from(String(payload), "base64url").toString()).username, ADMIN.email);
    const jobs = await system.gateway.app.inject({ url: "/jobs", headers: bearer(token) });
    assert.equal(jobs.statusCode, 200, jobs.body);

    const forged = `${token.slice(0, token.lastIndexOf(".") + 1)}${"A".repeat(43)}`;
    const refused = await system.gateway.app.inject({ url: "/jobs", headers: bearer(forged) });
    assert.equal(refused.statusCode, 403);
  });
});
