import { execFile } from "node:child_process";
import { chmod, writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

/** Small media made by ffmpeg's lavfi sources at test time (no media files in the repository), and ffprobe. */

const run = promisify(execFile);

/**
 * An ffmpeg (a script in `dir`) whose segment encoders, the runs that read PCM through `subfile`,
 * read it at `rate`× real time; every other run goes at full speed. Slows one side of a race.
 */
export async function slowSegmentsFfmpeg(dir: string, rate: number): Promise<string> {
  const file = path.join(dir, `slow-segments-ffmpeg-${rate}`);
  await writeFile(
    file,
    `#!/bin/sh\ncase "$*" in *subfile*) exec ffmpeg -readrate ${rate} "$@" ;; esac\nexec ffmpeg "$@"\n`,
  );
  await chmod(file, 0o755);
  return file;
}

/**
 * A video with a test picture and, unless `audio: false`, a 440 Hz tone; the container follows the
 * name's extension (.mp4, .mkv, .webm, .avi, …), with codecs it usually holds (H.264 and AAC; VP8
 * and Opus in WebM; MPEG-4 and MP3 in AVI) unless `audioCodec` says otherwise. `extra` goes to
 * ffmpeg before the output.
 */
export async function makeVideo(
  file: string,
  {
    seconds = 2,
    audio = true,
    audioCodec,
    extra = [],
  }: { seconds?: number; audio?: boolean; audioCodec?: string; extra?: string[] } = {},
): Promise<string> {
  const inputs = ["-f", "lavfi", "-i", `testsrc=size=160x120:rate=10:duration=${seconds}`];
  if (audio) inputs.push("-f", "lavfi", "-i", `sine=frequency=440:sample_rate=44100:duration=${seconds}`);
  const extension = path.extname(file).toLowerCase();
  const [video, defaultAudio] =
    extension === ".webm"
      ? [["-c:v", "libvpx", "-deadline", "realtime"], "libopus"]
      : extension === ".avi"
        ? [["-c:v", "mpeg4"], "mp3"]
        : [["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], "aac"];
  const codecs = [...video, ...(audio ? ["-c:a", audioCodec ?? defaultAudio] : [])];
  await run("ffmpeg", ["-nostdin", "-v", "error", "-y", ...inputs, ...codecs, "-shortest", ...extra, file]);
  return file;
}

/**
 * A VBR MP3 made by LAME, with a title tag: silence, noise, then a tone, so its frames' bitrates
 * differ widely and only its Xing header gives the right duration (estimated from the first
 * frame's bitrate it would come out more than twice too long).
 */
export async function makeVbrMp3(file: string, segmentSeconds = 2): Promise<string> {
  const d = segmentSeconds;
  await run("ffmpeg", [
    "-nostdin",
    "-v",
    "error",
    "-y",
    ...["-f", "lavfi", "-i", `anullsrc=r=44100:cl=stereo:d=${d}`],
    ...["-f", "lavfi", "-i", `anoisesrc=r=44100:d=${d}`],
    ...["-f", "lavfi", "-i", `sine=frequency=440:r=44100:duration=${d}`],
    ...["-filter_complex", "[0][1][2]concat=n=3:v=0:a=1"],
    ...["-c:a", "libmp3lame", "-q:a", "2", "-metadata", "title=Tone poem", file],
  ]);
  return file;
}

/** `seconds` of tone as MPEG audio layer II (an .mp2, which the gateway sends to the mp3 demuxer). */
export async function makeMp2(file: string, seconds = 1): Promise<string> {
  const tone = `sine=frequency=440:duration=${seconds}`;
  await run("ffmpeg", ["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", tone, "-c:a", "mp2", file]);
  return file;
}

/** A WAV of `seconds` of tone: uncompressed, so it is quick to make even when long. */
export async function makeLongAudio(file: string, seconds: number): Promise<string> {
  return makeLavfiAudio(file, `sine=frequency=440:duration=${seconds}`, seconds, "pcm_s16le");
}

/** Audio from an ffmpeg test source (`anullsrc` silence, `anoisesrc` noise, `sine`) of `seconds`, in `codec`. */
export async function makeLavfiAudio(
  file: string,
  source: string,
  seconds: number,
  codec: string,
): Promise<string> {
  await run("ffmpeg", [
    "-nostdin",
    "-v",
    "error",
    "-y",
    "-f",
    "lavfi",
    "-i",
    source,
    "-t",
    `${seconds}`,
    "-c:a",
    codec,
    file,
  ]);
  return file;
}

/** Bytes that are no media at all. */
export async function makeGarbage(file: string): Promise<string> {
  const bytes = Buffer.alloc(8192);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + 13) % 251;
  await writeFile(file, bytes);
  return file;
}

export interface Probe {
  durationSeconds: number;
  formatName: string;
  codecs: string[];
  /** The first audio stream's duration (the container's when the stream has none) and bit rate. */
  audio?: { durationSeconds: number; bitRate: number };
}

export async function probe(file: string): Promise<Probe> {
  const { stdout } = await run("ffprobe", [
    "-v",
    "error",
    "-show_format",
    "-show_streams",
    "-of",
    "json",
    file,
  ]);
  const info = JSON.parse(stdout) as {
    format: { duration: string; format_name: string };
    streams: { codec_name: string; codec_type: string; duration?: string; bit_rate?: string }[];
  };
  const audio = info.streams.find((s) => s.codec_type === "audio");
  return {
    durationSeconds: Number(info.format.duration),
    formatName: info.format.format_name,
    codecs: info.streams.map((s) => s.codec_name),
    ...(audio && {
      audio: {
        durationSeconds: Number(audio.duration ?? info.format.duration),
        bitRate: Number(audio.bit_rate),
      },
    }),
  };
}

/** MD5 of the first audio stream's packets, as the demuxer returns them (not decoded). */
export async function audioPacketsMd5(file: string): Promise<string> {
  const { stdout } = await run("ffmpeg", [
    "-nostdin",
    "-v",
    "error",
    "-i",
    file,
    "-map",
    "0:a:0",
    "-c",
    "copy",
    "-f",
    "md5",
    "-",
  ]);
  return stdout.trim();
}

/**
 * A 6-second MKV with what the conversion options act on: a video that is black for its first
 * second, then a test picture; two audio tracks, French (440 Hz, mono) and English (880 Hz,
 * stereo, so a test can tell them apart by their channels); three 2-second chapters; a title and
 * an artist.
 */
export async function makeRichVideo(file: string): Promise<string> {
  const metadata = `${file}.ffmetadata`;
  const chapter = (title: string, start: number) =>
    `[CHAPTER]\nTIMEBASE=1/1000\nSTART=${start * 1000}\nEND=${(start + 2) * 1000}\ntitle=${title}\n`;
  await writeFile(
    metadata,
    `;FFMETADATA1\ntitle=Source Title\nartist=Source Artist\n${chapter("Intro", 0)}${chapter("Middle", 2)}${chapter("End", 4)}`,
  );
  await run("ffmpeg", [
    ...["-nostdin", "-v", "error", "-y"],
    ...["-f", "lavfi", "-i", "color=black:size=160x120:rate=10:duration=1"],
    ...["-f", "lavfi", "-i", "testsrc=size=160x120:rate=10:duration=5"],
    ...["-f", "lavfi", "-i", "sine=frequency=440:duration=6"],
    ...["-f", "lavfi", "-i", "sine=frequency=880:duration=6"],
    ...["-i", metadata],
    ...["-filter_complex", "[0][1]concat=n=2:v=1:a=0[v];[3]pan=stereo|c0=c0|c1=c0[eng]"],
    ...["-map", "[v]", "-map", "2:a", "-map", "[eng]", "-map_metadata", "4", "-map_chapters", "4"],
    ...["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
    ...["-metadata:s:a:0", "language=fre", "-metadata:s:a:1", "language=eng"],
    file,
  ]);
  return file;
}

/**
 * A WAV of a linear sine sweep from 20 Hz to 20 kHz (or half the rate) over
 * `seconds`, with a title tag: every frequency passes through, so a join cannot hide in a quiet band.
 */
export async function makeSweep(
  file: string,
  { seconds, sampleRate = 44100, channels = 2 }: { seconds: number; sampleRate?: number; channels?: number },
): Promise<string> {
  const top = Math.min(20000, sampleRate / 2 - 100);
  const sweep = `aevalsrc=0.5*sin(2*PI*(20*t+(${top}-20)/(2*${seconds})*t*t)):s=${sampleRate}:d=${seconds}`;
  await run("ffmpeg", [
    ...["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", sweep],
    ...["-ac", String(channels), "-c:a", "pcm_s16le", "-metadata", "title=Sweep", file],
  ]);
  return file;
}

/** What ffprobe tells of an MP3: its streams, tags and chapters. */
export interface Mp3Details {
  audio: { channels: number; bitRate: number; sampleRate: number };
  /** The attached picture's codec, if there is one. */
  picture: { codec: string; comment: string | undefined } | undefined;
  tags: Record<string, string>;
  chapters: { title: string | undefined; start: number; end: number }[];
}

export async function mp3Details(file: string): Promise<Mp3Details> {
  const { stdout } = await run("ffprobe", [
    ...["-v", "error", "-show_format", "-show_streams", "-show_chapters", "-of", "json", file],
  ]);
  const info = JSON.parse(stdout) as {
    format: { tags?: Record<string, string> };
    streams: {
      codec_type: string;
      codec_name: string;
      channels?: number;
      bit_rate?: string;
      sample_rate?: string;
      disposition?: { attached_pic?: number };
      tags?: Record<string, string>;
    }[];
    chapters: { start_time: string; end_time: string; tags?: { title?: string } }[];
  };
  const audio = info.streams.find((s) => s.codec_type === "audio");
  const picture = info.streams.find((s) => s.codec_type === "video" && s.disposition?.attached_pic === 1);
  if (!audio) throw new Error(`${file} has no audio stream`);
  return {
    audio: {
      channels: Number(audio.channels),
      bitRate: Number(audio.bit_rate),
      sampleRate: Number(audio.sample_rate),
    },
    picture: picture && { codec: picture.codec_name, comment: picture.tags?.comment },
    tags: Object.fromEntries(Object.entries(info.format.tags ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
    chapters: info.chapters.map((c) => ({
      title: c.tags?.title,
      start: Number(c.start_time),
      end: Number(c.end_time),
    })),
  };
}

/**
 * How long a file plays: its audio decoded to the end, from the first sample to the last, with
 * the encoder's padding removed as the LAME header tells (what a player plays).
 */
export async function decodedSeconds(file: string): Promise<number> {
  const { stdout } = await run("ffprobe", [
    ...["-v", "error", "-select_streams", "a:0", "-show_entries", "frame=pts_time,pkt_duration_time"],
    ...["-of", "json", file],
  ]);
  const frames = (JSON.parse(stdout) as { frames: { pts_time: string; pkt_duration_time: string }[] }).frames;
  const first = frames[0];
  const last = frames.at(-1);
  if (!first || !last) return 0;
  return Number(last.pts_time) + Number(last.pkt_duration_time) - Number(first.pts_time);
}

/** EBU R128 as ffmpeg's `ebur128` filter measures it: integrated loudness (LUFS) and true peak (dBTP). */
export async function loudness(file: string): Promise<{ integrated: number; truePeak: number }> {
  const { stderr } = await run("ffmpeg", [
    ...["-nostdin", "-hide_banner", "-nostats", "-i", file, "-map", "0:a:0"],
    ...["-af", "ebur128=peak=true", "-f", "null", "-"],
  ]);
  const summary = stderr.slice(stderr.lastIndexOf("Summary:"));
  const integrated = /I:\s+(-?[\d.]+) LUFS/.exec(summary)?.[1];
  const truePeak = /Peak:\s+(-?[\d.]+|-inf) dBFS/.exec(summary)?.[1];
  if (integrated === undefined || truePeak === undefined) throw new Error(`no ebur128 summary: ${summary}`);
  return { integrated: Number(integrated), truePeak: Number(truePeak) };
}

/** The attached picture's mean brightness, 0 (black) … 255 (white). */
export async function pictureBrightness(file: string): Promise<number> {
  const { stderr } = await run("ffmpeg", [
    ...["-nostdin", "-hide_banner", "-i", file, "-map", "0:v:0"],
    ...["-vf", "signalstats,metadata=print:key=lavfi.signalstats.YAVG", "-f", "null", "-"],
  ]);
  const value = /lavfi\.signalstats\.YAVG=([\d.]+)/.exec(stderr)?.[1];
  if (value === undefined) throw new Error("no picture to measure");
  return Number(value);
}

/** A WAV of white noise (different in each channel): the hardest for the encoder, every frame full. */
export async function makeNoise(
  file: string,
  { seconds, sampleRate = 44100 }: { seconds: number; sampleRate?: number },
): Promise<string> {
  const noise = (seed: number) =>
    `anoisesrc=color=white:amplitude=0.3:r=${sampleRate}:d=${seconds}:seed=${seed}`;
  await run("ffmpeg", [
    ...["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", noise(1), "-f", "lavfi", "-i", noise(2)],
    ...["-filter_complex", "[0][1]join=inputs=2:channel_layout=stereo"],
    ...["-c:a", "pcm_s16le", "-metadata", "title=Noise", file],
  ]);
  return file;
}

/** The decoded samples of a file's first audio stream, interleaved, as 32-bit floats. */
export async function decodeSamples(file: string, channels: number): Promise<Float32Array> {
  const { stdout } = await run(
    "ffmpeg",
    ["-nostdin", "-v", "error", "-i", file, "-map", "0:a:0", "-ac", String(channels), "-f", "f32le", "-"],
    { encoding: "buffer", maxBuffer: 512 * 1024 * 1024 },
  );
  // A copy: the buffer's offset need not be a multiple of 4.
  return new Float32Array(stdout.buffer.slice(stdout.byteOffset, stdout.byteOffset + stdout.byteLength));
}

/** Duration in seconds of a file's first audio stream, as ffprobe reads it. */
export async function audioDuration(file: string): Promise<number> {
  const audio = (await probe(file)).audio;
  if (audio === undefined || Number.isNaN(audio.durationSeconds))
    throw new Error(`ffprobe found no audio duration in ${file}`);
  return audio.durationSeconds;
}
