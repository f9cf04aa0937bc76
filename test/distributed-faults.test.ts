import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CreateMultipartUploadCommand, PutObjectCommand, UploadPartCommand } from "@aws-sdk/client-s3";
import type { GatewayDatabase } from "../src/gateway/jobs.ts";
import { openDatabase } from "../src/platform/database.ts";
import { gatewayClient } from "./support/client.ts";
import { createTestDatabase } from "./support/mariadb.ts";
import { makeVideo } from "./support/media.ts";
import { closeConnections, createTestVhost, listQueues } from "./support/rabbitmq.ts";
import { adminClient, listMultipartUploads, startS3Server } from "./support/s3-server.ts";
import { type RunningServer, startServer } from "./support/server.ts";
import { startSmtpServer } from "./support/smtp-server.ts";
import { startTcpProxy, type TcpProxy } from "./support/tcp-proxy.ts";

const ADMIN = { email: "admin@example.com", password: "admin-password-1" };

/**
 * "Every accepted upload becomes exactly one MP3 and one mail", under the faults an operator
 * meets: the four services as separate processes on MariaDB (the gateway's behind a TCP proxy the
 * test cuts), RabbitMQ, an S3 server and an SMTP server. The retry budgets are shortened by
 * configuration (2 attempts, 100 ms) so that every outage here outlasts them.
 */
describe("distributed mode under faults: every accepted upload ends once", { timeout: 300_000 }, () => {
  let dir: string;
  const cleanups: (() => Promise<unknown>)[] = [];
  const processes: RunningServer[] = [];
  let common: Record<string, string>;
  let bucket: string;
  let gatewayEnv: Record<string, string>;
  let gatewayDbUrl: string;
  let vhost: string;
  let proxy: TcpProxy;
  let s3: Awaited<ReturnType<typeof startS3Server>>;
  let smtp: Awaited<ReturnType<typeof startSmtpServer>>;
  let gateway: RunningServer;
  let client: ReturnType<typeof gatewayClient>;
  let token: string;
  const media = (name: string) => path.join(dir, name);

  async function start(service: string, env: Record<string, string> = {}): Promise<RunningServer> {
    const server = await startServer(
      { ...common, DATA_DIR: await mkdtemp(path.join(dir, `${service}-`)), ...env },
      // The machine may be busy: a process that loads slowly is no fault of the system.
      { service, timeoutMs: 90_000 },
    );
    processes.push(server);
    return server;
  }

  /** Conversions run to the end for the job, by every converter of the suite. */
  const finishedConversions = (jobId: string) =>
    processes
      .flatMap((server) => server.output().split("\n"))
      .filter((line) => line.includes(jobId) && line.includes('"conversion finished"')).length;

  /** Waits until `server` has logged a line matching `pattern`. */
  async function waitForLog(server: RunningServer, pattern: RegExp, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(server.output())) {
      assert.ok(Date.now() < deadline, `no log line matching ${pattern} within ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  async function upload(file: string): Promise<string> {
    const response = await client.upload(token, file);
    assert.equal(response.status, 202, await response.clone().text());
    return ((await response.json()) as { jobId: string }).jobId;
  }

  /** Every job done, its MP3 downloadable, and exactly one mail for it. */
  async function assertEndedOnce(jobIds: string[], timeoutMs = 60_000): Promise<void> {
    for (const jobId of jobIds) {
      const job = await client.waitForJob(token, jobId, timeoutMs);
      assert.equal(job.status, "done", JSON.stringify(job));
      const download = await client.download(token, String(job.mp3Id));
      assert.equal(download.status, 200);
      assert.ok((await download.arrayBuffer()).byteLength > 0);
      await smtp.waitForMessage((m) => (m.text ?? "").includes(String(job.mp3Id)), 20_000);
    }
    // Late duplicates would come within the outage backoff's reach; give them the chance.
    await sleep(1500);
    const mails = await smtp.messages();
    for (const jobId of jobIds) {
      const job = (await (await client.job(token, jobId)).json()) as { mp3Id: string };
      const count = mails.filter((m) => (m.text ?? "").includes(job.mp3Id)).length;
      assert.equal(count, 1, `one mail for job ${jobId}`);
    }
  }

  async function deadLetters(): Promise<number> {
    const queues = await listQueues(vhost);
    return queues.filter((q) => q.name.endsWith(".dead")).reduce((n, q) => n + q.messages, 0);
  }

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-faults-"));
    await Promise.all([
      makeVideo(media("short.mp4"), { seconds: 1 }),
      makeVideo(media("long.mp4"), { seconds: 15 }),
    ]);
    const [authDb, gatewayDb, testVhost, s3Server] = await Promise.all([
      createTestDatabase(),
      createTestDatabase(),
      createTestVhost("faults"),
      startS3Server(),
    ]);
    s3 = s3Server;
    vhost = testVhost.vhost;
    smtp = await startSmtpServer();
    cleanups.push(authDb.drop, gatewayDb.drop, testVhost.delete, s3.stop, smtp.stop);
    gatewayDbUrl = gatewayDb.url;
    const dbUrl = new URL(gatewayDb.url);
    proxy = await startTcpProxy(Number(dbUrl.port || 3306));
    cleanups.push(() => proxy.close());
    dbUrl.port = String(proxy.port);
    bucket = `vid2mp3-faults-${randomUUID().slice(0, 8)}`;
    common = {
      AMQP_URL: testVhost.url,
      S3_BUCKET: bucket,
      AWS_ENDPOINT_URL_S3: s3.endpoint,
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
      S3_FORCE_PATH_STYLE: "true",
      SMTP_URL: smtp.url,
      // Retry budgets far shorter than any outage below: an outage must not use them up.
      RETRY_DELAY_MS: "100",
      MAX_ATTEMPTS: "2",
      MAIL_MAX_ATTEMPTS: "2",
    };
    const auth = await start("auth", {
      DATABASE_URL: authDb.url,
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
    });
    gatewayEnv = { DATABASE_URL: dbUrl.toString(), AUTH_SVC_ADDRESS: auth.url };
    gateway = await start("gateway", gatewayEnv);
    await start("notification");
    client = gatewayClient(gateway.url);
    token = await client.token(ADMIN.email, ADMIN.password);
  });

  after(async () => {
    await Promise.all(processes.map((p) => p.stop("SIGKILL")));
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });

  it("finishes every job once when the gateway's database is cut for longer than the retry budget", async () => {
    const converter = await start("converter");
    const jobIds = [];
    for (let i = 0; i < 3; i++) jobIds.push(await upload(media("short.mp4")));
    await proxy.pause();
    try {
      // The conversions end meanwhile; their events cannot be stored while the database is away.
      for (const jobId of jobIds) {
        await waitForLog(converter, new RegExp(`"jobId":"${jobId}".*"conversion finished"`));
      }
      await waitForLog(gateway, /backend unavailable; the message waits for it/);
      // Far longer than the retry budget (2 attempts, 100 ms apart).
      await sleep(3000);
      const during = await client.jobs(token);
      assert.equal(during.status, 503);
      assert.equal(((await during.json()) as { error: { code: string } }).error.code, "database_unavailable");
    } finally {
      await proxy.resume();
    }

    await assertEndedOnce(jobIds);
    for (const jobId of jobIds) assert.equal(finishedConversions(jobId), 1);
    assert.equal(await deadLetters(), 0, "nothing was dead-lettered");
    await converter.stop();
  });

  it("answers 503 database_unavailable within 2 s when the database goes silent, and recovers", async () => {
    assert.equal((await client.jobs(token)).status, 200);
    await proxy.pause("hang");
    try {
      for (let i = 0; i < 2; i++) {
        const started = Date.now();
        const response = await client.jobs(token);
        const ms = Date.now() - started;
        assert.equal(response.status, 503);
        assert.equal(
          ((await response.json()) as { error: { code: string } }).error.code,
          "database_unavailable",
        );
        assert.ok(ms < 2500, `answered after ${ms} ms`);
      }
    } finally {
      await proxy.resume();
    }
    const deadline = Date.now() + 10_000;
    while ((await client.jobs(token)).status !== 200) {
      assert.ok(Date.now() < deadline, "the gateway recovered by itself");
      await sleep(200);
    }
  });

  it("converts a job that was inserted but never published (a crash in between) through the sweep", async () => {
    // The caller's user id, from the token's claims.
    const me = JSON.parse(Buffer.from(String(token.split(".")[1]), "base64url").toString()) as {
      sub: string;
    };
    // The state a gateway killed between the insert and the publish leaves: the video and the row.
    const jobId = randomUUID();
    const admin = adminClient(s3);
    await admin.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: `videos/${jobId}`,
        Body: await readFile(media("short.mp4")),
      }),
    );
    admin.destroy();
    const db = openDatabase<GatewayDatabase>({ url: gatewayDbUrl, sqliteFile: "/nonexistent/unused.sqlite" });
    const at = new Date().toISOString();
    await db
      .insertInto("jobs")
      .values({
        id: jobId,
        owner_id: me.sub,
        owner_email: ADMIN.email,
        file_name: "orphan.mp4",
        format: "mov",
        size: 1,
        status: "queued",
        progress: 0,
        duration_seconds: null,
        mp3_id: randomUUID(),
        mp3_size: null,
        error: null,
        created_at: at,
        updated_at: at,
      })
      .execute();
    await db.destroy();

    const converter = await start("converter");
    // A replica with a short sweep period finds it.
    const sweeper = await start("gateway", {
      ...gatewayEnv,
      JOB_SWEEP_INTERVAL_SECONDS: "1",
      JOB_STALE_SECONDS: "2",
    });
    await assertEndedOnce([jobId], 30_000);
    assert.match(sweeper.output(), /job made no progress for too long; its message was published again/);
    assert.equal(finishedConversions(jobId), 1);
    await Promise.all([converter.stop(), sweeper.stop()]);
  });

  it("converts and mails once when RabbitMQ drops the connections of two converters mid-conversion", async () => {
    // Real ffmpeg reading at playback speed: the 15-second video takes 15 s, time enough to cut in
    // (rabbitmqctl itself may take seconds on a busy machine).
    const realtimeFfmpeg = media("realtime-ffmpeg");
    await writeFile(
      realtimeFfmpeg,
      '#!/bin/sh\ncase "$1" in -version) ;; *) set -- -re "$@" ;; esac\nexec ffmpeg "$@"\n',
    );
    await chmod(realtimeFfmpeg, 0o755);
    const converters = [
      await start("converter", { FFMPEG_PATH: realtimeFfmpeg }),
      await start("converter", { FFMPEG_PATH: realtimeFfmpeg }),
    ];
    const jobIds = [await upload(media("long.mp4")), await upload(media("long.mp4"))];
    for (let i = 0; ; i++) {
      const jobs = await Promise.all(
        jobIds.map(async (id) => (await (await client.job(token, id)).json()) as { progress: number }),
      );
      if (jobs.every((job) => job.progress > 0)) break;
      assert.ok(i < 200, "both conversions started");
      await sleep(100);
    }
    await closeConnections({ vhost, reason: "connection drop during conversions" });

    await assertEndedOnce(jobIds, 90_000);
    for (const jobId of jobIds) {
      assert.equal(finishedConversions(jobId), 1, `job ${jobId} converted to the end once`);
    }
    const stopped = converters
      .flatMap((c) => c.output().split("\n"))
      .filter((l) => l.includes('"conversion stopped'));
    assert.ok(stopped.length >= 1, "the conversions whose messages were taken back were stopped");
    await Promise.all(converters.map((c) => c.stop()));
  });

  it("aborts incomplete multipart uploads older than the configured age", async () => {
    const admin = adminClient(s3);
    const { UploadId } = await admin.send(
      new CreateMultipartUploadCommand({ Bucket: bucket, Key: "videos/abandoned" }),
    );
    await admin.send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: "videos/abandoned",
        UploadId,
        PartNumber: 1,
        Body: Buffer.alloc(5 * 1024 * 1024, 1),
      }),
    );
    admin.destroy();
    assert.equal((await listMultipartUploads(s3, bucket)).length, 1);
    await sleep(1500);
    // A gateway sweeps at start (and periodically): uploads older than about a second here.
    const sweeper = await start("gateway", { ...gatewayEnv, INCOMPLETE_UPLOAD_MAX_AGE_HOURS: "0.0003" });
    const deadline = Date.now() + 10_000;
    while ((await listMultipartUploads(s3, bucket)).length > 0) {
      assert.ok(Date.now() < deadline, "the incomplete upload was aborted");
      await sleep(200);
    }
    assert.match(sweeper.output(), /removed incomplete uploads/);
    await sweeper.stop();
  });
});
