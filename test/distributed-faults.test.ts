import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { CreateMultipartUploadCommand, PutObjectCommand, UploadPartCommand } from "@aws-sdk/client-s3";
import type { GatewayDatabase } from "../src/gateway/jobs.ts";
import { openDatabase } from "../src/platform/database.ts";
import { ADMIN, type DistributedSystem, startDistributedSystem } from "./support/distributed-system.ts";
import { closeConnections, listQueues } from "./support/rabbitmq.ts";
import { adminClient, listMultipartUploads } from "./support/s3-server.ts";
import type { RunningServer } from "./support/server.ts";
import type { TcpProxy } from "./support/tcp-proxy.ts";

/**
 * "Every accepted upload becomes exactly one MP3 and one mail", under the faults an operator
 * meets: the four services as separate processes on MariaDB (the gateway's behind a TCP proxy the
 * test cuts), RabbitMQ, an S3 server and an SMTP server. The retry budgets are shortened by
 * configuration (2 attempts, 100 ms) so that every outage here outlasts them.
 */
describe("distributed mode under faults: every accepted upload ends once", { timeout: 300_000 }, () => {
  let system: DistributedSystem;
  // Shorthands for what most tests use.
  let client: DistributedSystem["client"];
  let token: string;
  let proxy: TcpProxy;
  const media = (name: string) => system.media(name);
  const start = (service: string, env?: Record<string, string>) => system.start(service, env);
  const upload = (file: string) => system.upload(file);
  const finishedConversions = (jobId: string) => system.finishedConversions(jobId);

  /** Waits until `server` has logged a line matching `pattern`. */
  async function waitForLog(server: RunningServer, pattern: RegExp, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(server.output())) {
      assert.ok(Date.now() < deadline, `no log line matching ${pattern} within ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** Every job done, its MP3 downloadable, and exactly one mail for it. */
  async function assertEndedOnce(jobIds: string[], timeoutMs = 60_000): Promise<void> {
    for (const jobId of jobIds) {
      const job = await client.waitForJob(token, jobId, timeoutMs);
      assert.equal(job.status, "done", JSON.stringify(job));
      const download = await client.download(token, String(job.mp3Id));
      assert.equal(download.status, 200);
      assert.ok((await download.arrayBuffer()).byteLength > 0);
      await system.smtp.waitForMessage((m) => (m.text ?? "").includes(String(job.mp3Id)), 20_000);
    }
    // Late duplicates would come within the outage backoff's reach; give them the chance.
    await sleep(1500);
    const mails = await system.smtp.messages();
    for (const jobId of jobIds) {
      const job = (await (await client.job(token, jobId)).json()) as { mp3Id: string };
      const count = mails.filter((m) => (m.text ?? "").includes(job.mp3Id)).length;
      assert.equal(count, 1, `one mail for job ${jobId}`);
    }
  }

  async function deadLetters(): Promise<number> {
    const queues = await listQueues(system.vhost);
    return queues.filter((q) => q.name.endsWith(".dead")).reduce((n, q) => n + q.messages, 0);
  }

  before(async () => {
    system = await startDistributedSystem({
      name: "faults",
      videos: { "short.mp4": 1, "long.mp4": 15 },
      env: {
        // Retry budgets far shorter than any outage below: an outage must not use them up.
        RETRY_DELAY_MS: "100",
        MAX_ATTEMPTS: "2",
        MAIL_MAX_ATTEMPTS: "2",
      },
      proxyGatewayDatabase: true,
      // The machine may be busy: a process that loads slowly is no fault of the system.
      startTimeoutMs: 90_000,
    });
    ({ client, token } = system);
    proxy = system.proxy as TcpProxy;
  });

  after(() => system?.stop());

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
      await waitForLog(system.gateway, /backend unavailable; the message waits for it/);
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
    const admin = adminClient(system.s3);
    await admin.send(
      new PutObjectCommand({
        Bucket: system.bucket,
        Key: `videos/${jobId}`,
        Body: await readFile(media("short.mp4")),
      }),
    );
    admin.destroy();
    const db = openDatabase<GatewayDatabase>({
      url: system.gatewayDbUrl,
      sqliteFile: "/nonexistent/unused.sqlite",
    });
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
      ...system.gatewayEnv,
      JOB_SWEEP_INTERVAL_SECONDS: "1",
      JOB_STALE_SECONDS: "2",
    });
    await assertEndedOnce([jobId], 30_000);
    // The log line is written after the publish, so it may trail the job's end by a moment.
    await waitForLog(sweeper, /job made no progress for too long; its message was published again/, 5_000);
    assert.equal(finishedConversions(jobId), 1);
    await Promise.all([converter.stop(), sweeper.stop()]);
  });

  it("converts and mails once when RabbitMQ drops the connections of two converters mid-conversion", async () => {
    // Real ffmpeg reading at playback speed: the 15-second video takes 15 s, time enough to cut in
    // (rabbitmqctl itself may take seconds on a busy machine).
    const realtimeFfmpeg = await system.realtimeFfmpeg();
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
    await closeConnections({ vhost: system.vhost, reason: "connection drop during conversions" });

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
    const { s3, bucket } = system;
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
    const sweeper = await start("gateway", {
      ...system.gatewayEnv,
      INCOMPLETE_UPLOAD_MAX_AGE_HOURS: "0.0003",
    });
    const deadline = Date.now() + 10_000;
    while ((await listMultipartUploads(s3, bucket)).length > 0) {
      assert.ok(Date.now() < deadline, "the incomplete upload was aborted");
      await sleep(200);
    }
    // The sweep logs once every abort is done; the listing can be empty a moment before that.
    await waitForLog(sweeper, /removed incomplete uploads/, 5_000);
    await sweeper.stop();
  });
});
