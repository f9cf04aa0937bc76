import path from "node:path";
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
   * LAME setting: `v0`…`v9` VBR (default `v2`) or a constant bit rate such as `128k`. Both the
   * single run and every segment of a segmented encode take it from here (`mp3EncoderArgs`).
   */
  quality?: string | undefined;
}

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
  const { input, format, threads = 1 } = options;
  return [
    // Machine-readable progress (out_time_us, progress=end) on stdout, no stats on stderr.
    ...globalOptions(),
    "-nostats",
    "-progress",
    "pipe:1",
    ...inputOptions(input, format, threads),
    ...mp3OutputArgs(options),
  ];
}

/**
 * The output half of the conversion's command line: which stream, its filters, tags and encoder,
 * and the MP3 file. `extra` goes just before the file name (options of this output only).
 */
function mp3OutputArgs(options: FfmpegArgsInput, extra: string[] = []): string[] {
  const { output, threads = 1, audio = "encode" } = options;
  return [
    // Output: exactly the first audio stream; a file without one fails with a clear message
    // instead of ffmpeg guessing. No video, subtitle or data streams.
    "-map",
    "0:a:0",
    "-vn",
    "-sn",
    "-dn",
    // Keep the file's own tags (title, artist, …), but not the container's technical ones.
    "-map_metadata",
    "0:g",
    ...TECHNICAL_TAGS.flatMap((tag) => ["-metadata", `${tag}=`]),
    // ID3v2.3 is what most players and operating systems read reliably.
    "-id3v2_version",
    "3",
    ...(audio === "copy"
      ? // The source's MP3 frames, byte for byte: lossless, and no decoding or encoding at all.
        ["-c:a", "copy"]
      : [...audioFilterArgs(options), ...mp3EncoderArgs(options)]),
    // The Xing/LAME header lets players show the exact duration and seek in a VBR file. The mp3
    // muxer writes it from the frames it is given, so copied frames get a correct one too.
    "-write_xing",
    "1",
    "-threads",
    String(threads),
    ...extra,
    "-f",
    "mp3",
    "-y",
    fileUrl(output),
  ];
}

/**
 * Filters on the decoded audio before it is encoded (none yet). Segmented encoding
 * (parallel-encode.ts) runs them once, in the decoding process, so a filter with memory sees the
 * whole stream exactly as in a single run.
 */
function audioFilterArgs(_options: FfmpegArgsInput): string[] {
  return [];
}

/**
 * The encoder and its settings: by default LAME VBR quality 2 (~190 kb/s), transparent for almost
 * everyone at a moderate size. Every encoder process uses these, the single run and each segment's, so the
 * pieces of a segmented encode are encoded exactly as the whole would be.
 */
function mp3EncoderArgs({ quality = "v2" }: FfmpegArgsInput): string[] {
  const vbr = /^v(\d)$/.exec(quality);
  if (vbr) return ["-c:a", "libmp3lame", "-q:a", vbr[1] as string];
  if (/^\d{2,3}k$/.test(quality)) return ["-c:a", "libmp3lame", "-b:a", quality];
  throw new RangeError(`unknown MP3 quality ${JSON.stringify(quality)}`);
}

/** The raw PCM that segmented encoding writes and reads: 32-bit float, what LAME takes itself. */
export interface PcmFormat {
  sampleRate: number;
  channels: 1 | 2;
}

/**
 * The decoding run of a segmented encode: the first audio stream, through the same filters as a
 * single run, as raw float PCM at the rate and channel count the single run's encoder chose, into
 * `pcmFile`. Its `-progress` reports count the bytes written, i.e. tell which segment can start.
 */
export function buildDecodeArgs(options: FfmpegArgsInput & { pcmFile: string; pcm: PcmFormat }): string[] {
  const { input, format, threads = 1, pcmFile, pcm } = options;
  return [
    ...globalOptions(),
    "-nostats",
    "-progress",
    "pipe:1",
    "-stats_period",
    "0.1",
    ...inputOptions(input, format, threads),
    ...["-map", "0:a:0", "-vn", "-sn", "-dn", ...audioFilterArgs(options)],
    ...["-ar", String(pcm.sampleRate), "-ac", String(pcm.channels), "-c:a", "pcm_f32le"],
    ...["-threads", String(threads), "-f", "f32le", "-y", fileUrl(pcmFile)],
  ];
}

/**
 * The single run's own command line, stopped after one audio frame: the start of its output is
 * the ID3v2 tag (tags, cover, chapters) and the Xing/LAME frame a segmented encode's file begins
 * with. (`-frames:a`, not `-t`: a time limit would drop the chapters after it.)
 */
export function buildHeaderArgs(options: FfmpegArgsInput): string[] {
  const { input, format, threads = 1 } = options;
  return [
    ...globalOptions(),
    "-nostats",
    ...inputOptions(input, format, threads),
    ...mp3OutputArgs({ ...options, audio: "encode" }, ["-frames:a", "1"]),
  ];
}

/**
 * One segment's encoding run: bytes [start, end) of the PCM file (ffmpeg's `subfile` protocol
 * reads exactly that range) encoded with the single run's encoder settings into bare MP3 frames:
 * no ID3v2 tag, no Xing frame (the joined file gets one of each).
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
    ...["-protocol_whitelist", "subfile,file", "-f", "f32le"],
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
  return [...globalOptions(), ...inputOptions(input, format, threads)];
}

/** Never wait for a keypress; no banner in the stderr we parse. */
function globalOptions(): string[] {
  return ["-nostdin", "-hide_banner"];
}

/**
 * Input options: only local files may be opened (no http, no tcp, no data: URLs), and the
 * demuxer is the one the gateway sniffed, so a file cannot turn itself into a playlist.
 */
function inputOptions(input: string, format: string, threads: number): string[] {
  if (!FORMAT.test(format) || REFUSED_FORMATS.has(format)) throw ConversionError.undecodable();
  return ["-protocol_whitelist", "file", "-f", format, "-threads", String(threads), "-i", fileUrl(input)];
}

/**
 * An explicit `file:` URL, so a path that happens to contain a colon (`a:b.mp4`) is never read as
 * another protocol; absolute, so ffmpeg does not depend on our working directory.
 */
function fileUrl(filePath: string): string {
  return `file:${path.resolve(filePath)}`;
}
