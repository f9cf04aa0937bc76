import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import {
  decodedSeconds,
  loudness,
  makeRichVideo,
  makeVbrMp3,
  makeVideo,
  mp3Details,
  pictureBrightness,
} from "../../test/support/media.ts";
import type { ConversionOptions } from "../contracts/options.ts";
import { ConversionError, type TranscodeResult, transcode } from "./transcode.ts";

/**
 * Each conversion option, applied by real ffmpeg and checked on the MP3 with ffprobe and ffmpeg's
 * ebur128 filter.
 */

const run = promisify(execFile);
/** One MP3 frame at 44.1 kHz: how close a trimmed length must come. */
const FRAME_SECONDS = 1152 / 44100;

let dir: string;
let rich: string;
let outputs = 0;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-options-"));
  rich = await makeRichVideo(path.join(dir, "rich.mkv"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function convert(
  options: ConversionOptions,
  { input = rich, format = "matroska", fileName = "My Holiday.mkv", onProgress = (_: number) => {} } = {},
): Promise<{ output: string; result: TranscodeResult }> {
  outputs += 1;
  const output = path.join(dir, `out-${outputs}.mp3`);
  const result = await transcode({
    ffmpegPath: "ffmpeg",
    input,
    output,
    format,
    timeoutSeconds: 60,
    options,
    fileName,
    onProgress,
  });
  return { output, result };
}

describe("quality", () => {
  test("a CBR quality gives that constant bit rate", async () => {
    const { output } = await convert({ quality: "320k" });
    assert.equal((await mp3Details(output)).audio.bitRate, 320_000);
    const { output: low } = await convert({ quality: "128k" });
    assert.equal((await mp3Details(low)).audio.bitRate, 128_000);
  });

  test("VBR v0 spends more bits than v9", async () => {
    const [best, smallest] = await Promise.all([convert({ quality: "v0" }), convert({ quality: "v9" })]);
    const [bestRate, smallestRate] = await Promise.all([
      mp3Details(best.output).then((d) => d.audio.bitRate),
      mp3Details(smallest.output).then((d) => d.audio.bitRate),
    ]);
    assert.ok(bestRate > smallestRate * 1.5, `v0 ${bestRate} b/s, v9 ${smallestRate} b/s`);
  });

  test("an MP3 source is copied by default but encoded when a quality is asked for", async () => {
    const mp3 = await makeVbrMp3(path.join(dir, "source.mp3"));
    const copied = await convert({}, { input: mp3, format: "mp3" });
    assert.equal(copied.result.audio, "copy");
    const encoded = await convert({ quality: "128k" }, { input: mp3, format: "mp3" });
    assert.equal(encoded.result.audio, "encode");
    assert.equal((await mp3Details(encoded.output)).audio.bitRate, 128_000);
  });
});

describe("start and end", () => {
  test("keep exactly that part (within a frame), with progress to 1 and chapters shifted and cut", async () => {
    const fractions: number[] = [];
    const { output, result } = await convert(
      { start: 1.5, end: 4.5 },
      { onProgress: (fraction) => fractions.push(fraction) },
    );
    const seconds = await decodedSeconds(output);
    assert.ok(Math.abs(seconds - 3) <= FRAME_SECONDS, `${seconds} s`);
    assert.ok(result.durationSeconds !== null && Math.abs(result.durationSeconds - 3) < 0.1);
    assert.equal(fractions.at(-1), 1);
    const { chapters } = await mp3Details(output);
    assert.deepEqual(
      chapters.map((c) => [c.title, round(c.start), round(c.end)]),
      [
        ["Intro", 0, 0.5],
        ["Middle", 0.5, 2.5],
        ["End", 2.5, 3],
      ],
    );
  });

  test("only a start keeps the rest; only an end keeps the beginning", async () => {
    const [fromFour, toTwo] = await Promise.all([convert({ start: 4 }), convert({ end: 2 })]);
    // The source's AAC track runs a little past 6 s: the rest is what it has after 4 s.
    const whole = await decodedSeconds(rich);
    const rest = await decodedSeconds(fromFour.output);
    assert.ok(Math.abs(rest - (whole - 4)) <= FRAME_SECONDS, `${rest} s of ${whole} s`);
    assert.ok(Math.abs((await decodedSeconds(toTwo.output)) - 2) <= FRAME_SECONDS);
    // A chapter that only touches the cut is gone, not left with no length.
    assert.deepEqual(
      (await mp3Details(fromFour.output)).chapters.map((c) => [c.title, round(c.start), round(c.end)]),
      [["End", 0, 2]],
    );
    assert.deepEqual(
      (await mp3Details(toTwo.output)).chapters.map((c) => [c.title, round(c.start), round(c.end)]),
      [["Intro", 0, 2]],
    );
  });

  test("a start at or past the end of the file fails the job with a sentence", async () => {
    await assert.rejects(
      convert({ start: 7 }),
      (error) =>
        error instanceof ConversionError &&
        error.reason === "trim-out-of-range" &&
        /start \(0:07\).*end of the file \(0:06/.test(error.message),
    );
  });
});

describe("loudness and channels", () => {
  test("normalize brings a quiet file to −16 LUFS (±1 LU) with the true peak at most −1.5 dBTP", async () => {
    const quiet = path.join(dir, "quiet.m4a");
    await run("ffmpeg", [
      ...["-nostdin", "-v", "error", "-y"],
      ...["-f", "lavfi", "-i", "sine=frequency=440:duration=6,volume=0.03"],
      ...["-f", "lavfi", "-i", "anoisesrc=d=6:a=0.01"],
      ...["-filter_complex", "[0][1]amix=inputs=2", "-c:a", "aac", quiet],
    ]);
    const before = await loudness(quiet);
    assert.ok(before.integrated < -30, `the source is quiet: ${before.integrated} LUFS`);
    const fractions: number[] = [];
    const { output, result } = await convert(
      { normalize: true },
      { input: quiet, format: "mov", onProgress: (fraction) => fractions.push(fraction) },
    );
    assert.equal(result.normalized, true);
    const after = await loudness(output);
    assert.ok(Math.abs(after.integrated - -16) <= 1, `${after.integrated} LUFS`);
    // MP3 encoding itself moves peaks by a few tenths of a dB.
    assert.ok(after.truePeak <= -1.5 + 0.5, `${after.truePeak} dBTP`);
    assert.equal((await mp3Details(output)).audio.sampleRate, 44100, "back to the source's rate");
    assert.ok(
      fractions.some((f) => f > 0 && f <= 0.5),
      "the measuring pass fills the first half",
    );
    assert.equal(fractions.at(-1), 1);
  });

  test("normalize with mono sets the mono signal: −16 LUFS (±1 LU) and at most −1.5 dBTP whatever the stereo was", async () => {
    // Two unrelated channels lose 3 LU in a downmix, two equal ones gain 3 dB of peak: normalising
    // the stereo signal and downmixing after would miss either target.
    const unrelated = path.join(dir, "unrelated.m4a");
    await run("ffmpeg", [
      ...["-nostdin", "-v", "error", "-y"],
      ...[
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=d=6:a=0.3:seed=1",
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=d=6:a=0.3:seed=2",
      ],
      ...["-filter_complex", "[0][1]join=inputs=2:channel_layout=stereo", "-c:a", "aac", unrelated],
    ]);
    // A quiet tone with short loud clicks, the same in both channels: the true-peak limit decides.
    const clicks = path.join(dir, "clicks.wav");
    await run("ffmpeg", [
      ...["-nostdin", "-v", "error", "-y", "-f", "lavfi"],
      ...["-i", "aevalsrc='0.05*sin(2*PI*440*t)+if(lt(mod(t,1),0.002),0.9,0)':d=6:s=44100"],
      ...["-ac", "2", "-c:a", "pcm_s16le", clicks],
    ]);
    for (const [input, format] of [
      [unrelated, "mov"],
      [clicks, "wav"],
    ] as const) {
      const { output } = await convert({ normalize: true, mono: true }, { input, format });
      assert.equal((await mp3Details(output)).audio.channels, 1);
      const after = await loudness(output);
      assert.ok(Math.abs(after.integrated - -16) <= 1, `${input}: ${after.integrated} LUFS`);
      assert.ok(after.truePeak <= -1.5 + 0.5, `${input}: ${after.truePeak} dBTP`);
    }
  });

  test("mono gives one channel; the default keeps the source's", async () => {
    const { output } = await convert({ mono: true, track: "eng" });
    assert.equal((await mp3Details(output)).audio.channels, 1);
    const { output: stereo } = await convert({ track: "eng" });
    assert.equal((await mp3Details(stereo)).audio.channels, 2);
  });
});

describe("track", () => {
  test("by number or by ISO 639-2 language (either code of a language); the first by default", async () => {
    // The French track is mono, the English one stereo.
    const channels = async (options: ConversionOptions) =>
      (await mp3Details((await convert({ ...options, cover: "none" })).output)).audio.channels;
    assert.equal(await channels({}), 1);
    assert.equal(await channels({ track: 1 }), 2);
    assert.equal(await channels({ track: "eng" }), 2);
    assert.equal(await channels({ track: "fra" }), 1, "fra finds the track tagged fre");
  });

  test("a track the file does not have fails the job with a sentence saying what it has", async () => {
    await assert.rejects(
      convert({ track: 2 }),
      (error) =>
        error instanceof ConversionError &&
        error.reason === "no-such-track" &&
        error.message ===
          "This file has no audio track number 2 (tracks are counted from 0). It has 2 audio tracks (numbered 0 to 1). Its tracks' languages: fre, eng.",
    );
    await assert.rejects(
      convert({ track: "jpn" }),
      (error) =>
        error instanceof ConversionError &&
        /no audio track in the language "jpn".*fre, eng/.test(error.message),
    );
  });
});

describe("tags", () => {
  test("the source's tags by default; given ones replace them", async () => {
    const { output } = await convert({});
    const source = (await mp3Details(output)).tags;
    assert.equal(source.title, "Source Title");
    assert.equal(source.artist, "Source Artist");
    const { output: tagged } = await convert({ title: "Näme “quoted” = x", artist: "Me", album: "Trips" });
    const tags = (await mp3Details(tagged)).tags;
    assert.equal(tags.title, "Näme “quoted” = x");
    assert.equal(tags.artist, "Me");
    assert.equal(tags.album, "Trips");
  });

  test("without a title of its own the file's name becomes the title", async () => {
    const plain = await makeVideo(path.join(dir, "plain.mp4"));
    const { output } = await convert({}, { input: plain, format: "mov", fileName: "Beach day.mp4" });
    assert.equal((await mp3Details(output)).tags.title, "Beach day");
  });
});

describe("cover", () => {
  test("a video gets a representative frame, not its black opening, as the ID3 front cover", async () => {
    const { output, result } = await convert({});
    assert.equal(result.cover, true);
    const { picture } = await mp3Details(output);
    assert.deepEqual(picture, { codec: "mjpeg", comment: "Cover (front)" });
    const brightness = await pictureBrightness(output);
    assert.ok(brightness > 40, `mean brightness ${brightness} of 255`);
    // The measure tells black: the source's first frame is.
    assert.ok((await pictureBrightness(rich)) < 20);
    // The frame comes from the part kept: trimmed to the black opening, black is all there is.
    const { output: black } = await convert({ end: 0.9 });
    assert.ok((await pictureBrightness(black)) < 20);
  });

  test("cover none leaves the picture out; a file without video gets none either", async () => {
    const { output } = await convert({ cover: "none" });
    assert.equal((await mp3Details(output)).picture, undefined);
    const mp3 = await makeVbrMp3(path.join(dir, "no-video.mp3"));
    const { output: audioOnly, result } = await convert({}, { input: mp3, format: "mp3" });
    assert.equal(result.cover, false);
    assert.equal((await mp3Details(audioOnly)).picture, undefined);
  });
});

describe("cover art of an audio file", () => {
  test("an audio file's own picture becomes the front cover, copied or encoded; cover none leaves it out", async () => {
    const art = path.join(dir, "art.png");
    await run("ffmpeg", [
      ...["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=200x200:duration=1"],
      ...["-frames:v", "1", art],
    ]);
    const song = path.join(dir, "song-with-art.mp3");
    await run("ffmpeg", [
      ...["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=4", "-i", art],
      ...["-map", "0:a", "-map", "1:v", "-c:a", "libmp3lame", "-c:v", "mjpeg"],
      ...["-disposition:v:0", "attached_pic", "-id3v2_version", "3", song],
    ]);
    for (const options of [{}, { quality: "128k" }] as const) {
      const { output, result } = await convert(options, { input: song, format: "mp3" });
      assert.equal(result.cover, true, JSON.stringify(options));
      assert.deepEqual((await mp3Details(output)).picture, { codec: "mjpeg", comment: "Cover (front)" });
      assert.ok((await pictureBrightness(output)) > 40, "the test picture, not a black one");
    }
    const { output, result } = await convert({ cover: "none" }, { input: song, format: "mp3" });
    assert.equal(result.cover, false);
    assert.equal((await mp3Details(output)).picture, undefined);
  });
});

describe("chapters", () => {
  test("kept as ID3 chapter frames by default, dropped on request", async () => {
    const { output } = await convert({});
    assert.deepEqual(
      (await mp3Details(output)).chapters.map((c) => [c.title, round(c.start), round(c.end)]),
      [
        ["Intro", 0, 2],
        ["Middle", 2, 4],
        ["End", 4, 6],
      ],
    );
    const { output: dropped } = await convert({ chapters: "drop" });
    assert.deepEqual((await mp3Details(dropped)).chapters, []);
  });
});

test("every option at once", async () => {
  const { output } = await convert({
    quality: "192k",
    start: 1,
    end: 5,
    normalize: true,
    mono: true,
    track: "eng",
    title: "All",
    artist: "Of",
    album: "Them",
    cover: "frame",
    chapters: "keep",
  });
  const details = await mp3Details(output);
  assert.equal(details.audio.bitRate, 192_000);
  assert.equal(details.audio.channels, 1);
  assert.deepEqual([details.tags.title, details.tags.artist, details.tags.album], ["All", "Of", "Them"]);
  assert.ok(details.picture);
  assert.equal(details.chapters.length, 3);
  assert.ok(Math.abs((await decodedSeconds(output)) - 4) <= FRAME_SECONDS);
  assert.ok(Math.abs((await loudness(output)).integrated - -16) <= 1);
});

const round = (seconds: number): number => Math.round(seconds * 1000) / 1000;
