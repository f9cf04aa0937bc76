import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { after, afterEach, before, describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { ListObjectsV2Command } from "@aws-sdk/client-s3";
import { type DistributedSystem, startDistributedSystem } from "./support/distributed-system.ts";
import { slowSegmentsFfmpeg } from "./support/media.ts";
import { adminClient } from "./support/s3-server.ts";
import type { RunningServer } from "./support/server.ts";

const run = promisify(execFile);

/**
 * A long job's segments fanned out over several converters (`CONVERTER_SEGMENT_FANOUT`), as
 * separate processes on RabbitMQ and an S3 server, and the faults that matter to it: the helper
 * killed mid-segment, and the converter that holds the job killed while a helper works for it.
 * Either way the job ends once (one finished conversion, one MP3, one mail) and no segment blob is
 * left in the bucket.
 */
describe("distributed mode: one long job's segments on several converters", { timeout: 300_000 }, () => {
  let system: DistributedSystem;
  /** ffmpeg whose segment encoders read their PCM at `rate`× real time (the rest at full speed). */
  const slowSegments = (rate: number) => slowSegmentsFfmpeg(system.dir, rate);
  const fanout = { CONVERTER_SEGMENT_FANOUT: "1", CONVERTER_SEGMENT_WORKERS: "1" };

  before(async () => {
    system = await startDistributedSystem({
      name: "fanout",
      // Long enough to be cut in two segments of about a minute (the shortest segment).
      videos: { "long.mp4": 130 },
      env: {
        CONVERTER_SEGMENT_MIN_SECONDS: "0",
        RETRY_DELAY_MS: "100",
        MAX_ATTEMPTS: "2",
        MAIL_MAX_ATTEMPTS: "2",
      },
      startTimeoutMs: 90_000,
    });
  });
  after(() => system?.stop());
  // Converters a test started are stopped however it ends: the next test's job must not go to them.
  const converters: RunningServer[] = [];
  afterEach(async () => {
    await Promise.all(converters.splice(0).map((c) => c.stop("SIGKILL")));
  });
  async function converter(env: Record<string, string>): Promise<RunningServer> {
    const started = await system.start("converter", { ...fanout, ...env });
    converters.push(started);
    return started;
  }

  async function waitForLog(server: RunningServer, pattern: RegExp, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(server.output())) {
      assert.ok(Date.now() < deadline, `no log line matching ${pattern} within ${timeoutMs} ms`);
      await sleep(100);
    }
  }

  /** Uploads the long video to `holder` alone: helpers start once it holds the job. */
  async function uploadTo(holder: RunningServer): Promise<string> {
    const jobId = await system.upload(system.media("long.mp4"));
    await waitForLog(holder, new RegExp(`"jobId":"${jobId}".*"conversion started"`));
    return jobId;
  }

  /** Done, a whole MP3 of the video's length, exactly one conversion and one mail, no segment blob left. */
  async function assertEndedOnce(jobId: string): Promise<string> {
    const { client, token } = system;
    const job = await client.waitForJob(token, jobId, 120_000);
    assert.equal(job.status, "done", JSON.stringify(job));
    const download = await client.download(token, String(job.mp3Id));
    assert.equal(download.status, 200);
    const mp3 = system.media(`${jobId}.mp3`);
    await writeFile(mp3, Buffer.from(await download.arrayBuffer()));
    // Decodes without one error, and as long as the video.
    const decoded = await run("ffmpeg", ["-nostdin", "-v", "error", "-xerror", "-i", mp3, "-f", "null", "-"]);
    assert.equal(decoded.stderr, "");
    const { stdout } = await run("ffprobe", [
      "-v",
      "error",
      "-show_entries",
      "format=duration",
      "-of",
      "csv=p=0",
      mp3,
    ]);
    assert.ok(Math.abs(Number(stdout) - 130) < 0.1, `${stdout.trim()} s`);

    await system.smtp.waitForMessage((m) => (m.text ?? "").includes(String(job.mp3Id)), 20_000);
    await sleep(1500);
    const mails = (await system.smtp.messages()).filter((m) => (m.text ?? "").includes(String(job.mp3Id)));
    assert.equal(mails.length, 1, "one mail");
    assert.equal(system.finishedConversions(jobId), 1, "converted to the end once");
    // The holder removes the job's segment blobs when it ends; a late helper removes its own.
    const s3 = adminClient(system.s3);
    for (let i = 0; ; i++) {
      const listed = await s3.send(new ListObjectsV2Command({ Bucket: system.bucket, Prefix: "segments/" }));
      if ((listed.KeyCount ?? 0) === 0) break;
      assert.ok(i < 100, `segment blobs left: ${listed.Contents?.map((o) => o.Key).join(", ")}`);
      await sleep(100);
    }
    return String(job.mp3Id);
  }

  it("a second converter encodes a segment, and the holder joins it into the MP3", async () => {
    // The holder's own segment encodes at 8× real time: the helper's comes back first.
    const holder = await converter({ FFMPEG_PATH: await slowSegments(8) });
    const jobId = await uploadTo(holder);
    const helper = await converter({});
    await assertEndedOnce(jobId);
    assert.match(
      holder.output(),
      new RegExp(`"jobId":"${jobId}".*"remoteSegments":1.*"conversion finished"`),
    );
    assert.match(helper.output(), new RegExp(`"jobId":"${jobId}".*"segment encoded"`));
    // And each says so on /metrics (loopback needs no token).
    const metric = async (server: RunningServer, line: RegExp) =>
      assert.match(await (await fetch(`${server.url}/metrics`)).text(), line);
    await metric(holder, /^vid2mp3_segments_encoded_elsewhere_total\{[^}]*\} 1$/m);
    await metric(helper, /^vid2mp3_segments_helped_total\{outcome="encoded"[^}]*\} 1$/m);
  });

  it("finishes the job once when the helper is killed mid-segment (the holder encodes it itself)", async () => {
    // Segments encode at 8× real time here (the helper must find the offer still out) and in real
    // time in the helper (a minute to kill it in).
    const holder = await converter({ FFMPEG_PATH: await slowSegments(8) });
    const jobId = await uploadTo(holder);
    const helper = await converter({ FFMPEG_PATH: await slowSegments(1) });
    await waitForLog(helper, new RegExp(`"jobId":"${jobId}".*"segment encoding"`));
    await helper.stop("SIGKILL");
    await assertEndedOnce(jobId);
    assert.doesNotMatch(holder.output(), /"remoteSegments"/);
  });

  it("finishes the job once when its holder is killed while a helper works for it", async () => {
    // The holder's own segment encodes in real time; the helper's is done in a second or two.
    const holder = await converter({ FFMPEG_PATH: await slowSegments(1) });
    const jobId = await uploadTo(holder);
    const helper = await converter({});
    await waitForLog(helper, new RegExp(`"jobId":"${jobId}".*"segment encoded"`));
    await holder.stop("SIGKILL");
    // RabbitMQ gives the job to the helper, which holds it now (and helps itself).
    await assertEndedOnce(jobId);
    assert.match(helper.output(), new RegExp(`"jobId":"${jobId}".*"conversion finished"`));
  });
});
