import { availableParallelism } from "node:os";
import { transcode } from "../src/converter/transcode.ts";
import { procMemory } from "./system.ts";

/**
 * One conversion as the converter makes it (its `transcode`, segmented on every core from 180 s),
 * in a Node process of its own: the scaling benchmark measures this process's peak memory apart
 * from the gateway, auth and notification that share `serve all`. Prints one JSON line.
 *
 * Usage: node bench/convert-alone.ts <input.mp4> <output.mp3> <ffmpeg>
 */
const [input, output, ffmpegPath] = process.argv.slice(2);
if (!input || !output || !ffmpegPath) {
  process.stderr.write("usage: node bench/convert-alone.ts <input.mp4> <output.mp3> <ffmpeg>\n");
  process.exit(2);
}
const atRest = await procMemory(process.pid, "VmRSS");
const result = await transcode({
  ffmpegPath,
  input,
  output,
  format: "mov",
  timeoutSeconds: 3600,
  fileName: "bench.mp4",
  options: { cover: "none" },
  segmenting: { workers: availableParallelism(), minSeconds: 180 },
});
process.stdout.write(
  `${JSON.stringify({ atRest, peak: await procMemory(process.pid, "VmHWM"), segments: result.segments ?? 1 })}\n`,
);
