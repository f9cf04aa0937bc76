import path from "node:path";
import type { Quality } from "../contracts/options.ts";
import { ConversionError } from "./conversion-error.ts";

/**
 * The ffmpeg command line for one conversion. ffmpeg runs on untrusted uploads, so every option
 * that limits what a crafted file can make it do is set here, in one place, and unit-tested.
 */

export interface FfmpegArgsInput {
  /** Local path of the upload. */
  input: string;
  /** Local path of the MP3 to write (our own temporary file; it is overwritten). */
  output: string;
  /** ffmpeg demuxer name the gateway sniffed from the file's bytes (`mov`, `matroska`, …). */
  format: string;
  /** Encoder/decoder threads; one is plenty for audio and keeps a busy converter fair. */
  threads?: number;
  /**
   * `encode` (the default) decodes the first audio stream and encodes it with LAME; `copy` puts its
   * MP3 frames into the output as they are (`-c:a copy`), for a source whose first audio stream
   * already is MP3 (see `firstAudioCodec`). The mp3 muxer refuses any other codec, so a wrong
   * `copy` fails instead of producing a file that is not an MP3.
   */
  audio?: AudioPath;
  /**
   * MAX_AUDIO_SECONDS (0 or absent: no limit). ffmpeg writes at most one second more than this
   * (so a longer input is told apart from one exactly at the limit) and an MP3 no larger than such
   * audio can be at the highest bitrate: a crafted file cannot make the output grow without end.
   */
  maxSeconds?: number;
  /** What the user's options make of the output (see `OutputPlan`); none: the first audio stream at V2. */
  plan?: OutputPlan;
}

/** The most bytes an MP3 of `seconds` can take: 320 kb/s, plus room for tags and a cover picture. */
export function maxMp3Bytes(seconds: number): number {
  return Math.ceil(seconds * (320_000 / 8)) + 16 * 1024 * 1024;
}

/**
 * The user's options, resolved against the probed input: which stream, which part of it, how it
 * is encoded and tagged. `transcode` makes it; everything in it is already validated.
 */
export interface OutputPlan {
  /** Which audio stream, counted among the audio streams (`-map 0:a:<n>`). */
  audioStream: number;
  /** undefined: the default, VBR V2. */
  quality?: Quality | undefined;
  /** Seconds into the input where the output begins and ends. */
  start?: number | undefined;
  end?: number | undefined;
  mono?: boolean | undefined;
  /** The first pass's measurement: present means normalise (EBU R128) in this run. */
  loudness?: LoudnessMeasurement | undefined;
  /** The output's sample rate when a filter would otherwise choose one (loudnorm works at 192 kHz). */
  sampleRate?: number | undefined;
  /** ID3 tags to set; the source's own are kept for the rest. */
  tags?: { title?: string | undefined; artist?: string | undefined; album?: string | undefined };
  /** false: drop the source's chapters (kept by default as ID3 CHAP frames). */
  chapters?: boolean | undefined;
  /**
   * For a trimmed output: an FFMETADATA file with the chapters already shifted and cut to the
   * range (ffmpeg's own shifting keeps zero-length chapters at the cut points).
   */
  chaptersFile?: string | undefined;
}

/** What loudnorm's first pass measured (its JSON), fed to the second pass. */
export interface LoudnessMeasurement {
  inputI: number;
  inputTp: number;
  inputLra: number;
  inputThresh: number;
  targetOffset: number;
}

/** EBU R128 targets: −16 LUFS integrated, true peak at most −1.5 dBTP, loudness range 11 LU. */
export const LOUDNESS_TARGET = { i: -16, tp: -1.5, lra: 11 } as const;

/** How the output's audio is made: re-encoded, or the source's MP3 frames copied unchanged. */
export type AudioPath = "copy" | "encode";

/**
 * Demuxers that open other files or URLs named inside their input (playlists, concat lists,
 * manifests) or run code. Forcing the sniffed format already stops a file from switching to them;
 * this list stops a wrong or forged `format` in a message from selecting them directly.
 */
const REFUSED_FORMATS = new Set([
  "hls",
  "applehttp",
  "concat",
  "dash",
  "imf",
  "image2",
  "lavfi",
  "sdp",
  "rtp",
  "rtsp",
  "avisynth",
  "vapoursynth",
  "dvdvideo",
]);

/** Container metadata that means nothing to a listener and would only clutter the ID3 tag. */
const TECHNICAL_TAGS = ["major_brand", "minor_version", "compatible_brands", "encoder"];

const FORMAT = /^[a-z0-9_]+$/;

export function buildFfmpegArgs(options: FfmpegArgsInput): string[] {
  const { input, format, threads = 1, plan = { audioStream: 0 } } = options;
  return [
    ...progressInput(input, format, threads, plan.start),
    ...ownInputs(plan),
    ...mp3OutputArgs(options),
  ];
}

/**
 * The input we add ourselves after the source: the chapter list (see `OutputPlan.chaptersFile`).
 * (The cover picture is no input: it is put into the finished file's tag, see id3-picture.ts.)
 */
function ownInputs(plan: OutputPlan): string[] {
  return plan.chaptersFile
    ? ["-protocol_whitelist", "file", "-f", "ffmetadata", "-i", fileUrl(plan.chaptersFile)]
    : [];
}

/**
 * The output half of the conversion's command line: which stream, its filters, tags and encoder,
 * and the MP3 file. `extra` goes just before the file name (options of this output only).
 */
function mp3OutputArgs(options: FfmpegArgsInput, extra: string[] = []): string[] {
  const { output, threads = 1, audio = "encode", maxSeconds = 0, plan = { audioStream: 0 } } = options;
  return [
    // Output: exactly the chosen audio stream; a file without one fails with a clear message
    // instead of ffmpeg guessing. No video, subtitle or data streams.
    ...selectAudio(plan, maxSeconds),
    "-vn",
    "-sn",
    "-dn",
    // Keep the file's own tags (title, artist, …), but not the container's technical ones.
    "-map_metadata",
    "0:g",
    ...TECHNICAL_TAGS.flatMap((tag) => ["-metadata", `${tag}=`]),
    ...Object.entries(plan.tags ?? {}).flatMap(([tag, value]) =>
      value === undefined ? [] : ["-metadata", `${tag}=${value}`],
    ),
    // Chapters become ID3 CHAP frames.
    "-map_chapters",
    plan.chapters === false ? "-1" : plan.chaptersFile ? "1" : "0",
    // ID3v2.3 is what most players and operating systems read reliably.
    "-id3v2_version",
    "3",
    ...(audio === "copy"
      ? // The source's MP3 frames, byte for byte: lossless, and no decoding or encoding at all.
        ["-c:a", "copy"]
      : [...mp3EncoderArgs(options), ...audioFilterArgs(options)]),
    // The Xing/LAME header lets players show the exact duration and seek in a VBR file. The mp3
    // muxer writes it from the frames it is given, so copied frames get a correct one too.
    "-write_xing",
    "1",
    "-threads",
    String(threads),
    ...(maxSeconds > 0 ? ["-fs", String(maxMp3Bytes(maxSeconds + 1))] : []),
    ...extra,
    "-f",
    "mp3",
    "-y",
    fileUrl(output),
  ];
}

/** LAME VBR `vN` → `-q:a N` (V2 ≈ 190 kb/s: transparent for almost everyone); `320k` → CBR. */
function qualityArgs(quality: Quality = "v2"): string[] {
  return quality.startsWith("v") ? ["-q:a", quality.slice(1)] : ["-b:a", quality];
}

/**
 * `-map 0:a:<n>` and the part of it to keep (the start is an input option, see `inputOptions`).
 * With MAX_AUDIO_SECONDS, ffmpeg writes at most one second more than the limit (one `-t`: a second
 * one would replace the trim's).
 */
function selectAudio(plan: OutputPlan, maxSeconds = 0): string[] {
  const trimmed = plan.end === undefined ? undefined : plan.end - (plan.start ?? 0);
  const limit = maxSeconds > 0 ? maxSeconds + 1 : undefined;
  const length = trimmed === undefined ? limit : limit === undefined ? trimmed : Math.min(trimmed, limit);
  // `-t` on the output, not the input: only then does ffmpeg also cut the chapters to the range.
  return ["-map", `0:a:${plan.audioStream}`, ...(length === undefined ? [] : ["-t", seconds(length)])];
}

/**
 * Mono before loudnorm: `-ac 1` alone downmixes after the filters, so loudnorm would measure and
 * set the stereo signal, and the downmix then moves both figures (channels that differ lose up to
 * 3 LU; equal ones gain up to 3 dB of peak, past 0 dBFS for a file normalised to −1.5 dBTP). Both
 * passes downmix first, so what is measured and set is the mono signal the MP3 holds.
 */
function monoBeforeLoudnorm(plan: OutputPlan): string[] {
  return plan.mono ? ["aformat=channel_layouts=mono"] : [];
}

/** Mono, and the second loudnorm pass with the first pass's measurement (linear where it can). */
function audioFilters(plan: OutputPlan): string[] {
  const filters: string[] = [];
  if (plan.loudness) {
    filters.push(...monoBeforeLoudnorm(plan));
    const m = plan.loudness;
    filters.push(
      `loudnorm=${loudnormTarget()}:measured_I=${m.inputI}:measured_TP=${m.inputTp}` +
        `:measured_LRA=${m.inputLra}:measured_thresh=${m.inputThresh}:offset=${m.targetOffset}:linear=true`,
    );
    // loudnorm works (and outputs) at 192 kHz; back to the source's rate.
    filters.push(`aresample=${plan.sampleRate ?? 44100}`);
  }
  return [...(filters.length > 0 ? ["-af", filters.join(",")] : []), ...(plan.mono ? ["-ac", "1"] : [])];
}

const loudnormTarget = (): string =>
  `I=${LOUDNESS_TARGET.i}:TP=${LOUDNESS_TARGET.tp}:LRA=${LOUDNESS_TARGET.lra}`;

/**
 * loudnorm's first pass: the same input, stream, range and channels as the conversion, measured
 * and thrown away (`-f null`); the measurement is printed as JSON on stderr.
 */
export function buildLoudnessArgs({
  input,
  format,
  threads = 1,
  plan,
}: Pick<FfmpegArgsInput, "input" | "format" | "threads"> & { plan: OutputPlan }): string[] {
  return [
    ...progressInput(input, format, threads, plan.start),
    ...selectAudio(plan),
    "-vn",
    "-sn",
    "-dn",
    ...(plan.mono ? ["-ac", "1"] : []),
    "-af",
    [...monoBeforeLoudnorm(plan), `loudnorm=${loudnormTarget()}:print_format=json`].join(","),
    "-threads",
    String(threads),
    "-f",
    "null",
    "-",
  ];
}

/**
 * The cover: one representative frame of the video as a JPEG. ffmpeg's `thumbnail` filter picks,
 * out of a batch of frames, the one closest to their average (so not a black or flash frame), and
 * the batch starts a third into the kept part, past black openings and title cards. A source whose
 * only picture is attached cover art (an album's) gets that picture.
 */
export function buildCoverArgs({
  input,
  output,
  format,
  threads = 1,
  seekSeconds,
  lengthSeconds,
  source,
}: Pick<FfmpegArgsInput, "input" | "output" | "format" | "threads"> & {
  seekSeconds: number | undefined;
  lengthSeconds?: number | undefined;
  source: "moving" | "attached";
}): string[] {
  return [
    ...globalOptions(),
    // Only frames of the kept part: from the seek point to the end of the range.
    ...inputOptions(input, format, threads, source === "moving" ? seekSeconds : undefined, lengthSeconds),
    "-map",
    source === "moving" ? "0:V:0" : "0:v:0",
    "-an",
    "-sn",
    "-dn",
    "-vf",
    `${source === "moving" ? "thumbnail=n=60," : ""}scale='min(${COVER_MAX_WIDTH},iw)':-2`,
    "-frames:v",
    "1",
    "-c:v",
    "mjpeg",
    "-q:v",
    "3",
    "-threads",
    String(threads),
    "-f",
    "mjpeg",
    "-y",
    fileUrl(output),
  ];
}

/** Wide enough for any player's artwork, small enough to add little to the MP3. */
const COVER_MAX_WIDTH = 720;

/** Seconds as ffmpeg reads them, to the millisecond. */
const seconds = (value: number): string => value.toFixed(3);

/**
 * Filters on the decoded audio before it is encoded (mono, the second loudnorm pass). Segmented
 * encoding (parallel-encode.ts) runs them once, in the decoding process, so a filter with memory
 * sees the whole stream exactly as in a single run.
 */
function audioFilterArgs({ plan = { audioStream: 0 } }: FfmpegArgsInput): string[] {
  return audioFilters(plan);
}

/**
 * The encoder and its settings (see `qualityArgs`). Every encoder process uses these, the single
 * run and each segment's, so the pieces of a segmented encode are encoded exactly as the whole would be.
 */
function mp3EncoderArgs({ plan }: FfmpegArgsInput): string[] {
  return ["-c:a", "libmp3lame", ...qualityArgs(plan?.quality)];
}

/** How long a segment's encoder waits at the end of the growing PCM file for more (see `buildSegmentEncodeArgs`). */
const FOLLOW_TIMEOUT_SECONDS = 120;

/** The raw PCM that segmented encoding writes and reads: 32-bit float, what LAME takes itself. */
export interface PcmFormat {
  sampleRate: number;
  channels: 1 | 2;
}

/** Bytes of one sample of every channel in such PCM (4 per channel: 32-bit float, interleaved). */
export const pcmSampleBytes = ({ channels }: Pick<PcmFormat, "channels">): number => 4 * channels;

/**
 * The decoding run of a segmented encode: the chosen audio stream and length, through the same filters as a
 * single run, as raw float PCM at the rate and channel count the single run's encoder chose, into
 * `pcmFile` (which the segments' encoders read as it grows).
 */
export function buildDecodeArgs(options: FfmpegArgsInput & { pcmFile: string; pcm: PcmFormat }): string[] {
  const { input, format, threads = 1, pcmFile, pcm, maxSeconds = 0, plan = { audioStream: 0 } } = options;
  return [
    ...globalOptions(),
    "-nostats",
    ...inputOptions(input, format, threads, plan.start),
    // The same stream and length as the single run: MAX_AUDIO_SECONDS holds here too.
    ...[...selectAudio(plan, maxSeconds), "-vn", "-sn", "-dn", ...audioFilterArgs(options)],
    ...["-ar", String(pcm.sampleRate), "-ac", String(pcm.channels), "-c:a", "pcm_f32le"],
    ...["-threads", String(threads), "-f", "f32le", "-y", fileUrl(pcmFile)],
  ];
}

/**
 * The single run's own command line, stopped after one audio frame: the start of its output is
 * the ID3v2 tag (tags, chapters) and the Xing/LAME frame a segmented encode's file begins with.
 * (`-frames:a`, not `-t`: a time limit would drop the chapters after it.)
 */
export function buildHeaderArgs(options: FfmpegArgsInput): string[] {
  const { input, format, threads = 1, plan = { audioStream: 0 } } = options;
  return [
    ...globalOptions(),
    "-nostats",
    ...inputOptions(input, format, threads, plan.start),
    ...ownInputs(plan),
    ...mp3OutputArgs({ ...options, audio: "encode" }, ["-frames:a", "1"]),
  ];
}

/**
 * One segment's encoding run: bytes [start, end) of the PCM file (ffmpeg's `subfile` protocol
 * reads exactly that range) encoded with the single run's encoder settings into bare MP3 frames:
 * no ID3v2 tag, no Xing frame (the joined file gets one of each). It may start before the decoder
 * has written that range: the file protocol's `follow` waits at the end of the file for more,
 * until the range is read, or until nothing came for `FOLLOW_TIMEOUT_SECONDS` (a decoder that
 * fails stops every process of the encode anyway; this only bounds a wait that nothing ends).
 */
export function buildSegmentEncodeArgs(
  options: FfmpegArgsInput & { pcmFile: string; pcm: PcmFormat; byteStart: number; byteEnd: number },
): string[] {
  const { pcmFile, pcm, byteStart, byteEnd, output, threads = 1 } = options;
  // The inner URL is a file: URL too, so a colon in the path cannot name another protocol.
  const range = `subfile,,start,${byteStart},end,${byteEnd},,:${fileUrl(pcmFile)}`;
  return [
    ...globalOptions(),
    "-nostats",
    "-progress",
    "pipe:1",
    ...[
      "-protocol_whitelist",
      "subfile,file",
      "-follow",
      "1",
      "-rw_timeout",
      String(FOLLOW_TIMEOUT_SECONDS * 1e6),
    ],
    ...["-f", "f32le"],
    ...["-ar", String(pcm.sampleRate), "-ac", String(pcm.channels), "-i", range],
    ...mp3EncoderArgs(options),
    ...["-threads", String(threads), "-write_xing", "0", "-id3v2_version", "0"],
    ...["-f", "mp3", "-y", fileUrl(output)],
  ];
}

/**
 * The probe run that tells the first audio stream's codec: ffmpeg with the very same input
 * options as the conversion and no output, so it only opens the input, reads the stream headers
 * (bounded by ffmpeg's default probe size and analysis duration, the same bounds the conversion
 * uses, so both see the same streams), prints them on stderr and exits (with code 1: "At least
 * one output file must be specified"). Nothing is decoded beyond what that needs, nothing written.
 */
export function buildProbeArgs({
  input,
  format,
  threads = 1,
}: Pick<FfmpegArgsInput, "input" | "format" | "threads">): string[] {
  return [...globalOptions(), ...inputOptions(input, format, threads, undefined)];
}

/** The start of a run that reports progress: machine-readable (out_time_us, progress=end) on stdout, no stats on stderr. */
function progressInput(input: string, format: string, threads: number, start: number | undefined): string[] {
  return [
    ...globalOptions(),
    "-nostats",
    "-progress",
    "pipe:1",
    ...inputOptions(input, format, threads, start),
  ];
}

/** Never wait for a keypress; no banner in the stderr we parse. */
function globalOptions(): string[] {
  return ["-nostdin", "-hide_banner"];
}

/**
 * Input options: only local files may be opened (no http, no tcp, no data: URLs), and the
 * demuxer is the one the gateway sniffed, so a file cannot turn itself into a playlist. `start`
 * seeks the input (decoding from the previous key frame, so the cut is exact).
 */
function inputOptions(
  input: string,
  format: string,
  threads: number,
  start: number | undefined,
  length?: number,
): string[] {
  if (!FORMAT.test(format) || REFUSED_FORMATS.has(format)) throw ConversionError.undecodable();
  return [
    "-protocol_whitelist",
    "file",
    ...(start ? ["-ss", seconds(start)] : []),
    ...(length ? ["-t", seconds(length)] : []),
    "-f",
    format,
    "-threads",
    String(threads),
    "-i",
    fileUrl(input),
  ];
}

/**
 * An explicit `file:` URL, so a path that happens to contain a colon (`a:b.mp4`) is never read as
 * another protocol; absolute, so ffmpeg does not depend on our working directory.
 */
function fileUrl(filePath: string): string {
  return `file:${path.resolve(filePath)}`;
}
