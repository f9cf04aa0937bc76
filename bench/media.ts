import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { promisify } from "node:util";
import { locateFfmpeg } from "../src/converter/ffmpeg-locator.ts";

/** Test media made with ffmpeg's synthetic sources at the start of a run (no fixtures). */

const run = promisify(execFile);

/** The ffmpeg vid2mp3 would use here, found the way it finds it (FFMPEG_PATH, PATH, npm package). */
export async function systemFfmpeg(): Promise<{ path: string; source: string; version: string }> {
  return locateFfmpeg(process.env.FFMPEG_PATH);
}

/** The npm package's static build (@ffmpeg-installer/ffmpeg), if it is installed for this platform. */
export function packagedFfmpeg(): string | undefined {
  try {
    const installer = createRequire(import.meta.url)("@ffmpeg-installer/ffmpeg") as { path?: unknown };
    return typeof installer.path === "string" ? installer.path : undefined;
  } catch {
    return undefined;
  }
}

export async function ffmpegVersion(binary: string): Promise<string> {
  const { stdout } = await run(binary, ["-version"]);
  return (stdout.split("\n", 1)[0] ?? "").replace(/ Copyright.*$/, "");
}

const quiet = ["-hide_banner", "-loglevel", "error", "-nostdin", "-y"];

/** A talk or a clip: 640x360 at 30 fps, H.264 + stereo AAC 128 kb/s (a tone). */
export async function makeVideo(ffmpeg: string, file: string, seconds: number): Promise<void> {
  await run(ffmpeg, [
    ...quiet,
    ...["-f", "lavfi", "-i", `testsrc2=size=640x360:rate=30:duration=${seconds}`],
    ...["-f", "lavfi", "-i", `sine=frequency=440:sample_rate=48000:duration=${seconds}`],
    ...["-ac", "2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
    ...["-c:a", "aac", "-b:a", "128k", "-shortest", file],
  ]);
}

/**
 * Audio-heavy: a music video or a podcast with a still picture, 160x90 at 1 fps and dense stereo
 * AAC 192 kb/s (pink noise under a tone, which keeps the MP3 encoder busy).
 */
export async function makeAudioHeavy(ffmpeg: string, file: string, seconds: number): Promise<void> {
  await run(ffmpeg, [
    ...quiet,
    ...["-f", "lavfi", "-i", `color=c=black:size=160x90:rate=1:duration=${seconds}`],
    ...["-f", "lavfi", "-i", `anoisesrc=color=pink:amplitude=0.2:sample_rate=48000:duration=${seconds}`],
    ...["-f", "lavfi", "-i", `sine=frequency=220:sample_rate=48000:duration=${seconds}`],
    ...["-filter_complex", "[1:a][2:a]amix=inputs=2,aformat=channel_layouts=stereo[a]"],
    ...["-map", "0:v", "-map", "[a]", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
    ...["-c:a", "aac", "-b:a", "192k", "-shortest", file],
  ]);
}

/** A short video with its index (moov) first, the start of the padded uploads. */
export async function makeSmallVideo(ffmpeg: string, file: string, seconds = 2): Promise<void> {
  await run(ffmpeg, [
    ...quiet,
    ...["-f", "lavfi", "-i", `testsrc=size=160x120:rate=10:duration=${seconds}`],
    ...["-f", "lavfi", "-i", `sine=frequency=440:sample_rate=44100:duration=${seconds}`],
    ...["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"],
    ...["-movflags", "+faststart", "-shortest", file],
  ]);
}

/**
 * A valid MP4 of exactly `bytes`: a small real video followed by one top-level `free` box (64-bit
 * size) of random bytes. It is sniffed as MP4 and converts in a moment (ffmpeg skips the box), so
 * an upload of any size is a real, successful job whose cost is the transfer itself.
 */
export async function makePaddedVideo(smallVideo: string, file: string, bytes: number): Promise<void> {
  const head = await readFile(smallVideo);
  const boxHeader = Buffer.alloc(16);
  const padding = bytes - head.length;
  if (padding < boxHeader.length) throw new Error(`${bytes} bytes is smaller than the video itself`);
  boxHeader.writeUInt32BE(1, 0); // size 1: the real size follows as 64 bits
  boxHeader.write("free", 4, "latin1");
  boxHeader.writeBigUInt64BE(BigInt(padding), 8);
  const out = createWriteStream(file);
  const write = (chunk: Buffer) =>
    new Promise<void>((resolve, reject) => out.write(chunk, (error) => (error ? reject(error) : resolve())));
  await write(head);
  await write(boxHeader);
  // Random rather than zeros, so the multipart parser scans bytes that look like real video data.
  const block = randomBytes(4 * 1024 * 1024);
  for (let left = padding - boxHeader.length; left > 0; left -= block.length) {
    await write(left >= block.length ? block : block.subarray(0, left));
  }
  await new Promise<void>((resolve, reject) =>
    out.end((error?: Error | null) => (error ? reject(error) : resolve())),
  );
  const { size } = await stat(file);
  if (size !== bytes) throw new Error(`made ${size} bytes instead of ${bytes}`);
}
