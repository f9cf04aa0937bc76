import { execFile } from "node:child_process";
import { promisify } from "node:util";

const run = promisify(execFile);

/** Makes a small test video with ffmpeg's synthetic sources (no fixtures in the repository). */
export async function makeVideo(
  file: string,
  options: { seconds: number; audio?: boolean; container?: "mp4" | "mkv" | "webm" | "avi" } = { seconds: 2 },
): Promise<void> {
  const audio = options.audio ?? true;
  const args = ["-hide_banner", "-loglevel", "error", "-y"];
  args.push("-f", "lavfi", "-i", `testsrc=size=160x120:rate=10:duration=${options.seconds}`);
  if (audio)
    args.push("-f", "lavfi", "-i", `sine=frequency=440:sample_rate=44100:duration=${options.seconds}`);
  const container = options.container ?? "mp4";
  if (container === "webm") args.push("-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus");
  else if (container === "avi") args.push("-c:v", "mpeg4", "-c:a", "mp3");
  else args.push("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac");
  args.push("-shortest", file);
  await run("ffmpeg", args);
}

/** Duration in seconds of a file's first audio stream, as ffprobe reads it. */
export async function audioDuration(file: string): Promise<number> {
  const { stdout } = await run("ffprobe", [
    "-v",
    "error",
    "-select_streams",
    "a:0",
    "-show_entries",
    "stream=duration:format=duration",
    "-of",
    "json",
    file,
  ]);
  const probe = JSON.parse(stdout) as { streams?: { duration?: string }[]; format?: { duration?: string } };
  const value = probe.streams?.[0]?.duration ?? probe.format?.duration;
  if (value === undefined) throw new Error(`ffprobe found no duration in ${file}`);
  return Number(value);
}

/** The codec of a file's first audio stream. */
export async function audioCodec(file: string): Promise<string> {
  const { stdout } = await run("ffprobe", [
    "-v",
    "error",
    "-select_streams",
    "a:0",
    "-show_entries",
    "stream=codec_name",
    "-of",
    "default=nw=1:nk=1",
    file,
  ]);
  return stdout.trim();
}
