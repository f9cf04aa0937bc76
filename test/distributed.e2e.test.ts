import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { after, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { gatewayClient } from "./support/client.ts";
import { ADMIN, type DistributedSystem, startDistributedSystem } from "./support/distributed-system.ts";
import { createTestDatabase } from "./support/mariadb.ts";
import { audioDuration } from "./support/media.ts";
import { streamingMultipart } from "./support/multipart.ts";
import { startS3Server } from "./support/s3-server.ts";
import type { RunningServer } from "./support/server.ts";

const run = promisify(execFile);

/**
 * The four services as separate OS processes, like pods, on the real backends: MariaDB (one
 * database per service), RabbitMQ (a vhost of its own), an S3 server process and an SMTP server
 * process, all started here and removed afterwards.
 */
describe("distributed mode: four processes on MariaDB, RabbitMQ, S3 and SMTP", { timeout: 300_000 }, () => {
  let system: DistributedSystem;
  // Shorthands for what most tests use.
  let client: DistributedSystem["client"];
  let gateway: RunningServer;
  let token: string;
  const media = (name: string) => system.media(name);
  const start = (service: string, env?: Record<string, string>) => system.start(service, env);
  const upload = (file: string) => system.upload(file);
  const finishedConversions = (server: RunningServer, jobId: string) =>
    system.finishedConversions(jobId, [server]);

  before(async () => {
    system = await startDistributedSystem({
      name: "distributed",
      videos: { "talk.mp4": 3, "long.mp4": 6, "short.mp4": 1 },
      env: {
        RETRY_DELAY_MS: "200",
        // The admin keeps several converters busy at once here: no per-user cap on active jobs.
        MAX_ACTIVE_JOBS_PER_USER: "0",
      },
    });
    ({ client, gateway, token } = system);
  });

  after(() => system?.stop());

  it("runs the original's curl flow: login, upload, the mail with the fid, download", async () => {
    const converter = await start("converter");
    const curl = async (...args: string[]) =>
      (await run("curl", ["-sS", "--fail-with-body", ...args])).stdout;
    const jwt = await curl("-X", "POST", `${gateway.url}/login`, "-u", `${ADMIN.email}:${ADMIN.password}`);
    const { jobId } = JSON.parse(
      await curl(
        "-X",
        "POST",
        "-F",
        `file=@${media("talk.mp4")}`,
        "-H",
        `Authorization: Bearer ${jwt}`,
        `${gateway.url}/upload`,
      ),
    ) as { jobId: string };

    const job = await client.waitForJob(jwt, jobId);
    assert.equal(job.status, "done", JSON.stringify(job));
    const mail = await system.smtp.waitForMessage((m) => (m.text ?? "").includes(String(job.mp3Id)), 15_000);
    assert.equal(mail.to && "text" in mail.to ? mail.to.text : undefined, ADMIN.email);

    const mp3 = media("talk.mp3");
    await curl(
      "--output",
      mp3,
      "-H",
      `Authorization: Bearer ${jwt}`,
      `${gateway.url}/download?fid=${job.mp3Id}`,
    );
    const [source, converted] = await Promise.all([audioDuration(media("talk.mp4")), audioDuration(mp3)]);
    assert.ok(Math.abs(source - converted) <= 0.1, `MP3 lasts ${converted} s, the video's audio ${source} s`);
    assert.equal(finishedConversions(converter, jobId), 1);
    await converter.stop();
  });

  it("shares the queue between two converters, and both do work", async () => {
    const converters = [await start("converter"), await start("converter")];
    const jobIds = [];
    for (let i = 0; i < 6; i++) jobIds.push(await upload(media("short.mp4")));
    for (const jobId of jobIds) assert.equal((await client.waitForJob(token, jobId)).status, "done");
    // Each converter logs "conversion finished" just after reporting the outcome: let the last lines arrive.
    for (let i = 0; jobIds.some((id) => system.finishedConversions(id, converters) === 0); i++) {
      assert.ok(i < 100, "every conversion logged");
      await sleep(100);
    }
    for (const converter of converters) {
      const count = jobIds.reduce((n, id) => n + finishedConversions(converter, id), 0);
      assert.ok(count > 0, "each converter converted some of the jobs");
    }
    const total = jobIds.reduce(
      (n, id) => n + converters.reduce((m, c) => m + finishedConversions(c, id), 0),
      0,
    );
    assert.equal(total, jobIds.length, "each job converted once");
    await Promise.all(converters.map((c) => c.stop()));
  });

  it("finishes a job once on another converter after its converter is killed mid-conversion", async () => {
    // Real ffmpeg reading at playback speed: the 6-second video takes 6 s, long enough to kill it.
    const doomed = await start("converter", { FFMPEG_PATH: await system.realtimeFfmpeg() });
    const jobId = await upload(media("long.mp4"));
    for (let i = 0; ; i++) {
      const job = (await (await client.job(token, jobId)).json()) as { status: string; progress: number };
      if (job.status === "converting" && job.progress > 0) break;
      // Bounded but generous: a busy machine, and playback speed here.
      assert.ok(i < 600, "the conversion started");
      await sleep(100);
    }
    await doomed.stop("SIGKILL");

    const survivor = await start("converter");
    const job = await client.waitForJob(token, jobId);
    assert.equal(job.status, "done", JSON.stringify(job));
    // The converter logs "conversion finished" after it has reported the outcome, so the job may
    // read done a moment before that line reaches us.
    for (let i = 0; finishedConversions(survivor, jobId) === 0; i++) {
      assert.ok(i < 100, "the survivor logged the conversion it finished");
      await sleep(100);
    }
    await sleep(500);
    assert.equal(finishedConversions(doomed, jobId), 0);
    assert.equal(finishedConversions(survivor, jobId), 1);
    const mails = (await system.smtp.messages()).filter((m) => (m.text ?? "").includes(String(job.mp3Id)));
    assert.equal(mails.length, 1, "one mail for the job");
    await survivor.stop();
  });

  it("loses no accepted upload when RabbitMQ closes every connection mid-stream, and converts none twice", async () => {
    const converter = await start("converter");
    const accepted: string[] = [];
    let refused = 0;
    for (let i = 0; i < 8; i++) {
      if (i === 3) await run("rabbitmqctl", ["close_all_connections", "vid2mp3 fault test"]);
      const response = await client.upload(token, media("short.mp4"));
      if (response.status === 202) accepted.push(((await response.json()) as { jobId: string }).jobId);
      else {
        assert.equal(response.status, 503, "an upload that is not accepted says so clearly");
        refused++;
      }
    }
    assert.ok(accepted.length >= 5, `most uploads were accepted (${refused} refused)`);
    for (const jobId of accepted) {
      const job = await client.waitForJob(token, jobId, 60_000);
      assert.equal(job.status, "done", JSON.stringify(job));
      assert.ok(finishedConversions(converter, jobId) <= 1, `job ${jobId} converted at most once`);
    }
    await converter.stop();
  });

  it("relays job events to a browser connected to another gateway replica", async () => {
    const converter = await start("converter");
    const replica = await start("gateway", system.gatewayEnv);
    const events = await fetch(`${replica.url}/events`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(events.status, 200);
    assert.match(String(events.headers.get("content-type")), /text\/event-stream/);
    const jobId = await upload(media("short.mp4"));

    const reader = events.body?.pipeThrough(new TextDecoderStream()).getReader();
    assert.ok(reader);
    let seen = "";
    const deadline = Date.now() + 20_000;
    while (!new RegExp(`"id":"${jobId}","status":"done"`).test(seen)) {
      assert.ok(Date.now() < deadline, `the replica relayed the job's events; got:\n${seen}`);
      const { value, done } = await reader.read();
      if (done) break;
      seen += value;
    }
    assert.match(seen, /event: job/);
    await reader.cancel();
    await Promise.all([converter.stop(), replica.stop()]);
  });

  it("refuses a disabled user's tokens and those issued before a password change on every gateway replica within a minute", async () => {
    const replica = await start("gateway", system.gatewayEnv);
    const call = (server: RunningServer, token: string, url: string, init: RequestInit = {}) =>
      fetch(new URL(url, server.url), {
        ...init,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      });
    const newUser = async () => {
      const email = `${Date.now()}-${Math.random().toString(36).slice(2)}@example.com`;
      const created = await client.createUser(token, email, "first-password-1");
      assert.equal(created.status, 201, await created.clone().text());
      const { id } = (await created.json()) as { id: string };
      return { id, email, token: await client.token(email, "first-password-1") };
    };
    /** Seconds until `server` refuses `userToken` (it remembers a good answer for up to 30 s). */
    const refusedWithin = async (server: RunningServer, userToken: string, since: number) => {
      for (;;) {
        const answer = await call(server, userToken, "/jobs");
        if (answer.status === 403) {
          const { error } = (await answer.json()) as { error: { code: string } };
          assert.match(error.code, /^(account_disabled|token_revoked)$/);
          return (Date.now() - since) / 1000;
        }
        assert.equal(answer.status, 200);
        assert.ok(Date.now() - since < 60_000, "still accepted a minute after the change");
        await sleep(500);
      }
    };
    const disabled = await newUser();
    const changing = await newUser();
    // Each replica has seen each token accepted, so it remembers a good answer when the change comes.
    for (const server of [gateway, replica]) {
      for (const user of [disabled, changing])
        assert.equal((await call(server, user.token, "/jobs")).status, 200);
    }
    const since = Date.now();
    // One change through each replica: the other one hears of it only from auth.
    const disabling = await call(gateway, token, `/users/${disabled.id}`, {
      method: "PATCH",
      body: JSON.stringify({ disabled: true }),
    });
    assert.equal(disabling.status, 200);
    const changed = await call(replica, changing.token, "/me/password", {
      method: "POST",
      body: JSON.stringify({ currentPassword: "first-password-1", newPassword: "second-password-2" }),
    });
    assert.equal(changed.status, 204);
    // The replica that made the change refuses at once; the other within the minute.
    assert.equal((await call(gateway, disabled.token, "/jobs")).status, 403);
    assert.equal((await call(replica, changing.token, "/jobs")).status, 403);
    const [disabledAfter, changedAfter] = await Promise.all([
      refusedWithin(replica, disabled.token, since),
      refusedWithin(gateway, changing.token, since),
    ]);
    assert.ok(disabledAfter <= 60 && changedAfter <= 60);
    const fresh = await client.token(changing.email, "second-password-2");
    assert.equal((await call(replica, fresh, "/jobs")).status, 200, "the new password's token works");
    await replica.stop();
  });

  it("answers 503 and keeps no job when the S3 server stops during an upload", async () => {
    const s3 = await startS3Server();
    system.defer(s3.stop);
    const db = await createTestDatabase();
    system.defer(db.drop);
    const lonely = await start("gateway", {
      ...system.gatewayEnv,
      DATABASE_URL: db.url,
      AWS_ENDPOINT_URL_S3: s3.endpoint,
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    });
    const video = await readFile(media("long.mp4"));
    const serverStopped = Promise.withResolvers<void>();
    async function* slowFile() {
      yield video.subarray(0, 64 * 1024);
      await serverStopped.promise;
      yield video.subarray(64 * 1024);
      for (let i = 0; i < 8; i++) yield Buffer.alloc(1024 * 1024, i);
    }
    const { contentType, body } = streamingMultipart("doomed.mp4", slowFile());
    const response = fetch(`${lonely.url}/upload`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": contentType },
      body,
      duplex: "half",
    } as RequestInit);
    await sleep(300);
    await s3.kill();
    serverStopped.resolve();

    const answer = await response;
    assert.equal(answer.status, 503, await answer.clone().text());
    const { error } = (await answer.json()) as { error: { code: string; message: string } };
    assert.equal(error.code, "storage_unavailable");
    const jobs = (await (await gatewayClient(lonely.url).jobs(token)).json()) as { total: number };
    assert.equal(jobs.total, 0, "no job row left behind");
    await lonely.stop();
  });
});
