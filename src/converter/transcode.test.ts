import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import {
  audioPacketsMd5,
  makeGarbage,
  makeLavfiAudio,
  makeLongAudio,
  makeMp2,
  makeVbrMp3,
  makeVideo,
  probe,
} from "../../test/support/media.ts";
import { ConversionError, transcode } from "./transcode.ts";

const ffmpegPath = "ffmpeg";
const run = promisify(execFile);
let dir: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-transcode-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("a video with sound becomes an MP3 of the same length, reporting progress up to 1", async () => {
  const input = await makeVideo(path.join(dir, "good.mp4"), { seconds: 2 });
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
  assert.deepEqual(mp3.codecs, ["mp3", "mjpeg"], "the audio, and a frame of the video as its cover");
  assert.equal(result.cover, true);
  assert.ok(Math.abs(mp3.durationSeconds - source.durationSeconds) < 0.1, `${mp3.durationSeconds}`);
  assert.ok(
    result.durationSeconds !== null && Math.abs(result.durationSeconds - source.durationSeconds) < 0.1,
  );
  assert.equal(fractions.at(-1), 1);
  for (const [i, f] of fractions.entries()) {
    assert.ok(f >= 0 && f <= 1);
    if (i > 0) assert.ok(f > (fractions[i - 1] ?? 0), "never decreasing");
  }
  assert.equal(result.audio, "encode", "AAC is encoded");
  assert.equal(result.sourceCodec, "aac");
  assert.equal(result.copyAbandoned, undefined);
});

/** Converts `input` and checks that its MP3 frames went into the output unchanged, with a Xing header. */
async function assertCopied(input: string, format: string, { video = false } = {}): Promise<void> {
  const output = `${input}.out.mp3`;
  const fractions: number[] = [];
  const result = await transcode({
    ffmpegPath,
    input,
    output,
    format,
    timeoutSeconds: 30,
    onProgress: (f) => fractions.push(f),
  });
  assert.equal(result.audio, "copy");
  assert.equal(result.sourceCodec, "mp3");
  assert.equal(result.copyAbandoned, undefined);
  assert.equal(fractions.at(-1), 1);

  const [source, mp3] = await Promise.all([probe(input), probe(output)]);
  assert.equal(mp3.formatName, "mp3");
  // A video's frame becomes the cover, alongside the copied frames.
  assert.deepEqual(mp3.codecs, video ? ["mp3", "mjpeg"] : ["mp3"]);
  assert.ok(source.audio && mp3.audio);
  // The same frames, byte for byte: nothing was decoded or encoded.
  assert.equal(await audioPacketsMd5(output), await audioPacketsMd5(input));
  // Exact duration from the Xing header the muxer wrote (without it a VBR file reads much longer).
  const durationDiff = Math.abs(mp3.durationSeconds - source.audio.durationSeconds);
  assert.ok(durationDiff < 0.05, `duration ${mp3.durationSeconds} vs ${source.audio.durationSeconds}`);
  assert.ok(result.durationSeconds !== null && Math.abs(result.durationSeconds - mp3.durationSeconds) < 0.05);
  const bitRateRatio = mp3.audio.bitRate / source.audio.bitRate;
  assert.ok(Math.abs(bitRateRatio - 1) < 0.01, `bit rate ${mp3.audio.bitRate} vs ${source.audio.bitRate}`);
  // "Xing" for a VBR file, "Info" for a CBR one: the same header.
  assert.ok(/Xing|Info/.test(await readFile(output, "latin1")), "a Xing/Info header");
}

test("an MP3 upload (VBR, LAME) is copied, not re-encoded: same frames, exact duration, tags kept", async () => {
  const input = await makeVbrMp3(path.join(dir, "upload.mp3"));
  await assertCopied(input, "mp3");
  const { stdout } = await run("ffprobe", [
    "-v",
    "error",
    "-show_entries",
    "format_tags=title",
    "-of",
    "csv=p=0",
    `${input}.out.mp3`,
  ]);
  assert.equal(stdout.trim(), "Tone poem");
});

test("the MP3 audio track of an MKV and of an AVI is copied", async () => {
  const mkv = await makeVideo(path.join(dir, "mp3-audio.mkv"), { audioCodec: "libmp3lame" });
  const avi = await makeVideo(path.join(dir, "mp3-audio.avi"), { audioCodec: "libmp3lame" });
  await assertCopied(mkv, "matroska", { video: true });
  await assertCopied(avi, "avi", { video: true });
});

test("MPEG layer II audio (an .mp2 read by the mp3 demuxer) is encoded, not copied", async () => {
  const input = await makeMp2(path.join(dir, "layer2.mp2"));
  const output = path.join(dir, "layer2.mp3");
  const result = await transcode({ ffmpegPath, input, output, format: "mp3", timeoutSeconds: 30 });
  assert.equal(result.audio, "encode");
  assert.equal(result.sourceCodec, "mp2");
  assert.deepEqual((await probe(output)).codecs, ["mp3"]);
});

test("an MP3 with garbage among its frames is encoded after all, so the garbage is not copied", async () => {
  const clean = await readFile(await makeVbrMp3(path.join(dir, "clean.mp3")));
  const cut = Math.floor(clean.length / 2);
  const noise = Buffer.alloc(20_000);
  for (let i = 0; i < noise.length; i++) noise[i] = (i * 7919 + 13) % 251;
  const input = path.join(dir, "damaged.mp3");
  await writeFile(input, Buffer.concat([clean.subarray(0, cut), noise, clean.subarray(cut)]));
  const output = path.join(dir, "damaged-out.mp3");
  const fractions: number[] = [];

  const result = await transcode({
    ffmpegPath,
    input,
    output,
    format: "mp3",
    timeoutSeconds: 30,
    onProgress: (f) => fractions.push(f),
  });
  assert.equal(result.audio, "encode");
  assert.equal(result.sourceCodec, "mp3");
  assert.match(result.copyAbandoned ?? "", /damaged/);
  assert.equal(fractions.at(-1), 1);
  assert.deepEqual((await probe(output)).codecs, ["mp3"]);
});

test("a stream that only looks like MP3 in ffmpeg's listing is refused by the muxer and encoded", async () => {
  // A language tag that makes ffmpeg print "Stream #0:0(x): Audio: mp3, 1 Hz" for an AAC stream.
  const input = await makeVideo(path.join(dir, "fake-mp3.mkv"), {
    extra: ["-metadata:s:a:0", "language=x): Audio: mp3, 1 Hz\n"],
  });
  const output = path.join(dir, "fake-mp3.mp3");
  const result = await transcode({ ffmpegPath, input, output, format: "matroska", timeoutSeconds: 30 });
  assert.equal(result.audio, "encode");
  assert.equal(result.copyAbandoned, "the mp3 muxer refused the stream as not MP3");
  const mp3 = await probe(output);
  assert.deepEqual(mp3.codecs, ["mp3", "mjpeg"]);
  assert.ok(Math.abs(mp3.durationSeconds - 2) < 0.1);
});

test("garbage named .mp3 fails as undecodable: no stream to copy, and encoding says why", async () => {
  const input = await makeGarbage(path.join(dir, "garbage.mp3"));
  await assert.rejects(
    transcode({
      ffmpegPath,
      input,
      output: path.join(dir, "garbage-mp3.mp3"),
      format: "mp3",
      timeoutSeconds: 30,
    }),
    (error) => error instanceof ConversionError && error.reason === "undecodable",
  );
});

test("a video without sound fails with a readable reason", async () => {
  const input = await makeVideo(path.join(dir, "silent.mp4"), { seconds: 1, audio: false });
  await assert.rejects(
    transcode({ ffmpegPath, input, output: path.join(dir, "silent.mp3"), format: "mov", timeoutSeconds: 30 }),
    (error) =>
      error instanceof ConversionError &&
      error.reason === "no-audio" &&
      error.message === "This file has no audio track, so there is nothing to convert to MP3.",
  );
});

test("garbage named .mp4 fails as undecodable", async () => {
  const input = await makeGarbage(path.join(dir, "garbage.mp4"));
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
  const input = await makeVideo(path.join(dir, "wrong-format.mp4"), { seconds: 1 });
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
  const input = await makeLongAudio(path.join(dir, "long.wav"), 120);
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

/**
 * A FLAC of 90 s of silence whose header claims `claimedSamples` samples (at 8 kHz; 0 = "unknown",
 * which ffmpeg lists as a duration of N/A): the container understates or hides the audio's length.
 */
async function flacWithClaimedLength(name: string, claimedSamples: number): Promise<string> {
  const file = await makeLavfiAudio(path.join(dir, name), "anullsrc=r=8000:cl=mono", 90, "flac");
  const bytes = await readFile(file);
  assert.equal(bytes.subarray(0, 4).toString("latin1"), "fLaC");
  // STREAMINFO's total sample count: the low 36 bits of the 8 bytes at offset 18.
  const packed = bytes.readBigUInt64BE(18);
  const lowBits = (1n << 36n) - 1n;
  bytes.writeBigUInt64BE((packed & ~lowBits) | BigInt(claimedSamples), 18);
  await writeFile(file, bytes);
  return file;
}

for (const [what, claimedSamples] of [
  ["hides its length", 0],
  ["claims 10 s", 10 * 8000],
] as const) {
  test(`MAX_AUDIO_SECONDS holds during the conversion when the container ${what}: ffmpeg stops a second past it and the conversion fails naming the limit`, async () => {
    const input = await flacWithClaimedLength(`claims-${claimedSamples}.flac`, claimedSamples);
    const output = path.join(dir, `claims-${claimedSamples}.mp3`);
    await assert.rejects(
      transcode({ ffmpegPath, input, output, format: "flac", timeoutSeconds: 60, maxSeconds: 60 }),
      (error) =>
        error instanceof ConversionError &&
        error.reason === "too-long" &&
        /longer than the limit of 1 min \(MAX_AUDIO_SECONDS=60\)/.test(error.message),
    );
    // The output ffmpeg wrote is bounded: 61 s (and a frame or two), not the 90 s of the input.
    const written = await probe(output);
    assert.ok(written.durationSeconds > 60 && written.durationSeconds < 61.5, `${written.durationSeconds}`);
  });
}

test("the time limit covers the probe and the copy as well", async () => {
  const input = await makeVbrMp3(path.join(dir, "limited.mp3"));
  await assert.rejects(
    transcode({
      ffmpegPath,
      input,
      output: path.join(dir, "limited.out.mp3"),
      format: "mp3",
      timeoutSeconds: 0.001,
    }),
    (error) => error instanceof ConversionError && error.reason === "timeout",
  );
});

test("a missing ffmpeg is an ordinary (retryable) error", async () => {
  const input = await makeVideo(path.join(dir, "any.mp4"), { seconds: 1 });
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
  const input = await makeLongAudio(path.join(dir, "abort.wav"), 60);
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

test("the conversion starts without a probe run when the listing gives the guessed command; else it starts again from the listing", async () => {
  // An ffmpeg that logs what each run writes (the MP3, the cover's JPEG, or nothing: a probe).
  const log = path.join(dir, "runs.log");
  const wrapper = path.join(dir, "ffmpeg-logging.sh");
  await writeFile(wrapper, `#!/bin/sh\nfor last; do :; done\necho "$last" >> '${log}'\nexec ffmpeg "$@"\n`);
  await chmod(wrapper, 0o755);
  const runs = async (input: string, options = {}) => {
    await writeFile(log, "");
    const output = path.join(dir, "guess.mp3");
    const result = await transcode({
      ffmpegPath: wrapper,
      input,
      output,
      format: "mov",
      timeoutSeconds: 30,
      fileName: "holiday.mp4",
      options,
    });
    const written = (await readFile(log, "utf8")).trim().split("\n");
    return { result, output, written: written.map((w) => path.extname(w)) };
  };

  const video = await makeVideo(path.join(dir, "guess.mp4"), { seconds: 2 });
  const plain = await runs(video);
  assert.deepEqual(plain.written.sort(), [".jpg", ".mp3"], "the conversion and the cover, no probe");
  assert.equal(plain.result.cover, true);
  assert.equal((await mp3Tags(plain.output)).title, "holiday", "the file name as the title");

  // Its own title: the guessed command (the file name as the title) is stopped after the listing.
  const titled = path.join(dir, "titled.mp4");
  await run("ffmpeg", ["-v", "error", "-y", "-i", video, "-c", "copy", "-metadata", "title=Own", titled]);
  const own = await runs(titled, { cover: "none" });
  assert.deepEqual(own.written, [".mp3", ".mp3"], "stopped, then the conversion with the right plan");
  assert.equal((await mp3Tags(own.output)).title, "Own");
  assert.ok(Math.abs((await probe(own.output)).durationSeconds - 2) < 0.1);

  // A trim needs the listing first: a probe run, then the conversion.
  const trimmed = await runs(video, { start: 1, cover: "none" });
  assert.equal(trimmed.written.length, 2);
  assert.equal(trimmed.written[1], ".mp3");
  assert.notEqual(trimmed.written[0], ".mp3", "a probe writes nothing");
});

async function mp3Tags(file: string): Promise<Record<string, string>> {
  const { stdout } = await run("ffprobe", [
    "-v",
    "error",
    "-show_entries",
    "format_tags",
    "-of",
    "json",
    file,
  ]);
  return (JSON.parse(stdout) as { format: { tags?: Record<string, string> } }).format.tags ?? {};
}
