import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import {
  decodeSamples,
  loudness,
  makeNoise,
  makeSweep,
  mp3Details,
  probe,
} from "../../test/support/media.ts";
import type { Quality } from "../contracts/options.ts";
import { buildFfmpegArgs } from "./ffmpeg-args.ts";
import { withFrontCover } from "./id3-picture.ts";
import { frameSamples, id3v2Length, parseFrameHeader } from "./mp3-frames.ts";
import { encodeInSegments, type SegmentedEncodeResult } from "./parallel-encode.ts";
import { transcode } from "./transcode.ts";
import { readDelayPadding, readXingFrames } from "./xing.ts";

const run = promisify(execFile);
const ffmpegPath = "ffmpeg";
let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-segments-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The head of an MP3 as ffmpeg writes it: ID3v2 tag and Xing frame. */
async function head(file: string): Promise<{ tag: Buffer; xing: Buffer }> {
  const bytes = await readFile(file);
  const tagLength = id3v2Length(bytes);
  const header = parseFrameHeader(bytes, tagLength);
  assert.ok(header, `${file}: a frame after the tag`);
  return { tag: bytes.subarray(0, tagLength), xing: bytes.subarray(tagLength, tagLength + header.length) };
}

function rms(a: Float32Array, b: Float32Array | null, from: number, to: number): number {
  let sum = 0;
  for (let i = from; i < to; i++) {
    const d = (a[i] as number) - (b ? (b[i] as number) : 0);
    sum += d * d;
  }
  return Math.sqrt(sum / (to - from));
}

function maxDifference(a: Float32Array, b: Float32Array, from: number, to: number): number {
  let max = 0;
  for (let i = from; i < to; i++) max = Math.max(max, Math.abs((a[i] as number) - (b[i] as number)));
  return max;
}

/** Decodes `file` with ffmpeg stopping at the first error (`-xerror`): not one error or warning. */
async function assertDecodesCleanly(file: string): Promise<void> {
  const { stderr } = await run("ffmpeg", [
    "-nostdin",
    "-v",
    "error",
    "-xerror",
    "-i",
    file,
    "-f",
    "null",
    "-",
  ]);
  assert.equal(stderr, "");
}

/** Frames either side of a join whose decoded samples are compared. */
const WINDOW_FRAMES = 8;

/**
 * Encodes `source` in one run (the reference) and in segments, and checks the segmented file:
 * it decodes without a single error; it has the single run's tag, frame count, encoder delay and
 * padding, so the same length to the sample; and around every join its decoded samples match the
 * single run's. What "match" means, and why:
 *
 * - LAME's VBR modes decode to identical samples (their quantization does not depend on the bit
 *   reservoir's fill, and the encoder has settled within the pre-roll). In CBR each segment's
 *   reservoir fills differently from the single run's, so a segment is a slightly different but
 *   equally good encoding of the same audio, near a join or not: the difference is a plateau over
 *   the segment, not a peak at the join.
 * - The yardstick is the encoder's own error in the same window (the single run's decode against
 *   the source): what its psychoacoustic model let through as inaudible. Over ±8 frames the
 *   difference must stay under it in RMS and in its largest sample (a click is a spike standing
 *   out of the coding noise).
 * - A click at the join itself: the two frames that meet there must not differ more than 1.5× the
 *   worst frame nearby (frames 2 to 8 away on either side), unless they are 20 dB under the
 *   encoder's error (adding −20 dB to masked noise changes it by 0.04 dB).
 */
async function assertSeamless(
  name: string,
  source: string,
  quality: Quality,
  { workers = 4, cover }: { workers?: number; cover?: Buffer } = {},
): Promise<SegmentedEncodeResult> {
  const single = path.join(dir, `${name}.single.mp3`);
  const segmented = path.join(dir, `${name}.segmented.mp3`);
  const plan = { audioStream: 0, quality };
  // The reference: the converter's single-run command line, as it is.
  await run(ffmpegPath, buildFfmpegArgs({ input: source, output: single, format: "wav", plan }));
  const reference = await probe(single);
  const { stdout } = await run("ffprobe", [
    ...["-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate,channels"],
    ...["-of", "csv=p=0", single],
  ]);
  const [sampleRate, channels] = stdout.trim().split(",").map(Number) as [number, 1 | 2];
  const result = await encodeInSegments({
    ffmpegPath,
    conversion: { input: source, output: segmented, format: "wav", plan },
    pcm: { sampleRate, channels },
    estimatedSeconds: reference.durationSeconds,
    workers,
    cover: Promise.resolve(cover),
    deadline: performance.now() + 120_000,
    minSegmentSeconds: 4,
  });
  assert.ok(result.joins.length >= 3, `${result.joins.length} joins`);

  await assertDecodesCleanly(segmented);

  const [ours, theirs] = [await head(segmented), await head(single)];
  // Byte for byte, with the cover picture (APIC) where a single run's file gets it (see id3-picture.test.ts).
  assert.deepEqual(ours.tag, cover ? withFrontCover(theirs.tag, cover) : theirs.tag, "the same ID3v2 tag");
  assert.equal(readXingFrames(ours.xing), readXingFrames(theirs.xing), "the same frame count");
  assert.deepEqual(readDelayPadding(ours.xing), readDelayPadding(theirs.xing), "the same delay and padding");
  const frameSeconds = frameSamples(sampleRate) / sampleRate;
  const durations = [(await probe(segmented)).durationSeconds, reference.durationSeconds];
  assert.ok(Math.abs((durations[0] as number) - (durations[1] as number)) < frameSeconds, `${durations}`);

  const [original, one, joined] = await Promise.all([
    decodeSamples(source, channels),
    decodeSamples(single, channels),
    decodeSamples(segmented, channels),
  ]);
  assert.equal(joined.length, one.length, "gapless: the same number of samples");
  assert.equal(one.length, original.length);
  assert.equal(result.durationSeconds, one.length / channels / sampleRate, "the length it reports");
  // Decoded sample n (after the gapless trim of delay + the decoder's 529) is frame ⌊(n + skip) / spf⌋.
  const skip = (readDelayPadding(theirs.xing)?.delay ?? 0) + 529;
  const spf = frameSamples(sampleRate) * channels;
  const frameRms = (frame: number, k: number) => {
    const start = (frame + k) * spf - skip * channels;
    return rms(joined, one, start, start + spf);
  };
  for (const { frame } of result.joins) {
    const [from, to] = [
      (frame - WINDOW_FRAMES) * spf - skip * channels,
      (frame + WINDOW_FRAMES) * spf - skip * channels,
    ];
    const codecError = { rms: rms(one, original, from, to), max: maxDifference(one, original, from, to) };
    const difference = { rms: rms(joined, one, from, to), max: maxDifference(joined, one, from, to) };
    const atJoin = Math.max(frameRms(frame, -1), frameRms(frame, 0));
    const nearby = Math.max(...[-8, -7, -6, -5, -4, -3, 2, 3, 4, 5, 6, 7].map((k) => frameRms(frame, k)));
    const report = JSON.stringify({ frame, difference, codecError, atJoin, nearby });
    assert.ok(codecError.rms > 0, "the encoder is lossy here");
    assert.ok(difference.rms <= codecError.rms, report);
    assert.ok(difference.max <= codecError.max, report);
    assert.ok(atJoin <= Math.max(1.5 * nearby, 0.1 * codecError.rms), report);
  }
  return result;
}

describe("segmented encoding joins into one seamless MP3", () => {
  test("sine sweep, VBR V2, 44.1 kHz stereo", async () => {
    await assertSeamless("sweep-v2", await makeSweep(path.join(dir, "sweep.wav"), { seconds: 24 }), "v2");
  });

  test("white noise, VBR V2, with a cover picture: the tag is the single run's, picture included", async () => {
    const coverFile = path.join(dir, "cover.jpg");
    await run("ffmpeg", [
      ...["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x240"],
      ...["-frames:v", "1", "-c:v", "mjpeg", "-f", "mjpeg", coverFile],
    ]);
    const source = await makeNoise(path.join(dir, "noise.wav"), { seconds: 24 });
    await assertSeamless("noise-v2", source, "v2", { cover: await readFile(coverFile) });
    const details = await mp3Details(path.join(dir, "noise-v2.segmented.mp3"));
    assert.deepEqual(details.picture, { codec: "mjpeg", comment: "Cover (front)" });
  });

  test("white noise, CBR 128k: the bit reservoir is carried across joins", async () => {
    const result = await assertSeamless(
      "noise-128k",
      await makeNoise(path.join(dir, "noise.wav"), { seconds: 24 }),
      "128k",
    );
    assert.ok(
      result.joins.some((join) => join.carried > 0),
      JSON.stringify(result.joins),
    );
  });

  test("sine sweep, CBR 320k, 48 kHz", async () => {
    const source = await makeSweep(path.join(dir, "sweep48.wav"), { seconds: 24, sampleRate: 48000 });
    await assertSeamless("sweep-320k", source, "320k");
  });

  test("sine sweep, VBR V5, 22.05 kHz mono (MPEG-2: 576-sample frames)", async () => {
    const source = await makeSweep(path.join(dir, "sweep22.wav"), {
      seconds: 24,
      sampleRate: 22050,
      channels: 1,
    });
    await assertSeamless("sweep-mono", source, "v5");
  });
});

describe("a stream shorter than its container said", () => {
  test("a segment encoded before the decoder ended is encoded again when the new plan changes it", async () => {
    // 24 s of audio announced as 28: the plan's last join (frame 892) falls in the real stream's
    // last 64 frames, so it is dropped once the length is known, and the segment before it, which
    // had ended at frame 904, must run to the end instead. The decoder's end is reported a second
    // late, so that segment is surely encoded by then.
    const source = await makeSweep(path.join(dir, "short-sweep.wav"), { seconds: 24 });
    const lateDecoder = path.join(dir, "late-decoder-ffmpeg");
    await writeFile(
      lateDecoder,
      '#!/bin/sh\ncase "$*" in *pcm_f32le*) ffmpeg "$@"; code=$?; sleep 1; exit $code;; esac\nexec ffmpeg "$@"\n',
    );
    await chmod(lateDecoder, 0o755);
    const output = path.join(dir, "replanned.mp3");
    const result = await encodeInSegments({
      ffmpegPath: lateDecoder,
      conversion: { input: source, output, format: "wav", plan: { audioStream: 0 } },
      pcm: { sampleRate: 44100, channels: 2 },
      estimatedSeconds: 28,
      workers: 2,
      deadline: performance.now() + 120_000,
      minSegmentSeconds: 4,
    });
    assert.equal(result.segments, 4, "the plan's five segments less the dropped one");
    assert.equal(result.durationSeconds, 24);
    await assertDecodesCleanly(output);
    assert.equal((await decodeSamples(output, 2)).length, 24 * 44100 * 2, "every sample, gapless");
  });
});

describe("transcode segments a long input", () => {
  const segmenting = { workers: 2, minSeconds: 120 };
  let long: string;
  before(async () => {
    long = await makeSweep(path.join(dir, "long.wav"), { seconds: 130, channels: 1 });
  });
  /** A 130 s video of the long sweep and an 880 Hz tone (two audio tracks), with two chapters. */
  let video: Promise<string> | undefined;
  const chapteredVideo = (): Promise<string> => {
    video ??= (async () => {
      const file = path.join(dir, "long-video.mkv");
      const chapters = path.join(dir, "long-video.ffmetadata");
      const chapter = (title: string, start: number, end: number) =>
        `[CHAPTER]\nTIMEBASE=1/1000\nSTART=${start * 1000}\nEND=${end * 1000}\ntitle=${title}\n`;
      await writeFile(chapters, `;FFMETADATA1\n${chapter("One", 0, 60)}${chapter("Two", 60, 130)}`);
      await run("ffmpeg", [
        ...["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=2:duration=130"],
        ...["-i", long, "-f", "lavfi", "-i", "sine=frequency=880:duration=130", "-i", chapters],
        ...["-map", "0:v", "-map", "1:a", "-map", "2:a", "-map_chapters", "3"],
        ...["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", file],
      ]);
      return file;
    })();
    return video;
  };
  /** Options for converting the 130 s input to `name`, segmenting as configured above. */
  const converting = (name: string, extra: Partial<Parameters<typeof transcode>[0]> = {}) => ({
    ffmpegPath,
    input: long,
    output: path.join(dir, name),
    format: "wav",
    timeoutSeconds: 120,
    segmenting,
    ...extra,
  });

  test("at or above the minimum it is segmented; the result is one valid MP3 of the input's length", async () => {
    const fractions: number[] = [];
    const options = converting("long.mp3", { onProgress: (fraction) => fractions.push(fraction) });
    const { output } = options;
    const result = await transcode(options);
    assert.equal(result.segments, 2);
    assert.equal(result.segmentingAbandoned, undefined);
    assert.equal(result.durationSeconds, 130);
    assert.equal(fractions.at(-1), 1);
    assert.ok(
      fractions.some((f) => f > 0.3 && f < 1),
      "progress while the segments encode",
    );
    await assertDecodesCleanly(output);
    assert.equal((await decodeSamples(output, 1)).length, 130 * 44100);
    await assert.rejects(stat(`${output}.segments`), { code: "ENOENT" }, "scratch files removed");
  });

  test("below the minimum, or with one worker, it is encoded in one run", async () => {
    const input = await makeSweep(path.join(dir, "short.wav"), { seconds: 20, channels: 1 });
    const output = path.join(dir, "short.mp3");
    const short = await transcode({
      ffmpegPath,
      input,
      output,
      format: "wav",
      timeoutSeconds: 60,
      segmenting,
    });
    assert.equal(short.segments, undefined);
    const one = await transcode({
      ffmpegPath,
      input: long,
      output,
      format: "wav",
      timeoutSeconds: 60,
      segmenting: { workers: 1, minSeconds: 0 },
    });
    assert.equal(one.segments, undefined);
    // What counts is the output's length: a long input trimmed to a minute is one run.
    const trimmed = await transcode({ ...converting("trimmed-short.mp3"), options: { end: 60 } });
    assert.equal(trimmed.segments, undefined);
  });

  test("the user's quality and tags are honoured on the segmented path", async () => {
    const options = converting("options.mp3", {
      options: { quality: "128k", title: "Long Sweep", artist: "Tester" },
    });
    const result = await transcode(options);
    assert.equal(result.segments, 2);
    const details = await mp3Details(options.output);
    assert.equal(details.tags.title, "Long Sweep");
    assert.equal(details.tags.artist, "Tester");
    assert.ok(Math.abs(details.audio.bitRate - 128_000) < 2_000, `${details.audio.bitRate}`);
    assert.equal((await decodeSamples(options.output, 1)).length, 130 * 44100);
  });

  test("a video's track choice, chapters (kept or dropped) and cover are honoured on the segmented path", async () => {
    const video = await chapteredVideo();
    const options = converting("video.mp3", {
      input: video,
      format: "matroska",
      options: { track: 1, mono: true, cover: "none" },
    });
    const result = await transcode(options);
    assert.equal(result.segments, 2);
    assert.equal(result.cover, false);
    const details = await mp3Details(options.output);
    assert.equal(details.audio.channels, 1);
    assert.deepEqual(
      details.chapters.map((c) => c.title),
      ["One", "Two"],
    );
    await assertDecodesCleanly(options.output);

    const dropped = converting("video-no-chapters.mp3", {
      input: video,
      format: "matroska",
      options: { chapters: "drop", cover: "none" },
    });
    assert.equal((await transcode(dropped)).segments, 2);
    assert.deepEqual((await mp3Details(dropped.output)).chapters, [], "chapters dropped");

    const covered = converting("video-cover.mp3", {
      input: video,
      format: "matroska",
      options: { track: 1 },
    });
    const withCover = await transcode(covered);
    assert.equal(withCover.segments, 2);
    assert.equal(withCover.segmentingAbandoned, undefined);
    assert.equal(withCover.cover, true);
    const coverDetails = await mp3Details(covered.output);
    assert.deepEqual(coverDetails.picture, { codec: "mjpeg", comment: "Cover (front)" });
    assert.deepEqual(
      coverDetails.chapters.map((c) => c.title),
      ["One", "Two"],
    );
    await assertDecodesCleanly(covered.output);
    // Gapless: behind the longer tag, the Xing/LAME frame still makes decoders trim the encoder's
    // delay and padding exactly as in the single run's file.
    const single = converting("video-cover-single.mp3", {
      input: video,
      format: "matroska",
      options: { track: 1 },
      segmenting: { workers: 1, minSeconds: 120 },
    });
    assert.equal((await transcode(single)).segments, undefined);
    const [ours, theirs] = [await head(covered.output), await head(single.output)];
    assert.deepEqual(ours.tag, theirs.tag, "the same ID3v2 tag, picture included");
    assert.deepEqual(readDelayPadding(ours.xing), readDelayPadding(theirs.xing));
    assert.equal(
      (await decodeSamples(covered.output, 1)).length,
      (await decodeSamples(single.output, 1)).length,
    );
  });

  test("a trim (its chapters cut and shifted) and loudness normalisation give the single run's tag and samples", async () => {
    const video = await chapteredVideo();
    const progress: number[] = [];
    for (const [name, chosen] of [
      ["trim", { start: 5, end: 128 }],
      ["normalize", { normalize: true }],
      ["trim-normalize", { start: 8, normalize: true, track: 1, cover: "none" }],
    ] as const) {
      const both = { input: video, format: "matroska", options: chosen };
      const segmented = converting(`${name}.mp3`, {
        ...both,
        onProgress: (fraction) => progress.push(fraction),
      });
      const single = converting(`${name}-single.mp3`, {
        ...both,
        segmenting: { workers: 1, minSeconds: 120 },
      });
      const result = await transcode(segmented);
      assert.equal(result.segments, 2, name);
      assert.equal(result.segmentingAbandoned, undefined, name);
      assert.equal(result.normalized, "normalize" in chosen, name);
      assert.equal(progress.at(-1), 1);
      assert.ok(
        progress.every((f, i) => i === 0 || f > (progress[i - 1] as number)),
        "progress only grows",
      );
      progress.length = 0;
      assert.equal((await transcode(single)).segments, undefined);

      await assertDecodesCleanly(segmented.output);
      const [ours, theirs] = [await head(segmented.output), await head(single.output)];
      assert.deepEqual(ours.tag, theirs.tag, `${name}: the same ID3v2 tag (chapters, cover)`);
      assert.deepEqual(readDelayPadding(ours.xing), readDelayPadding(theirs.xing));
      const [joined, one] = [await decodeSamples(segmented.output, 1), await decodeSamples(single.output, 1)];
      assert.equal(joined.length, one.length, `${name}: the same length to the sample`);
      // VBR V2 (the default) decodes to the very same samples (see the seamless tests above).
      assert.equal(maxDifference(joined, one, 0, one.length), 0, name);
    }
    const chapters = (await mp3Details(path.join(dir, "trim.mp3"))).chapters;
    assert.deepEqual(
      chapters.map((c) => [c.title, c.start, c.end]),
      [
        ["One", 0, 55],
        ["Two", 55, 123],
      ],
    );
  });

  test("mono and a track named by its language on the segmented path: the chosen stereo track, downmixed before it is normalised, as a single run makes it", async () => {
    // Track 0 is the mono sweep (fre), track 1 unrelated stereo noise (eng): the track is told by
    // its channels, and the downmix changes the loudness (two unrelated channels lose 3 LU).
    const noise = await makeNoise(path.join(dir, "long-noise.wav"), { seconds: 130 });
    const input = path.join(dir, "two-languages.mkv");
    await run("ffmpeg", [
      ...["-nostdin", "-v", "error", "-y", "-i", long, "-i", noise, "-map", "0:a", "-map", "1:a"],
      ...["-c:a", "flac", "-metadata:s:a:0", "language=fre", "-metadata:s:a:1", "language=eng", input],
    ]);
    const both = { input, format: "matroska" };
    const english = converting("eng.mp3", { ...both, options: { track: "eng" } });
    assert.equal((await transcode(english)).segments, 2);
    assert.equal((await mp3Details(english.output)).audio.channels, 2, "the English track is the stereo one");

    const chosen = { track: "eng", mono: true, normalize: true } as const;
    const segmented = converting("eng-mono.mp3", { ...both, options: chosen });
    const single = converting("eng-mono-single.mp3", {
      ...both,
      options: chosen,
      segmenting: { workers: 1, minSeconds: 120 },
    });
    const result = await transcode(segmented);
    assert.equal(result.segments, 2);
    assert.equal(result.segmentingAbandoned, undefined);
    assert.equal(result.normalized, true);
    assert.equal((await transcode(single)).segments, undefined);
    assert.equal((await mp3Details(segmented.output)).audio.channels, 1);
    assert.deepEqual(
      (await head(segmented.output)).tag,
      (await head(single.output)).tag,
      "the same ID3v2 tag",
    );
    const [joined, one] = [await decodeSamples(segmented.output, 1), await decodeSamples(single.output, 1)];
    assert.equal(joined.length, one.length, "the same length to the sample");
    assert.equal(maxDifference(joined, one, 0, one.length), 0, "the very same samples");
    const measured = await loudness(segmented.output);
    assert.ok(Math.abs(measured.integrated - -16) <= 1, `${measured.integrated} LUFS`);
    assert.ok(measured.truePeak <= -1.5 + 0.5, `${measured.truePeak} dBTP`);
  });

  test("MAX_AUDIO_SECONDS holds in the segmented decoding: it writes at most one second past the limit", async () => {
    const output = path.join(dir, "limited.mp3");
    const result = await encodeInSegments({
      ffmpegPath,
      conversion: { input: long, output, format: "wav", maxSeconds: 60 },
      pcm: { sampleRate: 44100, channels: 1 },
      estimatedSeconds: 130,
      workers: 2,
      deadline: performance.now() + 120_000,
    });
    // The decoder stops at 61 s, earlier than the plan made from the estimate: the joined file ends there.
    assert.ok(result.durationSeconds >= 60.9 && result.durationSeconds <= 61.1, `${result.durationSeconds}`);
    assert.ok((await decodeSamples(output, 1)).length <= 61.1 * 44100);
    await assertDecodesCleanly(output);
  });

  // An ffmpeg that fails one step of the segmented path (its arguments match `step`): the real one otherwise.
  const failing = [
    { what: "the decoding", step: "pcm_f32le", reason: /ffmpeg \(decoding\) exited with code 1.*refused/s },
    { what: "a segment", step: "segment-1.mp3", reason: /ffmpeg \(segment 1\) exited with code 1.*refused/s },
  ];
  for (const [index, { what, step, reason }] of failing.entries()) {
    test(`a segmented encode is done again in one run when ${what} fails`, async () => {
      // Names without `step` in them: only the step itself may fail.
      const wrapper = path.join(dir, `ffmpeg-failing-${index}.sh`);
      await writeFile(
        wrapper,
        `#!/bin/sh\ncase "$*" in *${step}*) echo "refused" >&2; exit 1;; esac\nexec ffmpeg "$@"\n`,
      );
      await chmod(wrapper, 0o755);
      const options = converting(`fallback-${index}.mp3`, { ffmpegPath: wrapper });
      const { output } = options;
      const result = await transcode(options);
      assert.equal(result.segments, undefined);
      assert.match(result.segmentingAbandoned ?? "", reason);
      assert.equal((await decodeSamples(output, 1)).length, 130 * 44100);
      await assert.rejects(stat(`${output}.segments`), { code: "ENOENT" });
    });
  }

  test("aborting stops every process of a segmented encode and removes its scratch files", async () => {
    const controller = new AbortController();
    const options = converting("aborted.mp3", {
      signal: controller.signal,
      onProgress: (fraction) => {
        if (fraction > 0) controller.abort(new Error("test stop"));
      },
    });
    const { output } = options;
    await assert.rejects(transcode(options), /conversion aborted/);
    await assert.rejects(stat(`${output}.segments`), { code: "ENOENT" });
  });
});
