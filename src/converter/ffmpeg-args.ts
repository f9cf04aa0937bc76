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
   * MAX_AUDIO_SECONDS (0 or absent: no limit). ffmpeg writes at most one second more than this
   * (so a longer input is told apart from one exactly at the limit) and an MP3 no larger than such
   * audio can be at the highest bitrate: a crafted file cannot make the output grow without end.
   */
  maxSeconds?: number;
}

/** The most bytes an MP3 of `seconds` can take: 320 kb/s, plus room for tags and a cover picture. */
export function maxMp3Bytes(seconds: number): number {
  return Math.ceil(seconds * (320_000 / 8)) + 16 * 1024 * 1024;
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

export function buildFfmpegArgs({
  input,
  output,
  format,
  threads = 1,
  audio = "encode",
  maxSeconds = 0,
}: FfmpegArgsInput): string[] {
  return [
    // Machine-readable progress (out_time_us, progress=end) on stdout, no stats on stderr.
    ...globalOptions(),
    "-nostats",
    "-progress",
    "pipe:1",
    ...inputOptions(input, format, threads),

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
      : // LAME VBR quality 2 (~190 kb/s): transparent for almost everyone at a moderate size.
        ["-c:a", "libmp3lame", "-q:a", "2"]),
    // The Xing/LAME header lets players show the exact duration and seek in a VBR file. The mp3
    // muxer writes it from the frames it is given, so copied frames get a correct one too.
    "-write_xing",
    "1",
    "-threads",
    String(threads),
    ...(maxSeconds > 0 ? ["-t", String(maxSeconds + 1), "-fs", String(maxMp3Bytes(maxSeconds + 1))] : []),
    "-f",
    "mp3",
    "-y",
    fileUrl(output),
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
