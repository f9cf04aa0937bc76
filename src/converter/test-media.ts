import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";

/** Test-only helpers: small media made by ffmpeg's lavfi sources at test time, and ffprobe. */

const run = promisify(execFile);

/** An MP4 with a test picture and, unless `audio: false`, a 440 Hz tone. */
export async function makeVideo(
  dir: string,
  name: string,
  { seconds = 2, audio = true }: { seconds?: number; audio?: boolean } = {},
): Promise<string> {
  const file = path.join(dir, name);
  const inputs = ["-f", "lavfi", "-i", `testsrc=size=160x120:rate=10:duration=${seconds}`];
  if (audio) inputs.push("-f", "lavfi", "-i", `sine=frequency=440:duration=${seconds}`);
  const codecs = ["-c:v", "libx264", "-preset", "ultrafast", ...(audio ? ["-c:a", "aac"] : [])];
  await run("ffmpeg", ["-nostdin", "-v", "error", "-y", ...inputs, ...codecs, file]);
  return file;
}

/** A WAV of `seconds` of tone: uncompressed, so it is quick to make even when long. */
export async function makeLongAudio(dir: string, name: string, seconds: number): Promise<string> {
  const file = path.join(dir, name);
  const tone = `sine=frequency=440:duration=${seconds}`;
  await run("ffmpeg", [
    "-nostdin",
    "-v",
    "error",
    "-y",
    "-f",
    "lavfi",
    "-i",
    tone,
    "-c:a",
    "pcm_s16le",
    file,
  ]);
  return file;
}

export async function makeGarbage(dir: string, name: string): Promise<string> {
  const file = path.join(dir, name);
  const bytes = Buffer.alloc(8192);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + 13) % 251;
  await writeFile(file, bytes);
  return file;
}

export interface Probe {
  durationSeconds: number;
  formatName: string;
  codecs: string[];
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
    streams: { codec_name: string }[];
  };
  return {
    durationSeconds: Number(info.format.duration),
    formatName: info.format.format_name,
    codecs: info.streams.map((s) => s.codec_name),
  };
}
