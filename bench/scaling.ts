import { execFile, spawn } from "node:child_process";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { writeChart } from "./chart.ts";
import { rawFfmpeg } from "./conversion.ts";
import { makeAudioHeavy, systemFfmpeg } from "./media.ts";
import { mebibytes, median, now, printTable, ratio, say, seconds, withStep } from "./report.ts";
import { gateway, procMemory, resetPeakMemory, scratchDir, startSystem } from "./system.ts";

const run = promisify(execFile);
const convertAlone = new URL("./convert-alone.ts", import.meta.url).pathname;

/**
 * Long inputs: where segmented encoding should show (many files, where it must not hurt, are
 * throughput.ts).
 *
 * Time against the video's length, end to end through `vid2mp3 serve all` (login, upload,
 *    convert, download) and plain ffmpeg with the converter's own arguments, one run per length,
 *    drawn as an SVG chart; the longest (60 minutes) is the headline ratio (the median of `runs`
 *    alternating runs: this kind of VM's speed wanders by a fifth from minute to minute), with the
 *    server's and its ffmpeg processes' peak memory during it.
 *
 * The inputs are one 5-minute audio-heavy video (dense AAC) made with ffmpeg, cut or repeated
 * with stream copy (the concat demuxer) to each length: quick to make, real to convert.
 */

export interface ScalingOptions {
  quick: boolean;
  /** Alternating runs of the longest input, whose median is reported. */
  runs: number;
  /** Where the SVG chart goes. */
  chartFile: string;
}

interface Point {
  minutes: number;
  raw: number;
  vid2mp3: number;
  /** The converter log's "segments" (undefined: a single run). */
  segments: number | undefined;
  /** Every run's time, when there was more than one (raw and vid2mp3 are their medians). */
  runs: { raw: number[]; vid2mp3: number[] };
}

export async function scalingBench({ quick, runs, chartFile }: ScalingOptions): Promise<void> {
  say("\n## 4. Long inputs: segmented encoding");
  const dir = await scratchDir("scaling");
  const ffmpeg = await systemFfmpeg();
  const lengths = quick ? [1, 2, 5] : [1, 5, 15, 30, 60];
  const base = path.join(dir, "base-5min.mp4");
  const inputs = new Map<number, string>();
  await withStep("scaling: making the inputs (a 5-minute video, cut and repeated)", async (s) => {
    await makeAudioHeavy(ffmpeg.path, base, 300);
    for (const minutes of lengths) {
      s.update(`${minutes} min`);
      inputs.set(minutes, await lengthOf(ffmpeg.path, base, minutes, dir));
    }
  });

  const system = await withStep("scaling: starting vid2mp3 serve all", () => startSystem());
  const client = gateway(system.url);
  const token = await client.login();
  const scratchMp3 = path.join(dir, "raw.mp3");
  const points: Point[] = [];
  let memory: { atRest: number; peak: number; ffmpegPeak: { rss: number; pss: number } } | undefined;
  try {
    // Warm-up: each side once on the shortest input.
    await rawFfmpeg(ffmpeg.path, inputs.get(lengths[0] as number) as string, scratchMp3);
    await convertThrough(client, token, inputs.get(lengths[0] as number) as string);
    for (const minutes of lengths) {
      const file = inputs.get(minutes) as string;
      const longest = minutes === lengths.at(-1);
      // The headline is the longest: runs taking turns, so a slow minute of the machine does not
      // fall on one side only; the others once each, for the chart's shape.
      const times = { raw: [] as number[], vid2mp3: [] as number[] };
      let segments: number | undefined;
      for (let round = 1; round <= (longest ? runs : 1); round++) {
        const label = `scaling: ${minutes} min, plain ffmpeg then vid2mp3${longest && runs > 1 ? ` (${round}/${runs})` : ""}`;
        await withStep(label, async () => {
          times.raw.push(await rawFfmpeg(ffmpeg.path, file, scratchMp3));
          const measureMemory = longest && round === 1;
          const atRest = await procMemory(system.pid, "VmRSS");
          if (measureMemory) await resetPeakMemory(system.pid);
          const sampler = measureMemory ? sampleChildMemory(system.pid) : undefined;
          const { ms, jobId } = await convertThrough(client, token, file);
          const ffmpegPeak = (await sampler?.stop()) ?? { rss: 0, pss: 0 };
          if (measureMemory) memory = { atRest, peak: await procMemory(system.pid, "VmHWM"), ffmpegPeak };
          times.vid2mp3.push(ms);
          segments = (await finishedRecord(system.logFile, jobId))?.segments as number | undefined;
        });
      }
      points.push({ minutes, raw: median(times.raw), vid2mp3: median(times.vid2mp3), segments, runs: times });
    }
  } finally {
    await system.stop();
  }

  const headline = points.at(-1) as Point;
  const runsNote =
    headline.runs.raw.length > 1
      ? `, the longest the median of ${headline.runs.raw.length} alternating runs`
      : "";
  printTable(
    `Conversion time against the video's length, one run each${runsNote} (plain ffmpeg: the converter's own arguments, same quality)`,
    ["length", "vid2mp3 end to end", "plain ffmpeg", "speed-up", "segments"],
    points.map((p) => [
      `${p.minutes} min`,
      seconds(p.vid2mp3),
      seconds(p.raw),
      ratio(p.raw / p.vid2mp3),
      p.segments === undefined ? "1 (single run)" : String(p.segments),
    ]),
    "speed-up = plain ffmpeg time ÷ vid2mp3 time (above 1: vid2mp3 is faster). vid2mp3 includes the\n" +
      "login, the upload, the queue, the events and the download; from CONVERTER_SEGMENT_MIN_SECONDS (180 s)\n" +
      "the converter encodes segments on the free cores at once and joins them.",
  );
  if (headline.runs.raw.length > 1) {
    const each = (values: number[]) => values.map((ms) => (ms / 1000).toFixed(1)).join(", ");
    say(
      `\n${headline.minutes} min, every run (s): plain ffmpeg ${each(headline.runs.raw)}; vid2mp3 ${each(headline.runs.vid2mp3)}; ` +
        `speed-up per pair ${headline.runs.raw.map((raw, k) => ratio(raw / (headline.runs.vid2mp3[k] as number))).join(", ")}`,
    );
  }
  if (memory) {
    say(
      `\nMemory during the ${lengths.at(-1)}-minute conversion: vid2mp3 serve all (all four services) ` +
        `${mebibytes(memory.atRest)} at rest, peak ${mebibytes(memory.peak)} (+${mebibytes(memory.peak - memory.atRest)}); ` +
        `its ffmpeg processes together at most ${mebibytes(memory.ffmpegPeak.pss)} ` +
        `(PSS; ${mebibytes(memory.ffmpegPeak.rss)} counting their shared libraries once each).`,
    );
    const longest = inputs.get(lengths.at(-1) as number) as string;
    const alone = await withStep("scaling: the longest input converted in a process of its own", () =>
      conversionAlone(longest, dir, ffmpeg.path),
    );
    say(
      `The converter's conversion alone (its transcode in a Node process of its own, ${alone.segments} segments): ` +
        `peak ${mebibytes(alone.peak)} (${mebibytes(alone.atRest)} at rest with the code loaded); ` +
        `its ffmpeg processes together at most ${mebibytes(alone.ffmpegPeak.pss)} PSS (${mebibytes(alone.ffmpegPeak.rss)} RSS).`,
    );
  }
  await writeChart(chartFile, {
    title: "Time to convert against the video's length",
    subtitle: `${new Date().toISOString().slice(0, 10)}, load average ${loadavg()[0]?.toFixed(2)} at the end; 1 run each${runsNote}`,
    xLabel: "video length (minutes)",
    yLabel: "seconds",
    series: [
      { name: "plain ffmpeg", color: "#888", points: points.map((p) => ({ x: p.minutes, y: p.raw / 1000 })) },
      {
        name: "vid2mp3, end to end",
        color: "#d62728",
        points: points.map((p) => ({ x: p.minutes, y: p.vid2mp3 / 1000 })),
      },
    ],
  });
  say(`chart: ${chartFile}`);
}

/** `minutes` of `base` (5 minutes): cut, or repeated with the concat demuxer, by stream copy. */
async function lengthOf(ffmpeg: string, base: string, minutes: number, dir: string): Promise<string> {
  const file = path.join(dir, `video-${minutes}min.mp4`);
  const list = path.join(dir, `list-${minutes}.txt`);
  const repeats = Math.ceil(minutes / 5);
  await writeFile(list, Array.from({ length: repeats }, () => `file '${base}'\n`).join(""));
  await run(ffmpeg, [
    ...["-nostdin", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", list],
    ...["-t", String(minutes * 60), "-c", "copy", file],
  ]);
  return file;
}

/** One file through vid2mp3 as a user's script does it: upload, wait for done over SSE, download. */
async function convertThrough(
  client: ReturnType<typeof gateway>,
  token: string,
  file: string,
): Promise<{ ms: number; jobId: string }> {
  const started = now();
  const events = await client.events(token);
  try {
    const { jobId } = await client.upload(token, file);
    const job = await events.next(jobId);
    if (job.status !== "done" || !job.mp3Id) throw new Error(`job ${jobId} ${job.status}: ${job.error}`);
    await client.download(token, job.mp3Id);
    const ms = now() - started;
    await client.deleteJob(token, jobId);
    return { ms, jobId };
  } finally {
    await events.close();
  }
}

async function finishedRecord(logFile: string, jobId: string): Promise<Record<string, unknown> | undefined> {
  for (const line of (await readFile(logFile, "utf8")).split("\n")) {
    if (!line.includes(jobId) || !line.includes("conversion finished")) continue;
    try {
      return JSON.parse(line) as Record<string, unknown>;
    } catch {
      // Not a JSON line.
    }
  }
  return undefined;
}

/**
 * Samples, every 100 ms, the memory of the ffmpeg processes under `pid` (its children) and keeps
 * the largest totals seen; `stop()` resolves with them in bytes. RSS counts the libraries they
 * share once per process; PSS (proportional set size) splits shared pages among their users, so
 * its sum is what the processes take together.
 */
function sampleChildMemory(pid: number): { stop(): Promise<{ rss: number; pss: number }> } {
  const peak = { rss: 0, pss: 0 };
  let running = true;
  const loop = (async () => {
    while (running) {
      let rss = 0;
      let pss = 0;
      for (const entry of await readdir("/proc").catch(() => [] as string[])) {
        if (!/^\d+$/.test(entry)) continue;
        const status = await readFile(`/proc/${entry}/status`, "utf8").catch(() => "");
        if (!new RegExp(`^PPid:\\s+${pid}$`, "m").test(status) || !/^Name:\s+ffmpeg/m.test(status)) continue;
        rss += Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0) * 1024;
        const rollup = await readFile(`/proc/${entry}/smaps_rollup`, "utf8").catch(() => "");
        pss += Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0) * 1024;
      }
      peak.rss = Math.max(peak.rss, rss);
      peak.pss = Math.max(peak.pss, pss);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return peak;
    },
  };
}

/** The longest input converted by `convert-alone.ts` in a process of its own: its memory and its ffmpeg's. */
async function conversionAlone(file: string, dir: string, ffmpeg: string) {
  const child = spawn(process.execPath, [convertAlone, file, path.join(dir, "alone.mp3"), ffmpeg], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const sampler = child.pid === undefined ? undefined : sampleChildMemory(child.pid);
  let stdout = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", resolve);
  });
  const ffmpegPeak = (await sampler?.stop()) ?? { rss: 0, pss: 0 };
  if (code !== 0) throw new Error(`convert-alone.ts exited with ${code}`);
  const node = JSON.parse(stdout) as { atRest: number; peak: number; segments: number };
  return { ...node, ffmpegPeak };
}
