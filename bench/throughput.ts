import { execFile, spawn } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { makeAudioHeavy, systemFfmpeg } from "./media.ts";
import { inTurn, median, now, printTable, ratio, say, seconds, withStep } from "./report.ts";
import { gateway, scratchDir, startSystem } from "./system.ts";

const run = promisify(execFile);

/**
 * Many files: 8 of them at CONVERTER_CONCURRENCY=2 against `xargs -P 2` running plain ffmpeg on
 * the same files, `runs` alternating rounds. Where segmented encoding must not hurt: with a
 * queue, every core already has a conversion of its own.
 */

export interface ThroughputOptions {
  quick: boolean;
  /** Alternating rounds, whose medians are reported. */
  runs: number;
}

const FILES = 8;

export async function throughputBench({ quick, runs }: ThroughputOptions): Promise<void> {
  say("\n## 5. Throughput: many files, two at a time");
  const dir = await scratchDir("throughput");
  const ffmpeg = (await systemFfmpeg()).path;
  const seconds8 = quick ? 30 : 120;
  const files = await withStep(`throughput: making ${FILES} files of ${seconds8} s`, () =>
    makeFiles(ffmpeg, dir, seconds8),
  );

  const system = await withStep("throughput: starting vid2mp3 serve all with CONVERTER_CONCURRENCY=2", () =>
    // All 8 queued at once, as xargs has them all: the per-user limit of active jobs (5 by
    // default) is lifted for this one user.
    startSystem({ CONVERTER_CONCURRENCY: "2", MAX_ACTIVE_JOBS_PER_USER: "0" }),
  );
  const client = gateway(system.url);
  const token = await client.login();
  /**
   * All 8 uploaded, then each waited for and downloaded: the time until the last MP3 is in hand.
   * The jobs are deleted afterwards (not timed), so every round starts from the same empty store.
   */
  const throughVid2mp3 = async (fields: Record<string, string>): Promise<number> => {
    const started = now();
    const events = await client.events(token);
    try {
      const jobIds: string[] = [];
      for (const file of files) jobIds.push((await client.upload(token, file, { fields })).jobId);
      for (const jobId of jobIds) {
        const job = await events.next(jobId);
        if (job.status !== "done" || !job.mp3Id) throw new Error(`job ${jobId} ${job.status}: ${job.error}`);
        await client.download(token, job.mp3Id);
      }
      const ms = now() - started;
      for (const jobId of jobIds) await client.deleteJob(token, jobId);
      return ms;
    } finally {
      await events.close();
    }
  };
  const times = { baseline: [] as number[], ours: [] as number[], oursNoCover: [] as number[] };
  try {
    // Warm-up, as the other benchmarks do: the server's first jobs load code and fill caches.
    await withStep("throughput: warming up (one round each, not counted)", async () => {
      await xargs(ffmpeg, files);
      await throughVid2mp3({});
    });
    const sides = [
      { name: "xargs", run: () => xargs(ffmpeg, files), times: times.baseline },
      { name: "vid2mp3", run: () => throughVid2mp3({}), times: times.ours },
      {
        name: "vid2mp3 with cover=none",
        run: () => throughVid2mp3({ cover: "none" }),
        times: times.oursNoCover,
      },
    ];
    for (let round = 1; round <= runs; round++) {
      const of = runs > 1 ? ` (${round}/${runs})` : "";
      await withStep(
        `throughput: ${FILES} files of ${seconds8} s, xargs -P 2 and vid2mp3${of}`,
        async (s) => {
          for (const side of inTurn(sides, round)) {
            s.update(side.name);
            side.times.push(await side.run());
          }
        },
      );
    }
  } finally {
    await system.stop();
  }
  const baseline = median(times.baseline);
  const each = (values: number[]) => values.map((ms) => (ms / 1000).toFixed(2)).join(", ");
  printTable(
    `Throughput: ${FILES} files of ${seconds8} s, two at a time${runs > 1 ? `, median of ${runs} alternating runs` : ""}`,
    ["what", "vid2mp3", "xargs -P 2 ffmpeg", "ratio"],
    [
      { what: `${FILES} × ${seconds8} s (${(FILES * seconds8) / 60} min of audio)`, ms: median(times.ours) },
      { what: "  same, cover=none (the baseline's work)", ms: median(times.oursNoCover) },
    ].map(({ what, ms }) => [what, seconds(ms), seconds(baseline), ratio(baseline / ms)]),
    "vid2mp3: CONVERTER_CONCURRENCY=2, all 8 uploaded one after the other, then each waited for and\n" +
      "downloaded; baseline: xargs -P 2 running plain ffmpeg (-q:a 2) on the same files, already on disk.\n" +
      "ratio = baseline time ÷ vid2mp3 time (1.00× is the same throughput; files this short are never\n" +
      "segmented).",
  );
  if (runs > 1) {
    say(
      `\nevery run (s): xargs ${each(times.baseline)}; vid2mp3 ${each(times.ours)}; cover=none ${each(times.oursNoCover)}`,
    );
  }
}

/** FILES different files of `seconds` each, cut by stream copy from one audio-heavy video. */
async function makeFiles(ffmpeg: string, dir: string, seconds: number): Promise<string[]> {
  const base = path.join(dir, "base.mp4");
  await makeAudioHeavy(ffmpeg, base, seconds + FILES * 10);
  const files: string[] = [];
  for (let i = 0; i < FILES; i++) {
    const file = path.join(dir, `file-${i}.mp4`);
    await run(ffmpeg, [
      ...["-nostdin", "-v", "error", "-y", "-ss", String(i * 10), "-i", base],
      ...["-t", String(seconds), "-c", "copy", file],
    ]);
    files.push(file);
  }
  return files;
}

/** `xargs -P 2` running plain ffmpeg on every file: the time until the last MP3 is written. */
async function xargs(ffmpeg: string, files: string[]): Promise<number> {
  const started = now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(
      "xargs",
      [
        ...["-0", "-P", "2", "-I{}", ffmpeg, "-nostdin", "-v", "error", "-y", "-i", "{}"],
        ...["-vn", "-c:a", "libmp3lame", "-q:a", "2", "{}.mp3"],
      ],
      { stdio: ["pipe", "ignore", "inherit"] },
    );
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve() : reject(new Error(`xargs exited with ${code}`))));
    child.stdin.end(files.map((f) => `${f}\0`).join(""));
  });
  return now() - started;
}
