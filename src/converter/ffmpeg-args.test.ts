import assert from "node:assert/strict";
import { test } from "node:test";
import { QUALITIES } from "../contracts/options.ts";
import { ConversionError } from "./conversion-error.ts";
import {
  buildDecodeArgs,
  buildFfmpegArgs,
  buildHeaderArgs,
  buildLoudnessArgs,
  buildProbeArgs,
  buildSegmentEncodeArgs,
} from "./ffmpeg-args.ts";

const args = buildFfmpegArgs({ input: "/work/in.mp4", output: "/work/out.mp3", format: "mov" });

/** The value following `flag`, searched from `from` (so input and output options can be told apart). */
function valueAfter(flag: string, from = 0): string | undefined {
  const at = args.indexOf(flag, from);
  return at === -1 ? undefined : args[at + 1];
}

const inputAt = args.indexOf("-i");

test("input options come before -i and limit ffmpeg to the sniffed demuxer on local files", () => {
  assert.ok(inputAt > 0);
  assert.equal(args[inputAt + 1], "file:/work/in.mp4");
  const inputOptions = args.slice(0, inputAt);
  assert.equal(inputOptions[inputOptions.indexOf("-protocol_whitelist") + 1], "file");
  assert.equal(inputOptions[inputOptions.indexOf("-f") + 1], "mov");
  assert.ok(inputOptions.includes("-nostdin"));
  assert.ok(inputOptions.includes("-hide_banner"));
});

test("the first audio stream is mapped explicitly and nothing else", () => {
  assert.equal(valueAfter("-map", inputAt), "0:a:0");
  assert.equal(args.filter((a) => a === "-map").length, 1);
  for (const flag of ["-vn", "-sn", "-dn"]) assert.ok(args.indexOf(flag) > inputAt, flag);
});

test("encodes by default: VBR MP3 with a Xing header into our own output, overwriting it", () => {
  assert.equal(valueAfter("-c:a", inputAt), "libmp3lame");
  assert.equal(valueAfter("-q:a", inputAt), "2");
  assert.equal(valueAfter("-write_xing", inputAt), "1");
  assert.equal(valueAfter("-f", inputAt), "mp3");
  assert.ok(args.includes("-y"));
  assert.equal(args.at(-1), "file:/work/out.mp3");
});

test("keeps the file's global tags but clears the container's technical ones", () => {
  assert.equal(valueAfter("-map_metadata", inputAt), "0:g");
  assert.ok(args.includes("major_brand="));
  assert.ok(args.includes("compatible_brands="));
});

test("reports progress on stdout instead of stats on stderr", () => {
  assert.equal(valueAfter("-progress"), "pipe:1");
  assert.ok(args.includes("-nostats"));
});

test("uses few threads on both sides, configurable", () => {
  assert.deepEqual(
    args.flatMap((a, i) => (a === "-threads" ? [args[i + 1]] : [])),
    ["1", "1"],
  );
  const four = buildFfmpegArgs({ input: "a", output: "b", format: "mov", threads: 4 });
  assert.equal(four[four.indexOf("-threads") + 1], "4");
});

test("relative paths and paths with colons become absolute file: URLs", () => {
  const a = buildFfmpegArgs({ input: "http:x.mp4", output: "out.mp3", format: "matroska" });
  assert.equal(a[a.indexOf("-i") + 1], `file:${process.cwd()}/http:x.mp4`);
  assert.equal(a.at(-1), `file:${process.cwd()}/out.mp3`);
});

test("refuses demuxers that read other files or URLs, and malformed names", () => {
  for (const format of ["hls", "concat", "dash", "lavfi", "image2", "Mov", "mov,mp4", "-i", ""]) {
    assert.throws(
      () => buildFfmpegArgs({ input: "a", output: "b", format }),
      (error) => error instanceof ConversionError && error.reason === "undecodable",
      format,
    );
  }
});

const copyArgs = buildFfmpegArgs({
  input: "/work/in.mp4",
  output: "/work/out.mp3",
  format: "mov",
  audio: "copy",
});
const copyInputAt = copyArgs.indexOf("-i");

test("encoding is the default, and says so when asked", () => {
  assert.deepEqual(
    buildFfmpegArgs({ input: "/work/in.mp4", output: "/work/out.mp3", format: "mov", audio: "encode" }),
    args,
  );
});

test("copy: the MP3 frames are copied instead of encoded, everything else is as for encoding", () => {
  assert.equal(copyArgs[copyArgs.indexOf("-c:a", copyInputAt) + 1], "copy");
  assert.ok(!copyArgs.includes("libmp3lame"));
  assert.ok(!copyArgs.includes("-q:a"));
  // Only the codec options differ: same hardened input, same mapping, tags, Xing header, output.
  const withoutCodec = (list: string[]) => {
    const at = list.indexOf("-c:a");
    const end = list[at + 1] === "copy" ? at + 2 : at + 4;
    return [...list.slice(0, at), ...list.slice(end)];
  };
  assert.deepEqual(withoutCodec(copyArgs), withoutCodec(args));
  assert.equal(copyArgs[copyArgs.indexOf("-map", copyInputAt) + 1], "0:a:0");
  assert.equal(copyArgs[copyArgs.indexOf("-write_xing", copyInputAt) + 1], "1");
  assert.equal(copyArgs[copyArgs.indexOf("-f", copyInputAt) + 1], "mp3");
  assert.equal(copyArgs[copyArgs.indexOf("-progress") + 1], "pipe:1");
});

test("the probe run opens the input exactly as the conversion does, and writes nothing", () => {
  const probeArgs = buildProbeArgs({ input: "/work/in.mp4", format: "mov" });
  assert.deepEqual(
    probeArgs,
    args
      .slice(0, inputAt + 2)
      .filter((a, i, all) => !["-nostats", "-progress"].includes(a) && all[i - 1] !== "-progress"),
  );
  assert.equal(probeArgs.at(-2), "-i", "no output options, no output file");
  assert.ok(probeArgs.includes("-nostdin"));
  assert.equal(probeArgs[probeArgs.indexOf("-protocol_whitelist") + 1], "file");
  assert.equal(probeArgs[probeArgs.indexOf("-f") + 1], "mov");
});

test("the probe refuses the same demuxers", () => {
  for (const format of ["hls", "concat", "Mov", ""]) {
    assert.throws(
      () => buildProbeArgs({ input: "a", format }),
      (error) => error instanceof ConversionError && error.reason === "undecodable",
      format,
    );
  }
});

test("options: the chosen stream and range, quality, mono, tags; our own chapters as a local-only input; no video out", () => {
  const a = buildFfmpegArgs({
    input: "/work/in.mkv",
    output: "/work/out.mp3",
    format: "matroska",
    plan: {
      audioStream: 2,
      quality: "320k",
      start: 60,
      end: 150.5,
      mono: true,
      tags: { title: "-i file:/etc/passwd", artist: undefined },
      chaptersFile: "/work/out.mp3.chapters.txt",
    },
  });
  const inputs = a.flatMap((arg, i) => (arg === "-i" ? [i] : []));
  assert.deepEqual(
    inputs.map((i) => a[i + 1]),
    ["file:/work/in.mkv", "file:/work/out.mp3.chapters.txt"],
  );
  // Every input is limited to local files and has its demuxer forced.
  for (const [n, format] of ["matroska", "ffmetadata"].entries()) {
    const options = a.slice(n === 0 ? 0 : (inputs[n - 1] ?? 0) + 2, inputs[n]);
    assert.equal(options[options.indexOf("-protocol_whitelist") + 1], "file", format);
    assert.equal(options[options.lastIndexOf("-f") + 1], format);
  }
  const first = a.slice(0, inputs[0]);
  assert.equal(first[first.indexOf("-ss") + 1], "60.000", "the start seeks the input");
  const output = a.slice((inputs[1] ?? 0) + 2);
  const after = (flag: string) => output[output.indexOf(flag) + 1];
  assert.equal(after("-map"), "0:a:2");
  assert.equal(after("-t"), "90.500", "the length, as an output option so chapters are cut too");
  assert.equal(after("-b:a"), "320k");
  assert.ok(!output.includes("-q:a"));
  assert.equal(after("-ac"), "1");
  assert.equal(after("-map_chapters"), "1");
  assert.ok(output.includes("title=-i file:/etc/passwd"), "a tag is one argument, never options");
  assert.ok(!output.some((arg) => arg.startsWith("artist=")));
  // The cover is put into the finished file's tag (id3-picture.ts), never an ffmpeg input.
  assert.ok(output.includes("-vn"));
  assert.ok(!output.includes("-disposition:v:0"));

  const vbr = buildFfmpegArgs({
    input: "a",
    output: "b",
    format: "mov",
    plan: { audioStream: 0, quality: "v9" },
  });
  assert.equal(vbr[vbr.indexOf("-q:a") + 1], "9");
  // Every quality: LAME's VBR level, or the constant bit rate itself.
  for (const quality of QUALITIES) {
    const encoded = buildFfmpegArgs({
      input: "a",
      output: "b",
      format: "mov",
      plan: { audioStream: 0, quality },
    });
    const [flag, value] = quality.startsWith("v") ? ["-q:a", quality.slice(1)] : ["-b:a", quality];
    assert.equal(encoded[encoded.indexOf(flag) + 1], value, quality);
  }
  // Normalising a mono output: both passes downmix before loudnorm, so it measures and sets what the MP3 holds.
  const loudness = { inputI: -30, inputTp: -10, inputLra: 5, inputThresh: -40, targetOffset: 0 };
  const monoPlan = { audioStream: 0, mono: true, loudness };
  const filters = (args: string[]) => args[args.indexOf("-af") + 1] ?? "";
  const conversionFilters = filters(
    buildFfmpegArgs({ input: "a", output: "b", format: "mov", plan: monoPlan }),
  );
  const measuringFilters = filters(buildLoudnessArgs({ input: "a", format: "mov", plan: monoPlan }));
  const decoderFilters = filters(
    buildDecodeArgs({
      input: "a",
      output: "b",
      format: "mov",
      plan: monoPlan,
      pcmFile: "p",
      pcm: { sampleRate: 44100, channels: 1 },
    }),
  );
  assert.equal(
    decoderFilters,
    conversionFilters,
    "a segmented encode's decoder filters as the single run does",
  );
  for (const chain of [conversionFilters, measuringFilters]) {
    assert.match(chain, /^aformat=channel_layouts=mono,loudnorm=/, chain);
  }
  assert.doesNotMatch(
    filters(buildLoudnessArgs({ input: "a", format: "mov", plan: { audioStream: 0 } })),
    /aformat/,
  );
  const dropped = buildFfmpegArgs({
    input: "a",
    output: "b",
    format: "mov",
    plan: { audioStream: 0, chapters: false },
  });
  assert.equal(dropped[dropped.indexOf("-map_chapters") + 1], "-1");
});

test("segmented encoding: the decoder takes the plan's stream, channels and MAX_AUDIO_SECONDS; the header run is the single run's command", () => {
  const plan = {
    audioStream: 1,
    quality: "320k" as const,
    mono: true,
    tags: { title: "T" },
  };
  const conversion = { input: "/work/in.mp4", output: "/work/out.mp3", format: "mov", maxSeconds: 60, plan };
  const decode = buildDecodeArgs({
    ...conversion,
    pcmFile: "/work/pcm",
    pcm: { sampleRate: 44100, channels: 1 },
  });
  assert.equal(decode[decode.indexOf("-map") + 1], "0:a:1");
  assert.equal(decode[decode.indexOf("-t") + 1], "61.000");
  assert.equal(decode.filter((a) => a === "-i").length, 1, "no other input in the decoder");
  assert.ok(!decode.includes("libmp3lame"));

  const single = buildFfmpegArgs(conversion);
  const header = buildHeaderArgs({ ...conversion, output: "/work/header.mp3" });
  // The same command but for progress reporting, the output file and the one-frame stop.
  const framesAt = header.indexOf("-frames:a");
  const same = (args: string[], output: string) =>
    args.filter((a) => a !== "-progress" && a !== "pipe:1").map((a) => (a === output ? "OUTPUT" : a));
  assert.deepEqual(
    same([...header.slice(0, framesAt), ...header.slice(framesAt + 2)], "file:/work/header.mp3"),
    same(single, "file:/work/out.mp3"),
  );
  assert.equal(header[header.indexOf("-frames:a") + 1], "1");

  const segment = buildSegmentEncodeArgs({
    ...conversion,
    pcmFile: "/work/pcm",
    pcm: { sampleRate: 44100, channels: 1 },
    byteStart: 0,
    byteEnd: 4096,
  });
  assert.equal(segment[segment.indexOf("-b:a") + 1], "320k");
});
