import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { makeGarbage, makeLongAudio, makeVideo, probe } from "./test-media.ts";
import { ConversionError, transcode } from "./transcode.ts";

const ffmpegPath = "ffmpeg";
let dir: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-transcode-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("a video with sound becomes an MP3 of the same length, reporting progress up to 1", async () => {
  const input = await makeVideo(dir, "good.mp4", { seconds: 2 });
  const output = path.join(dir, "good.mp3");
  const fractions: number[] = [];

  const result = await transcode({
    ffmpegPath,
    input,
    output,
    format: "mov",
    timeoutSeconds: 30,
    onProgress: (f) => fractions.push(f),
  });

  const source = await probe(input);
  const mp3 = await probe(output);
  assert.equal(mp3.formatName, "mp3");
  assert.deepEqual(mp3.codecs, ["mp3"]);
  assert.ok(Math.abs(mp3.durationSeconds - source.durationSeconds) < 0.1, `${mp3.durationSeconds}`);
  assert.ok(
    result.durationSeconds !== null && Math.abs(result.durationSeconds - source.durationSeconds) < 0.1,
  );
  assert.equal(fractions.at(-1), 1);
  for (const [i, f] of fractions.entries()) {
    assert.ok(f >= 0 && f <= 1);
    if (i > 0) assert.ok(f > (fractions[i - 1] ?? 0), "never decreasing");
  }
});

test("a video without sound fails with a readable reason", async () => {
  const input = await makeVideo(dir, "silent.mp4", { seconds: 1, audio: false });
  await assert.rejects(
    transcode({ ffmpegPath, input, output: path.join(dir, "silent.mp3"), format: "mov", timeoutSeconds: 30 }),
    (error) =>
      error instanceof ConversionError &&
      error.reason === "no-audio" &&
      error.message === "This file has no audio track, so there is nothing to convert to MP3.",
  );
});

test("garbage named .mp4 fails as undecodable", async () => {
  const input = await makeGarbage(dir, "garbage.mp4");
  await assert.rejects(
    transcode({
      ffmpegPath,
      input,
      output: path.join(dir, "garbage.mp3"),
      format: "mov",
      timeoutSeconds: 30,
    }),
    (error) =>
      error instanceof ConversionError &&
      error.reason === "undecodable" &&
      error.message === "This file could not be decoded: it is damaged or not a supported video format.",
  );
});

test("a real file forced into the wrong demuxer fails as undecodable", async () => {
  const input = await makeVideo(dir, "wrong-format.mp4", { seconds: 1 });
  await assert.rejects(
    transcode({
      ffmpegPath,
      input,
      output: path.join(dir, "wrong.mp3"),
      format: "matroska",
      timeoutSeconds: 30,
    }),
    (error) => error instanceof ConversionError && error.reason === "undecodable",
  );
});

test("a conversion over the time limit is killed and fails with the limit in the reason", async () => {
  const input = await makeLongAudio(dir, "long.wav", 120);
  const started = Date.now();
  await assert.rejects(
    transcode({ ffmpegPath, input, output: path.join(dir, "long.mp3"), format: "wav", timeoutSeconds: 0.05 }),
    (error) =>
      error instanceof ConversionError &&
      error.reason === "timeout" &&
      error.message === "The conversion took longer than 0.05 seconds and was stopped.",
  );
  assert.ok(Date.now() - started < 2000, "killed promptly");
});

test("a missing ffmpeg is an ordinary (retryable) error", async () => {
  const input = await makeVideo(dir, "any.mp4", { seconds: 1 });
  await assert.rejects(
    transcode({
      ffmpegPath: path.join(dir, "no-such-ffmpeg"),
      input,
      output: path.join(dir, "any.mp3"),
      format: "mov",
      timeoutSeconds: 30,
    }),
    (error) =>
      error instanceof Error &&
      !(error instanceof ConversionError) &&
      /could not run ffmpeg/.test(error.message),
  );
});

test("a missing input is an ordinary (retryable) error, not the user's fault", async () => {
  await assert.rejects(
    transcode({
      ffmpegPath,
      input: path.join(dir, "gone.mp4"),
      output: path.join(dir, "gone.mp3"),
      format: "mov",
      timeoutSeconds: 30,
    }),
    (error) =>
      error instanceof Error && !(error instanceof ConversionError) && /No such file/.test(error.message),
  );
});

test("aborting kills ffmpeg with an ordinary error", async () => {
  const input = await makeLongAudio(dir, "abort.wav", 60);
  const controller = new AbortController();
  const running = transcode({
    ffmpegPath,
    input,
    output: path.join(dir, "abort.mp3"),
    format: "wav",
    timeoutSeconds: 30,
    signal: controller.signal,
  });
  setTimeout(() => controller.abort(), 20);
  await assert.rejects(
    running,
    (error) => !(error instanceof ConversionError) && /aborted/.test(String(error)),
  );
});
