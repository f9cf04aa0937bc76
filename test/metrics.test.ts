import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { type RunningService, serve } from "../src/cli/serve.ts";
import { loadConfig } from "../src/platform/config.ts";
import { createLogger } from "../src/platform/logger.ts";
import { mergeExpositions } from "../src/platform/metrics.ts";
import { makeVideo } from "./support/media.ts";

/**
 * `/metrics` of `vid2mp3 serve all` (run in this process, listening on a free port) after real
 * uploads, conversions and mails, and of a worker served alone.
 */

const ADMIN = { email: "admin@example.com", password: "admin-password-1" };

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-metrics-"));
});
after(() => rm(dir, { recursive: true, force: true }));

async function start(service: "all" | "converter", name: string): Promise<RunningService> {
  const config = loadConfig({
    DATA_DIR: path.join(dir, name),
    HOST: "127.0.0.1",
    PORT: "0",
    LOG_LEVEL: "silent",
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
  });
  return serve(service, config, createLogger("silent", "test"));
}

/** The samples of a text exposition: `name{labels}` → value (labels sorted, so tests need not know their order). */
function samples(text: string): Map<string, number> {
  const result = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `a sample line: ${line}`);
    const labels = (match[2] ?? "").match(/\w+="(?:[^"\\]|\\.)*"/g) ?? [];
    result.set(`${match[1]}{${labels.sort().join(",")}}`, Number(match[3]));
  }
  return result;
}

/** A sample's value; `labels` like `outcome="done",service="converter"` (any order). */
function value(all: Map<string, number>, name: string, labels: string): number | undefined {
  const sorted = labels === "" ? [] : (labels.match(/\w+="[^"]*"/g) ?? []).sort();
  return all.get(`${name}{${sorted.join(",")}}`);
}

async function waitFor(condition: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("serve all: one /metrics for every service", () => {
  let server: RunningService;
  let token: string;
  const scrape = async () => {
    const response = await fetch(`${server.url}/metrics`);
    assert.equal(response.status, 200);
    assert.match(String(response.headers.get("content-type")), /^text\/plain; version=0\.0\.4/);
    return response.text();
  };

  before(async () => {
    server = await start("all", "all");
    const login = await fetch(`${server.url}/login`, {
      method: "POST",
      headers: {
        authorization: `Basic ${Buffer.from(`${ADMIN.email}:${ADMIN.password}`).toString("base64")}`,
      },
    });
    assert.equal(login.status, 200);
    token = await login.text();
  });
  after(() => server?.close());

  test("without METRICS_TOKEN, /metrics answers a direct request from this machine, not one through a proxy", async () => {
    assert.equal((await fetch(`${server.url}/metrics`)).status, 200);
    for (const header of [{ "x-forwarded-for": "203.0.113.7" }, { forwarded: "for=203.0.113.7" }]) {
      const proxied = await fetch(`${server.url}/metrics`, { headers: header });
      assert.equal(proxied.status, 403, JSON.stringify(header));
      const body = (await proxied.json()) as { error: { code: string } };
      assert.equal(body.error.code, "forbidden");
    }
  });

  const upload = async (file: string) => {
    const form = new FormData();
    form.append(
      "file",
      new Blob([await import("node:fs/promises").then((fs) => fs.readFile(file))]),
      "clip.mp4",
    );
    return fetch(`${server.url}/upload`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
      body: form,
    });
  };
  const job = async (id: string) =>
    (await (
      await fetch(`${server.url}/jobs/${id}`, { headers: { authorization: `Bearer ${token}` } })
    ).json()) as {
      status: string;
    };

  test("uploads, conversions, mails, event streams and requests are counted, by service", async () => {
    const [withSound, withoutSound] = await Promise.all([
      makeVideo(path.join(dir, "with-sound.mp4"), { seconds: 1 }),
      makeVideo(path.join(dir, "without-sound.mp4"), { seconds: 1, audio: false }),
    ]);

    // An open event stream is a connected SSE client.
    const events = new AbortController();
    const stream = await fetch(`${server.url}/events`, {
      headers: { authorization: `Bearer ${token}` },
      signal: events.signal,
    });
    assert.equal(stream.status, 200);
    await waitFor(
      async () => value(samples(await scrape()), "vid2mp3_sse_clients", 'service="gateway"') === 1,
      "one SSE client",
    );

    const accepted: string[] = [];
    for (const file of [withSound, withoutSound]) {
      const response = await upload(file);
      assert.equal(response.status, 202);
      accepted.push(((await response.json()) as { jobId: string }).jobId);
    }
    const refused = await fetch(`${server.url}/upload`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(refused.status, 400);
    const unknownJob = await fetch(`${server.url}/jobs/00000000-0000-4000-8000-000000000000`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(unknownJob.status, 404);

    await waitFor(
      async () =>
        (await job(accepted[0] as string)).status === "done" &&
        (await job(accepted[1] as string)).status === "failed",
      "one job done and one failed",
    );
    // The mails follow the jobs' end.
    await waitFor(async () => {
      const now = samples(await scrape());
      return (
        value(now, "vid2mp3_mails_sent_total", 'kind="ready",service="notification"') === 1 &&
        value(now, "vid2mp3_mails_sent_total", 'kind="failed",service="notification"') === 1
      );
    }, "both mails");
    events.abort();
    await waitFor(
      async () => value(samples(await scrape()), "vid2mp3_sse_clients", 'service="gateway"') === 0,
      "no SSE client",
    );

    const text = await scrape();
    const all = samples(text);
    const expect = (name: string, labels: string, expected: number) =>
      assert.equal(value(all, name, labels), expected, `${name}{${labels}}`);

    expect("vid2mp3_uploads_accepted_total", 'service="gateway"', 2);
    expect("vid2mp3_uploads_refused_total", 'reason="bad_request",service="gateway"', 1);
    expect("vid2mp3_upload_size_bytes_count", 'service="gateway"', 2);
    assert.ok((value(all, "vid2mp3_upload_size_bytes_sum", 'service="gateway"') ?? 0) > 1000);
    expect("vid2mp3_jobs_finished_total", 'outcome="done",service="gateway"', 1);
    expect("vid2mp3_jobs_finished_total", 'outcome="failed",service="gateway"', 1);
    expect("vid2mp3_conversions_total", 'outcome="done",service="converter"', 1);
    expect("vid2mp3_conversions_total", 'outcome="failed",service="converter"', 1);
    expect("vid2mp3_conversions_total", 'outcome="retried",service="converter"', 0);
    expect("vid2mp3_conversion_duration_seconds_count", 'outcome="done",service="converter"', 1);
    expect("vid2mp3_conversions_in_progress", 'service="converter"', 0);
    expect("vid2mp3_mail_failures_total", 'service="notification"', 0);

    // Requests by route pattern, never by raw URL; auth's own (reached in-process) under its name.
    const requests = (labels: string) => value(all, "http_request_duration_seconds_count", labels) ?? 0;
    assert.equal(requests('method="POST",route="/upload",service="gateway",status_code="202"'), 2);
    assert.equal(requests('method="POST",route="/upload",service="gateway",status_code="400"'), 1);
    assert.equal(requests('method="GET",route="/jobs/:id",service="gateway",status_code="404"'), 1);
    assert.ok(requests('method="GET",route="/jobs/:id",service="gateway",status_code="200"') >= 2);
    assert.equal(requests('method="POST",route="/login",service="gateway",status_code="200"'), 1);
    assert.equal(requests('method="POST",route="/login",service="auth",status_code="200"'), 1);
    assert.ok(requests('method="GET",route="/.well-known/jwks.json",service="auth",status_code="200"') >= 1);
    assert.doesNotMatch(text, /route="[^"]*[0-9a-f]{8}-[0-9a-f]{4}/, "no ids in route labels");

    // One HELP and TYPE per family, and the process metrics once, for the whole process.
    const types = text.split("\n").filter((line) => line.startsWith("# TYPE "));
    assert.equal(new Set(types).size, types.length, "each family once");
    assert.ok(value(all, "process_resident_memory_bytes", 'service="all"'));
    assert.equal(text.match(/^process_resident_memory_bytes\{/gm)?.length, 1);
  });
});

test("a worker served alone answers /metrics with its own series and the process's", async () => {
  const server = await start("converter", "converter");
  try {
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const all = samples(text);
    assert.equal(value(all, "vid2mp3_conversions_total", 'outcome="done",service="converter"'), 0);
    assert.equal(value(all, "vid2mp3_conversions_in_progress", 'service="converter"'), 0);
    assert.equal(
      value(
        all,
        "http_request_duration_seconds_count",
        'method="GET",route="/healthz",service="converter",status_code="200"',
      ),
      1,
    );
    assert.ok(value(all, "process_resident_memory_bytes", 'service="converter"'));
    assert.ok(value(all, "nodejs_eventloop_lag_seconds", 'service="converter"') !== undefined);
    assert.doesNotMatch(text, /service="gateway"/);
  } finally {
    await server.close();
  }
});

test("merged expositions list each family once, with every service's samples", () => {
  const merged = mergeExpositions([
    '# HELP up Up.\n# TYPE up gauge\nup{service="a"} 1\n# HELP only_a A.\n# TYPE only_a counter\nonly_a{service="a"} 2\n',
    '# HELP up Up.\n# TYPE up gauge\nup{service="b"} 1\n',
  ]);
  assert.equal(
    merged,
    '# HELP up Up.\n# TYPE up gauge\nup{service="a"} 1\nup{service="b"} 1\n# HELP only_a A.\n# TYPE only_a counter\nonly_a{service="a"} 2\n',
  );
});
