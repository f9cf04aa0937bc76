import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { retryDelay } from "./broker/broker.ts";
import { ConfigError, loadConfig } from "./config.ts";

const run = promisify(execFile);
const main = fileURLToPath(new URL("../cli/main.ts", import.meta.url));

describe("loadConfig", () => {
  // Partial: the configuration grows (distributed backends); these are the fields this test is about.
  test("an empty environment gives the documented defaults", () => {
    const config = loadConfig({});
    assert.partialDeepStrictEqual(config, {
      host: undefined,
      port: undefined,
      dataDir: path.resolve("data"),
      logLevel: "info",
      admin: { email: undefined, password: undefined },
      registrationOpen: false,
      maxUploadBytes: 2 * 1024 ** 3,
      publicUrl: undefined,
      mailFrom: "vid2mp3 <no-reply@vid2mp3.localhost>",
      jwt: { secret: undefined, privateKey: undefined, ttlSeconds: 86400 },
      ffmpeg: { path: undefined, timeoutSeconds: 3600 },
      converterConcurrency: 1,
      retentionHours: 168,
      limits: { maxAudioSeconds: 14_400, maxActiveJobsPerUser: 5, userQuotaBytes: 10 * 1024 ** 3 },
      trustProxy: [],
      metricsToken: undefined,
      queues: { video: "video", mp3: "mp3", jobEvents: "job-events" },
      retry: { delayMs: 5000, maxAttempts: 5 },
    });
  });

  test("every variable is parsed into its field", () => {
    const config = loadConfig({
      HOST: "127.0.0.1",
      PORT: "9090",
      DATA_DIR: "some/relative/dir",
      LOG_LEVEL: "debug",
      ADMIN_EMAIL: "root@example.com",
      ADMIN_PASSWORD: "a-long-password",
      REGISTRATION: "open",
      MAX_UPLOAD_BYTES: "1048576",
      PUBLIC_URL: "https://mp3.example.com/app//",
      MAIL_FROM: "Me <me@example.com>",
      JWT_SECRET: "x".repeat(32),
      JWT_PRIVATE_KEY: '{"kty":"OKP"}',
      JWT_TTL_SECONDS: "60",
      FFMPEG_PATH: "/opt/ffmpeg",
      FFMPEG_TIMEOUT_SECONDS: "30",
      CONVERTER_CONCURRENCY: "4",
      RETENTION_HOURS: "1.5",
      MAX_AUDIO_SECONDS: "600",
      MAX_ACTIVE_JOBS_PER_USER: "0",
      USER_QUOTA_BYTES: "1000000",
      TRUST_PROXY: "10.0.0.0/8, 192.168.1.7,::1",
      METRICS_TOKEN: "m".repeat(20),
      VIDEO_QUEUE: "v",
      MP3_QUEUE: "m",
      JOB_EVENTS_QUEUE: "e",
      SEGMENT_QUEUE: "s",
      CONVERTER_SEGMENT_FANOUT: "3",
      RETRY_DELAY_MS: "0",
      MAX_ATTEMPTS: "2",
    });
    assert.partialDeepStrictEqual(config, {
      host: "127.0.0.1",
      port: 9090,
      dataDir: path.resolve("some/relative/dir"),
      logLevel: "debug",
      admin: { email: "root@example.com", password: "a-long-password" },
      registrationOpen: true,
      maxUploadBytes: 1048576,
      publicUrl: "https://mp3.example.com/app",
      mailFrom: "Me <me@example.com>",
      jwt: { secret: "x".repeat(32), privateKey: '{"kty":"OKP"}', ttlSeconds: 60 },
      ffmpeg: { path: "/opt/ffmpeg", timeoutSeconds: 30 },
      converterConcurrency: 4,
      retentionHours: 1.5,
      limits: { maxAudioSeconds: 600, maxActiveJobsPerUser: 0, userQuotaBytes: 1_000_000 },
      trustProxy: ["10.0.0.0/8", "192.168.1.7", "::1"],
      metricsToken: "m".repeat(20),
      queues: { video: "v", mp3: "m", jobEvents: "e", segments: "s" },
      converterSegments: { workers: "auto", minSeconds: 180, fanout: 3 },
      retry: { delayMs: 0, maxAttempts: 2 },
    });
    assert.ok(path.isAbsolute(config.dataDir));
  });

  test("retry budgets, the stale-job sweep and the incomplete-upload age: defaults and variables", () => {
    const defaults = loadConfig({});
    assert.deepEqual(defaults.retry, {
      delayMs: 5000,
      maxAttempts: 5,
      maxDelayMs: 30 * 60_000,
      mailMaxAttempts: 12,
    });
    // A converting job is stale only once ffmpeg's limit (3600 s) and 5 minutes more have passed.
    assert.deepEqual(defaults.jobSweep, {
      everyMs: 60_000,
      queuedAfterMs: 600_000,
      convertingAfterMs: 3_900_000,
    });
    assert.equal(defaults.incompleteUploadMaxAgeMs, 24 * 3_600_000);

    const set = loadConfig({
      RETRY_MAX_DELAY_MS: "1000",
      MAIL_MAX_ATTEMPTS: "3",
      JOB_SWEEP_INTERVAL_SECONDS: "1",
      JOB_STALE_SECONDS: "7200",
      FFMPEG_TIMEOUT_SECONDS: "60",
      INCOMPLETE_UPLOAD_MAX_AGE_HOURS: "0.5",
    });
    assert.deepEqual(set.retry, { delayMs: 5000, maxAttempts: 5, maxDelayMs: 1000, mailMaxAttempts: 3 });
    assert.deepEqual(set.jobSweep, { everyMs: 1000, queuedAfterMs: 7_200_000, convertingAfterMs: 7_200_000 });
    assert.equal(set.incompleteUploadMaxAgeMs, 1_800_000);
  });

  test("fan-out is off by default, and takes a whole number up to 64", () => {
    assert.equal(loadConfig({}).converterSegments.fanout, 0);
    assert.equal(loadConfig({}).queues.segments, "video-segments");
    for (const wrong of ["-1", "1.5", "65", "two"]) {
      assert.throws(() => loadConfig({ CONVERTER_SEGMENT_FANOUT: wrong }), /CONVERTER_SEGMENT_FANOUT/, wrong);
    }
  });

  test("a mail's default retry budget spans hours, not seconds", () => {
    const { retry } = loadConfig({});
    // The waits between its deliveries, before the dead-letter queue.
    let waitedMs = 0;
    for (let attempt = 1; attempt < retry.mailMaxAttempts; attempt++) {
      waitedMs += retryDelay(retry.delayMs, attempt, retry.maxDelayMs);
    }
    assert.ok(waitedMs >= 90 * 60_000, `${waitedMs / 60_000} min`);
    assert.ok(waitedMs <= 3 * 3_600_000, `${waitedMs / 60_000} min`);
  });

  test("TRUST_PROXY takes only addresses and CIDRs", () => {
    assert.throws(() => loadConfig({ TRUST_PROXY: "10.0.0.0/8,proxy.example.com" }), /TRUST_PROXY/);
    assert.throws(() => loadConfig({ TRUST_PROXY: "10.0.0.0/99" }), /TRUST_PROXY/);
  });

  test("PUBLIC_URL loses its trailing slash; an absolute DATA_DIR is kept; REGISTRATION=closed", () => {
    const config = loadConfig({
      PUBLIC_URL: "http://localhost:8080/",
      DATA_DIR: "/var/lib/vid2mp3",
      REGISTRATION: "closed",
      PORT: "0",
    });
    assert.equal(config.publicUrl, "http://localhost:8080");
    assert.equal(config.dataDir, "/var/lib/vid2mp3");
    assert.equal(config.registrationOpen, false);
    assert.equal(config.port, 0);
  });

  test("an empty string counts as unset", () => {
    const empty = Object.fromEntries(
      [
        "HOST",
        "PORT",
        "DATA_DIR",
        "LOG_LEVEL",
        "ADMIN_EMAIL",
        "ADMIN_PASSWORD",
        "REGISTRATION",
        "MAX_UPLOAD_BYTES",
        "PUBLIC_URL",
        "MAIL_FROM",
        "JWT_SECRET",
        "JWT_PRIVATE_KEY",
        "JWT_TTL_SECONDS",
        "FFMPEG_PATH",
        "CONVERTER_CONCURRENCY",
      ].map((name) => [name, ""]),
    );
    assert.deepEqual(loadConfig(empty), loadConfig({}));
  });

  const wrong: [string, Record<string, string>, string][] = [
    ["PORT=abc", { PORT: "abc" }, "PORT"],
    ["PORT=70000", { PORT: "70000" }, "PORT"],
    ["PORT=-1", { PORT: "-1" }, "PORT"],
    ["PORT=80.5", { PORT: "80.5" }, "PORT"],
    ["MAX_UPLOAD_BYTES=-1", { MAX_UPLOAD_BYTES: "-1" }, "MAX_UPLOAD_BYTES"],
    ["MAX_UPLOAD_BYTES=0", { MAX_UPLOAD_BYTES: "0" }, "MAX_UPLOAD_BYTES"],
    ["CONVERTER_CONCURRENCY=0", { CONVERTER_CONCURRENCY: "0" }, "CONVERTER_CONCURRENCY"],
    ["REGISTRATION=maybe", { REGISTRATION: "maybe" }, "REGISTRATION"],
    ["ADMIN_EMAIL=notanemail", { ADMIN_EMAIL: "notanemail" }, "ADMIN_EMAIL"],
    [
      "ADMIN_PASSWORD too short",
      { ADMIN_EMAIL: "root@example.com", ADMIN_PASSWORD: "short" },
      "ADMIN_PASSWORD",
    ],
    ["JWT_SECRET too short", { JWT_SECRET: "x".repeat(31) }, "JWT_SECRET"],
    ["ADMIN_PASSWORD without ADMIN_EMAIL", { ADMIN_PASSWORD: "a-long-password" }, "ADMIN_PASSWORD"],
    ["LOG_LEVEL=loud", { LOG_LEVEL: "loud" }, "LOG_LEVEL"],
    ["PUBLIC_URL=not a url", { PUBLIC_URL: "not a url" }, "PUBLIC_URL"],
  ];
  for (const [what, env, variable] of wrong) {
    test(`${what} throws a one-line ConfigError naming ${variable}`, () => {
      assert.throws(
        () => loadConfig(env),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError, String(error));
          assert.equal(error.name, "ConfigError");
          assert.ok(!error.message.includes("\n"), `one line: ${error.message}`);
          assert.match(error.message, new RegExp(`\\b${variable}\\b`));
          return true;
        },
      );
    });
  }

  test("the message says what is wrong with a short secret", () => {
    assert.throws(() => loadConfig({ JWT_SECRET: "short" }), /JWT_SECRET.*at least 32 characters/);
    assert.throws(
      () => loadConfig({ ADMIN_EMAIL: "a@example.com", ADMIN_PASSWORD: "short" }),
      /ADMIN_PASSWORD.*at least 8 characters/,
    );
  });
});

describe("the vid2mp3 command", () => {
  const cli = (args: string[], env: Record<string, string> = {}) =>
    run(process.execPath, [main, ...args], {
      env: { PATH: process.env.PATH ?? "", ...env },
      timeout: 20_000,
    }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code?: number; stdout: string; stderr: string }) => ({
        code: error.code,
        stdout: error.stdout,
        stderr: error.stderr,
      }),
    );

  test("a wrong variable stops `serve all` with exit code 2 and one stderr line naming it", async () => {
    const result = await cli(["serve", "all"], { PORT: "abc", DATA_DIR: "/nonexistent/never-created" });
    assert.equal(result.code, 2, result.stderr);
    const lines = result.stderr.split("\n").filter((line) => line !== "");
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0] ?? "", /^vid2mp3: .*\bPORT\b/);
    assert.equal(result.stdout, "");
  });

  test("--help and serve --help exit 0 with usage text", async () => {
    const help = await cli(["--help"]);
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /Usage: vid2mp3/);
    assert.match(help.stdout, /serve/);

    const serveHelp = await cli(["serve", "--help"]);
    assert.equal(serveHelp.code, 0, serveHelp.stderr);
    assert.match(serveHelp.stdout, /Usage: vid2mp3 serve/);
    assert.match(serveHelp.stdout, /DATA_DIR/);
  });
});
