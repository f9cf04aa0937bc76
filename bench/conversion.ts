import { spawn } from "node:child_process";
import { stat } from "node:fs/promises";
import path from "node:path";
import { buildFfmpegArgs } from "../src/converter/ffmpeg-args.ts";
import {
  ffmpegVersion,
  makeAudioHeavy,
  makeSmallVideo,
  makeVideo,
  packagedFfmpeg,
  systemFfmpeg,
} from "./media.ts";
import { inTurn, mebibytes, median, now, printTable, ratio, say, seconds, withStep } from "./report.ts";
import { gateway, scratchDir, startSystem } from "./system.ts";

/**
 * Conversion: the same file converted by raw ffmpeg with vid2mp3's own command line (the
 * baseline) and end to end through `vid2mp3 serve all` (login, upload, wait for done over SSE,
 * download). The ratio is the overhead of the whole system around ffmpeg.
 */

export interface ConversionOptions {
  quick: boolean;
  runs: number;
}

interface Sample {
  login: number;
  upload: number;
  convert: number;
  download: number;
  total: number;
  mp3Bytes: number;
}

/** The short clip is measured this many times `runs` (see `files`). */
const CLIP_RUNS_FACTOR = 5;

/** Raw ffmpeg with exactly the arguments the converter builds (mov is what the gateway sniffs for MP4). */
export async function rawFfmpeg(binary: string, input: string, output: string): Promise<number> {
  const args = buildFfmpegArgs({ input, output, format: "mov" });
  const started = now();
  const child = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", resolve);
  });
  const ms = now() - started;
  if (code !== 0) throw new Error(`${binary} exited with ${code}:\n${stderr}`);
  return ms;
}

export async function conversionBench({ quick, runs }: ConversionOptions): Promise<void> {
  say("\n## 1. Conversion: raw ffmpeg vs end to end through vid2mp3");
  const dir = await scratchDir("conversion");
  const ffmpeg = await systemFfmpeg();
  const packaged = packagedFfmpeg();
  const other =
    packaged !== undefined && path.resolve(packaged) !== path.resolve(ffmpeg.path) ? packaged : undefined;

  const videoSeconds = quick ? 10 : 60;
  const audioSeconds = quick ? 30 : 300;
  const files = [
    {
      name: `${videoSeconds} s video, 640x360 30 fps H.264 + AAC 128k`,
      file: path.join(dir, `video-${videoSeconds}s.mp4`),
      make: (f: string) => makeVideo(ffmpeg.path, f, videoSeconds),
      // A conversion of half a second swings by a tenth from run to run on a shared VM, as much as
      // what is measured: five times the runs (a second and a half each) make its median stand.
      runs: quick ? runs : runs * CLIP_RUNS_FACTOR,
    },
    {
      name: `${audioSeconds} s audio-heavy, 160x90 1 fps + AAC 192k noise`,
      file: path.join(dir, `audio-${audioSeconds}s.mp4`),
      make: (f: string) => makeAudioHeavy(ffmpeg.path, f, audioSeconds),
      runs,
    },
  ];
  const warmUpFile = path.join(dir, "warm-up.mp4");
  await withStep("conversion: generating the test videos with ffmpeg", async (s) => {
    await makeSmallVideo(ffmpeg.path, warmUpFile, 2);
    for (const { name, file, make } of files) {
      s.update(name);
      await make(file);
    }
  });

  const system = await withStep("conversion: starting vid2mp3 serve all", () => startSystem());
  const serverFfmpeg = await system.logRecord("using ffmpeg");
  const client = gateway(system.url);
  const scratchMp3 = path.join(dir, "raw.mp3");

  /** One end-to-end conversion, as a user's script does it; the job is deleted afterwards (not timed). */
  async function throughVid2mp3(file: string, fields: Record<string, string> = {}): Promise<Sample> {
    const t0 = now();
    const token = await client.login();
    const t1 = now();
    const events = await client.events(token);
    try {
      const { jobId } = await client.upload(token, file, { fields });
      const t2 = now();
      const job = await events.next(jobId);
      const t3 = now();
      if (job.status !== "done" || !job.mp3Id) throw new Error(`job ${jobId} ${job.status}: ${job.error}`);
      const mp3Bytes = await client.download(token, job.mp3Id);
      const t4 = now();
      await client.deleteJob(token, jobId);
      return {
        login: t1 - t0,
        upload: t2 - t1,
        convert: t3 - t2,
        download: t4 - t3,
        total: t4 - t0,
        mp3Bytes,
      };
    } finally {
      await events.close();
    }
  }

  await withStep("conversion: warming up (each ffmpeg once, vid2mp3 once)", async () => {
    await rawFfmpeg(ffmpeg.path, warmUpFile, scratchMp3);
    if (other) await rawFfmpeg(other, warmUpFile, scratchMp3);
    await throughVid2mp3(warmUpFile);
  });

  const results: {
    name: string;
    size: number;
    raw: number[];
    other: number[];
    vid2mp3: Sample[];
    /** With `cover=none`: the same work as the baseline (no picture made). */
    noCover: Sample[];
    rawMp3Bytes: number;
  }[] = [];
  for (const { name, file, runs: rounds } of files) {
    const result = {
      name,
      size: (await stat(file)).size,
      raw: [] as number[],
      other: [] as number[],
      vid2mp3: [] as Sample[],
      noCover: [] as Sample[],
      rawMp3Bytes: 0,
    };
    await withStep(`conversion: ${name}`, async (s) => {
      // Interleaved, so a slow moment of the machine does not land on one side only, and taking
      // turns going first, so none always follows the same one (a disk still writing back the
      // last run's files slows the next upload's fsync).
      const sides = [
        {
          name: "raw ffmpeg",
          run: async () => {
            result.raw.push(await rawFfmpeg(ffmpeg.path, file, scratchMp3));
            result.rawMp3Bytes = (await stat(scratchMp3)).size;
          },
        },
        { name: "vid2mp3", run: async () => void result.vid2mp3.push(await throughVid2mp3(file)) },
        {
          name: "vid2mp3 with cover=none",
          run: async () => void result.noCover.push(await throughVid2mp3(file, { cover: "none" })),
        },
      ];
      for (let i = 1; i <= rounds; i++) {
        for (const side of inTurn(sides, i)) {
          s.update(`run ${i}/${rounds}, ${side.name}`);
          await side.run();
        }
        // The two ffmpeg builds differ threefold: `runs` rounds tell that well enough.
        if (other && i <= runs) {
          s.update(`run ${i}/${runs}, npm static ffmpeg`);
          result.other.push(await rawFfmpeg(other, file, scratchMp3));
        }
      }
    });
    results.push(result);
  }
  await system.stop();

  const med = (samples: Sample[], key: keyof Sample) => median(samples.map((sample) => sample[key]));
  const rows: string[][] = [];
  for (const r of results) {
    const raw = median(r.raw);
    const total = med(r.vid2mp3, "total");
    const perFile = total - med(r.vid2mp3, "login");
    rows.push([
      `${r.name} (${mebibytes(r.size)}): end to end`,
      seconds(total),
      seconds(raw),
      ratio(total / raw),
    ]);
    rows.push([
      "  same, token already in hand (no login)",
      seconds(perFile),
      seconds(raw),
      ratio(perFile / raw),
    ]);
    const noCover = med(r.noCover, "total") - med(r.noCover, "login");
    rows.push([
      "  same, and cover=none (the baseline's work: no picture)",
      seconds(noCover),
      seconds(raw),
      ratio(noCover / raw),
    ]);
  }
  printTable(
    `Conversion time, median of ${runs} run${runs === 1 ? "" : "s"}${quick ? "" : ` (the clip: ${runs * CLIP_RUNS_FACTOR})`}, taking turns (baseline: raw ffmpeg, same arguments as the converter)`,
    ["what", "vid2mp3", "raw ffmpeg", "ratio"],
    rows,
    "ratio = vid2mp3 time ÷ raw ffmpeg time: 1.00× would be no overhead at all; the part above 1 is what\n" +
      "the whole system adds around ffmpeg (HTTP, multipart, storage with fsync, queue, progress events,\n" +
      "SQLite updates, SSE, download). End to end includes a login (argon2id); the second line is what each\n" +
      "further file costs a client that keeps its token. A video gets its frame as the MP3's cover picture\n" +
      "by default, an ffmpeg run of its own beside the conversion; the third line leaves it out (cover=none),\n" +
      "so that vid2mp3 does exactly the baseline's work.",
  );

  const each = (values: number[]) => values.map((ms) => (ms / 1000).toFixed(2)).join(", ");
  for (const r of results) {
    say(
      `${r.name.split(",")[0] ?? r.name}, every run (s): raw ffmpeg ${each(r.raw)}; vid2mp3 ` +
        `${each(r.vid2mp3.map((x) => x.total))}; token in hand ${each(r.vid2mp3.map((x) => x.total - x.login))}; ` +
        `cover=none ${each(r.noCover.map((x) => x.total - x.login))}`,
    );
  }

  printTable(
    "Where the vid2mp3 time goes (medians)",
    ["file", "login", "upload→202", "202→done (SSE)", "download", "raw ffmpeg"],
    results.map((r) => [
      r.name.split(",")[0] ?? r.name,
      seconds(med(r.vid2mp3, "login")),
      seconds(med(r.vid2mp3, "upload")),
      seconds(med(r.vid2mp3, "convert")),
      seconds(med(r.vid2mp3, "download")),
      seconds(median(r.raw)),
    ]),
    "202→done is the queue, the conversion itself (the same ffmpeg command) and the job events until the\n" +
      "browser is told; compare it with the raw ffmpeg column to see the converter's own overhead.",
  );

  const used = String(serverFfmpeg?.path ?? "?");
  say(`\nffmpeg used by vid2mp3: ${used} (found via ${String(serverFfmpeg?.source ?? "?")})`);
  say(`  ${String(serverFfmpeg?.version ?? ffmpeg.version).replace(/ Copyright.*$/, "")}`);
  if (path.resolve(used) !== path.resolve(ffmpeg.path)) {
    say(`  (warning: the benchmark's raw baseline used ${ffmpeg.path})`);
  }
  say(
    `MP3 sizes (the same audio settings; vid2mp3's file also carries the video's frame as its cover picture, tens of KB): ${results
      .map((r) => `raw ${r.rawMp3Bytes} B vs vid2mp3 ${r.vid2mp3[0]?.mp3Bytes ?? "?"} B`)
      .join("; ")}`,
  );

  if (other) {
    const otherVersion = await ffmpegVersion(other);
    printTable(
      `ffmpeg builds: the npm package's static build vs the system one (raw, median of ${runs})`,
      ["what", "npm static", "system (baseline)", "ratio"],
      results.map((r) => [
        r.name,
        seconds(median(r.other)),
        seconds(median(r.raw)),
        ratio(median(r.other) / median(r.raw)),
      ]),
      `npm static: ${other}\n  ${otherVersion}\nsystem:     ${ffmpeg.path}\n  ${await ffmpegVersion(ffmpeg.path)}\n` +
        "ratio = static time ÷ system time: how much slower a laptop without ffmpeg installed converts.",
    );
  } else {
    say(
      "(no second ffmpeg build to compare: the npm package's static build is missing or is the one in use)",
    );
  }
}
