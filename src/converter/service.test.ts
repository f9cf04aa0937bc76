import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { chmod, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { after, before, test } from "node:test";
import { pino } from "pino";
import { audioPacketsMd5, makeVbrMp3, makeVideo, probe } from "../../test/support/media.ts";
import { JobEvent, Mp3Message, mp3Key, type VideoMessage, videoKey } from "../contracts/messages.ts";
import type { BlobStore } from "../platform/blobs/blob-store.ts";
import { createFolderBlobStore } from "../platform/blobs/folder-blob-store.ts";
import { type DeadLetter, deadLetterQueue } from "../platform/broker/broker.ts";
import { createMemoryBroker } from "../platform/broker/memory-broker.ts";
import { loadConfig } from "../platform/config.ts";
import { createLogger, type Logger } from "../platform/logger.ts";
import { UnavailableError } from "../platform/unavailable.ts";
import { createConverter, INTERNAL_ERROR_MESSAGE } from "./service.ts";

let dir: string;
let videoWithSound: string;
let videoWithoutSound: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-converter-"));
  [videoWithSound, videoWithoutSound] = await Promise.all([
    makeVideo(path.join(dir, "with-sound.mp4"), { seconds: 2 }),
    makeVideo(path.join(dir, "without-sound.mp4"), { seconds: 1, audio: false }),
  ]);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A converter on the real embedded broker and folder store, and the queues it writes to, recorded. */
async function startConverter({
  ffmpegPath = "ffmpeg",
  logger = createLogger("silent", "converter"),
  env = {},
  storeAs = (blobs) => blobs,
}: {
  ffmpegPath?: string;
  logger?: Logger;
  env?: Record<string, string>;
  /** The store as the converter sees it (the test's own uploads go to the real one). */
  storeAs?: (blobs: BlobStore) => BlobStore;
} = {}) {
  const dataDir = await mkdtemp(path.join(dir, "data-"));
  const config = loadConfig({
    DATA_DIR: dataDir,
    RETRY_DELAY_MS: "10",
    MAX_ATTEMPTS: "2",
    LOG_LEVEL: "silent",
    ...env,
  });
  const broker = createMemoryBroker({ logger });
  const blobs = createFolderBlobStore(path.join(dataDir, "blobs"));
  const converter = createConverter(config, { logger, broker, blobs: storeAs(blobs), ffmpegPath });
  await converter.start();

  const events: JobEvent[] = [];
  const mails: Mp3Message[] = [];
  const dead: DeadLetter[] = [];
  const record =
    <T>(list: T[]) =>
    async ({ body }: { body: T }) => {
      list.push(body);
    };
  // The contract schemas check what the converter publishes, as its consumers will.
  await broker.consume(config.queues.jobEvents, record(events), { parse: JobEvent.parse, concurrency: 1 });
  await broker.consume(config.queues.mp3, record(mails), { parse: Mp3Message.parse, concurrency: 1 });
  await broker.consume(deadLetterQueue(config.queues.video), record(dead), {
    parse: (body) => body as DeadLetter,
    concurrency: 1,
  });

  async function submit(file: string, overrides: Partial<VideoMessage> = {}): Promise<VideoMessage> {
    const jobId = randomUUID();
    const message: VideoMessage = {
      version: 1,
      jobId,
      videoKey: videoKey(jobId),
      mp3Id: randomUUID(),
      fileName: path.basename(file),
      format: "mov",
      owner: { id: "user-1", email: "ada@example.com" },
      ...overrides,
    };
    await blobs.put(message.videoKey, createReadStream(file), { contentType: "video/mp4" });
    await broker.publish(config.queues.video, message);
    return message;
  }

  const workDir = path.join(dataDir, "tmp", "converter");
  const close = async () => {
    await converter.close();
    await broker.close();
  };
  return { config, broker, blobs, converter, events, mails, dead, submit, workDir, close };
}

/** Bounded, but generous: conversions (a video's includes a run for its cover) share two busy cores; a 2-second clip can take over 10 s on a saturated machine. */
async function waitFor(condition: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const eventsOf = (events: JobEvent[], jobId: string) => events.filter((e) => e.jobId === jobId);

test("a video becomes an MP3 in the blob store, with converting, progress and done events and a mail", async (t) => {
  const c = await startConverter();
  t.after(c.close);
  const job = await c.submit(videoWithSound);
  await waitFor(() => c.mails.length === 1, "the mp3 message");

  const events = eventsOf(c.events, job.jobId);
  assert.equal(events[0]?.type, "converting");
  const done = events.at(-1);
  assert.equal(done?.type, "done");
  const progress = events.slice(1, -1);
  // Throttled to one a second, but the first real reading always goes out (here usually 100 %).
  assert.ok(progress.length >= 1, "at least one progress event");
  let previous = 0;
  for (const event of progress) {
    assert.equal(event.type, "progress");
    if (event.type === "progress") {
      assert.ok(event.progress > previous && event.progress <= 1);
      previous = event.progress;
    }
  }

  const source = await probe(videoWithSound);
  const mp3File = path.join(dir, `${job.mp3Id}.mp3`);
  await pipeline(await c.blobs.get(mp3Key(job.mp3Id)), createWriteStream(mp3File));
  const mp3 = await probe(mp3File);
  assert.equal(mp3.formatName, "mp3");
  assert.ok(Math.abs(mp3.durationSeconds - source.durationSeconds) < 0.1);

  assert.ok(done?.type === "done");
  assert.equal(done.mp3Id, job.mp3Id);
  assert.equal(done.mp3Size, (await c.blobs.stat(mp3Key(job.mp3Id)))?.size);
  assert.ok(done.durationSeconds !== null && Math.abs(done.durationSeconds - source.durationSeconds) < 0.1);

  assert.deepEqual(c.mails, [
    {
      version: 1,
      outcome: "done",
      jobId: job.jobId,
      mp3Id: job.mp3Id,
      fileName: "with-sound.mp4",
      email: "ada@example.com",
      durationSeconds: done.durationSeconds,
    },
  ]);
  assert.deepEqual(await readdir(c.workDir), [], "temporary files removed");
});

test("an MP3 upload is stored with its frames copied, and the log says which path was taken", async (t) => {
  const logLines: Record<string, unknown>[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => logLines.push(JSON.parse(line)) });
  const c = await startConverter({ logger });
  t.after(c.close);
  const upload = await makeVbrMp3(path.join(dir, "song.mp3"));
  const mp3Job = await c.submit(upload, { format: "mp3" });
  const videoJob = await c.submit(videoWithSound);
  await waitFor(() => c.mails.length === 2, "the mp3 messages");

  const mp3File = path.join(dir, `${mp3Job.mp3Id}.mp3`);
  await pipeline(await c.blobs.get(mp3Key(mp3Job.mp3Id)), createWriteStream(mp3File));
  assert.equal(await audioPacketsMd5(mp3File), await audioPacketsMd5(upload));

  const finished = (jobId: string) =>
    logLines.find((l) => l.msg === "conversion finished" && l.jobId === jobId);
  assert.equal(finished(mp3Job.jobId)?.audio, "copy");
  assert.equal(finished(mp3Job.jobId)?.sourceCodec, "mp3");
  assert.equal(finished(videoJob.jobId)?.audio, "encode");
  assert.equal(finished(videoJob.jobId)?.sourceCodec, "aac");
});

test("a redelivered message of a converted job tells the outcome again without converting again", async (t) => {
  const c = await startConverter();
  t.after(c.close);
  const job = await c.submit(videoWithSound);
  await waitFor(() => c.mails.length === 1, "the first mp3 message");
  const first = await c.blobs.stat(mp3Key(job.mp3Id));
  const eventsOfFirstDelivery = c.events.length;
  await c.broker.publish(c.config.queues.video, job);
  await waitFor(() => c.mails.length === 2, "the second mp3 message");

  assert.deepEqual(
    c.events.slice(eventsOfFirstDelivery).map((e) => e.type),
    ["converting", "done"],
    "no progress: ffmpeg did not run again",
  );

  assert.deepEqual(await c.blobs.stat(mp3Key(job.mp3Id)), first);
  assert.deepEqual(
    c.mails.map((m) => m.outcome === "done" && m.mp3Id),
    [job.mp3Id, job.mp3Id],
  );
});

test("a malformed message is dead-lettered, and a video without sound then fails with a readable reason", async (t) => {
  const c = await startConverter();
  t.after(c.close);
  await c.broker.publish(c.config.queues.video, { version: 1, jobId: "not-a-uuid" });
  await waitFor(() => c.dead.length === 1, "the dead letter");
  assert.equal(c.dead[0]?.queue, c.config.queues.video);
  assert.match(c.dead[0]?.reason ?? "", /invalid message/);
  assert.deepEqual(c.dead[0]?.body, { version: 1, jobId: "not-a-uuid" });

  const job = await c.submit(videoWithoutSound);
  await waitFor(() => c.mails.length === 1, "the mp3 message");
  const reason = "This file has no audio track, so there is nothing to convert to MP3.";
  assert.deepEqual(
    eventsOf(c.events, job.jobId).map((e) => (e.type === "failed" ? `failed: ${e.error}` : e.type)),
    ["converting", `failed: ${reason}`],
  );
  assert.deepEqual(c.mails, [
    {
      version: 1,
      outcome: "failed",
      jobId: job.jobId,
      fileName: "without-sound.mp4",
      email: "ada@example.com",
      error: reason,
    },
  ]);
  assert.equal(await c.blobs.stat(mp3Key(job.mp3Id)), undefined);
  assert.equal(c.dead.length, 1, "a bad file is a failed job, not a dead letter");
});

test("a video deleted before its turn is skipped without retries", async (t) => {
  const c = await startConverter();
  t.after(c.close);
  const jobId = randomUUID();
  await c.broker.publish(c.config.queues.video, {
    version: 1,
    jobId,
    videoKey: videoKey(jobId),
    mp3Id: randomUUID(),
    fileName: "gone.mp4",
    format: "mov",
    owner: { id: "user-1", email: "ada@example.com" },
  } satisfies VideoMessage);
  await waitFor(() => c.events.length === 1, "the converting event");
  // Long enough for a retry (10 ms delay) to have happened, had the handler failed.
  await new Promise((resolve) => setTimeout(resolve, 150));
  assert.deepEqual(
    c.events.map((e) => e.type),
    ["converting"],
  );
  assert.deepEqual(c.mails, []);
  assert.deepEqual(c.dead, []);
});

test("an internal failure is retried, and on the last attempt the job fails with an apology", async (t) => {
  const c = await startConverter({ ffmpegPath: path.join(dir, "no-such-ffmpeg") });
  t.after(c.close);
  const job = await c.submit(videoWithSound);
  await waitFor(() => c.mails.length === 1, "the mp3 message");
  assert.deepEqual(
    eventsOf(c.events, job.jobId).map((e) => (e.type === "failed" ? `failed: ${e.error}` : e.type)),
    ["converting", "converting", `failed: ${INTERNAL_ERROR_MESSAGE}`],
  );
  assert.equal(c.mails[0]?.outcome, "failed");
  assert.deepEqual(c.dead, []);
  assert.deepEqual(await readdir(c.workDir), []);
});

test("a store that cannot be reached when the MP3 is to be stored is waited out: no attempt used up, one outcome", async (t) => {
  let refused = 0;
  const c = await startConverter({
    // MAX_ATTEMPTS is 2: three refusals would dead-letter or fail the job if they counted.
    storeAs: (blobs) => ({
      ...blobs,
      async putFile(key, file, options) {
        if (key.startsWith("mp3s/") && refused < 3) {
          refused++;
          throw new UnavailableError("storage", "the store is not reachable");
        }
        return blobs.putFile(key, file, options);
      },
    }),
  });
  t.after(c.close);
  const job = await c.submit(videoWithSound);
  await waitFor(() => c.mails.length === 1, "the mp3 message");
  assert.equal(refused, 3);
  assert.equal(c.mails[0]?.outcome, "done");
  const types = eventsOf(c.events, job.jobId).map((e) => e.type);
  assert.deepEqual(
    types.filter((type) => type !== "progress"),
    ["converting", "converting", "converting", "converting", "done"],
  );
  assert.deepEqual(c.dead, []);
  assert.ok(await c.blobs.stat(mp3Key(job.mp3Id)), "the MP3 is stored");
});

/** Real ffmpeg reading its input at playback speed, so a conversion is certainly still running. */
async function realtimeFfmpeg(): Promise<string> {
  const file = path.join(dir, "realtime-ffmpeg");
  await writeFile(file, '#!/bin/sh\nexec ffmpeg -re "$@"\n');
  await chmod(file, 0o755);
  return file;
}

test("close stops the conversion in hand, and its message comes back to the next converter", async (t) => {
  const c = await startConverter({ ffmpegPath: await realtimeFfmpeg() });
  t.after(c.close);
  await c.submit(videoWithSound);
  await waitFor(() => c.events.length === 1, "the converting event");

  const closing = Date.now();
  await c.converter.close();
  assert.ok(Date.now() - closing < 1500, "close does not wait for ffmpeg to finish");
  assert.equal(c.mails.length, 0);
  assert.ok(c.events.every((e) => e.type === "converting" || e.type === "progress"));
  assert.deepEqual(await readdir(c.workDir), []);

  const next = createConverter(c.config, {
    logger: createLogger("silent", "converter"),
    broker: c.broker,
    blobs: c.blobs,
    ffmpegPath: "ffmpeg",
  });
  await next.start();
  t.after(() => next.close());
  await waitFor(() => c.mails.length === 1, "the mp3 message");
  assert.equal(c.mails[0]?.outcome, "done");
  assert.equal(c.events.at(-1)?.type, "done");
});

test("with CONVERTER_DRAIN_SECONDS, close takes no new job but lets the conversion in hand finish", async (t) => {
  const c = await startConverter({
    ffmpegPath: await realtimeFfmpeg(),
    env: { CONVERTER_DRAIN_SECONDS: "120" },
  });
  t.after(c.close);
  const first = await c.submit(videoWithSound);
  await waitFor(() => c.events.length === 1, "the converting event");
  const second = await c.submit(videoWithSound);

  await c.converter.close();
  assert.equal(c.mails.length, 1, "the conversion in hand ended before close returned");
  assert.equal(c.mails[0]?.jobId, first.jobId);
  assert.equal(c.mails[0]?.outcome, "done");
  assert.deepEqual(eventsOf(c.events, second.jobId), [], "the next job was not started");
  assert.deepEqual(c.dead, []);
});
