import { rm } from "node:fs/promises";
import path from "node:path";
import { makePaddedVideo, makeSmallVideo, systemFfmpeg } from "./media.ts";
import { mebibytes, median, printTable, ratio, say, throughput, withStep } from "./report.ts";
import {
  type BareMode,
  gateway,
  procMemory,
  type RunningProcess,
  resetPeakMemory,
  scratchDir,
  startBareServer,
  startSystem,
  uploadMultipart,
} from "./system.ts";

/**
 * Upload streaming: one large multipart upload at a time to vid2mp3's `POST /upload` and to a
 * bare node:http server that only drains the body (the baseline; also one that writes it to disk
 * and fsyncs it at the end, what vid2mp3's folder store must do with the bytes). Throughput, and the server's peak RSS per upload
 * (VmHWM, reset before each one) to show that memory does not grow with the file.
 */

export interface UploadOptions {
  quick: boolean;
  runs: number;
}

interface Measured {
  ms: number[];
  peak: number[];
}

const MiB = 1024 * 1024;

export async function uploadBench({ quick, runs }: UploadOptions): Promise<void> {
  say("\n## 2. Upload streaming: POST /upload vs a bare HTTP server draining the body");
  const dir = await scratchDir("upload");
  const ffmpeg = await systemFfmpeg();
  const sizes = quick ? [20 * MiB, 100 * MiB] : [100 * MiB, 500 * MiB];
  const small = path.join(dir, "small.mp4");
  const files = new Map<number, string>();
  await withStep("upload: generating the upload files (a real MP4 + a padding box)", async (s) => {
    await makeSmallVideo(ffmpeg.path, small);
    for (const size of sizes) {
      s.update(mebibytes(size));
      const file = path.join(dir, `upload-${size / MiB}MiB.mp4`);
      await makePaddedVideo(small, file, size);
      files.set(size, file);
    }
  });

  let peakResettable = true;
  /** One upload, with the server's peak RSS during it; `after` runs untimed once it is answered. */
  async function measure(
    server: RunningProcess,
    label: string,
    send: (file: string, onProgress: (sent: number, total: number) => void) => Promise<number>,
    after: () => Promise<void> = async () => {},
  ): Promise<{ bySize: Map<number, Measured> }> {
    const bySize = new Map<number, Measured>();
    await withStep(`upload: ${label}`, async (s) => {
      await send(small, () => {}); // warm-up
      await after();
      for (const size of sizes) {
        const measured: Measured = { ms: [], peak: [] };
        for (let i = 1; i <= runs; i++) {
          peakResettable = (await resetPeakMemory(server.pid)) && peakResettable;
          measured.ms.push(
            await send(files.get(size) as string, (sent, total) =>
              s.update(`${mebibytes(size)} run ${i}/${runs}: ${Math.round((100 * sent) / total)} %`),
            ),
          );
          measured.peak.push(await procMemory(server.pid, "VmHWM"));
          await after();
        }
        bySize.set(size, measured);
      }
    });
    return { bySize };
  }

  const baselines = new Map<BareMode, { idle: number; bySize: Map<number, Measured> }>();
  for (const mode of ["drain", "disk"] as const) {
    const bare = await startBareServer(mode);
    const idle = await procMemory(bare.pid, "VmRSS");
    const result = await measure(bare, `bare node:http server (${mode})`, async (file, onProgress) => {
      const { status, body, ms } = await uploadMultipart(
        new URL("/upload", bare.url),
        file,
        {},
        { onProgress },
      );
      if (status !== 202) throw new Error(`bare server answered ${status}: ${body}`);
      return ms;
    });
    baselines.set(mode, { ...result, idle });
    await bare.stop();
  }

  const system = await withStep("upload: starting vid2mp3 serve all", () => startSystem());
  const client = gateway(system.url);
  const token = await client.login();
  const events = await client.events(token);
  const idle = await procMemory(system.pid, "VmRSS");
  let lastJob: string | undefined;
  let failed = 0;
  const vid2mp3 = await measure(
    system,
    "vid2mp3 POST /upload",
    async (file, onProgress) => {
      const { jobId, ms } = await client.upload(token, file, { onProgress });
      lastJob = jobId;
      return ms;
    },
    // Not timed: let the (quick) conversion end and delete the job, so nothing overlaps the next upload.
    async () => {
      if (!lastJob) return;
      const job = await events.next(lastJob);
      if (job.status !== "done") failed++;
      await client.deleteJob(token, lastJob);
    },
  );
  await events.close();
  await system.stop();
  await Promise.all([...files.values()].map((file) => rm(file, { force: true })));

  const drain = baselines.get("drain");
  const disk = baselines.get("disk");
  const rate = (size: number, m?: Measured) => (m ? size / MiB / (median(m.ms) / 1000) : Number.NaN);
  const rows: string[][] = [];
  for (const size of sizes) {
    const v = vid2mp3.bySize.get(size);
    const vRate = rate(size, v);
    const vText = v ? throughput(size, median(v.ms)) : "n/a";
    const d = drain?.bySize.get(size);
    const k = disk?.bySize.get(size);
    rows.push([
      `${mebibytes(size)}: vs bare server draining the body`,
      vText,
      d ? throughput(size, median(d.ms)) : "n/a",
      ratio(vRate / rate(size, d)),
    ]);
    rows.push([
      `${mebibytes(size)}: vs bare server writing it to disk + fsync`,
      vText,
      k ? throughput(size, median(k.ms)) : "n/a",
      ratio(vRate / rate(size, k)),
    ]);
  }
  printTable(
    `Upload throughput over loopback, one upload at a time, median of ${runs}`,
    ["what", "vid2mp3", "baseline", "ratio"],
    rows,
    "MiB/s from the first byte sent to the answer received (vid2mp3 answers 202 only once the file is\n" +
      "fsynced, the job row written and the message queued). ratio = vid2mp3 ÷ baseline throughput:\n" +
      "1.00× is as fast as the bare server, 0.50× half as fast. The client (node:http streaming the\n" +
      "same multipart body from a cached file) and the server share the machine's 2 cores.",
  );

  const memRow = (label: string, idleBytes: number, result?: { bySize: Map<number, Measured> }) => [
    label,
    mebibytes(idleBytes),
    ...sizes.map((size) => {
      const m = result?.bySize.get(size);
      return m ? mebibytes(Math.max(...m.peak)) : "n/a";
    }),
  ];
  printTable(
    `Server memory: resident set at rest and its peak during one upload (VmHWM${peakResettable ? ", reset before each upload" : ", since start: clear_refs was refused"})`,
    ["server", "at rest", ...sizes.map((size) => `peak, ${mebibytes(size)} upload`)],
    [
      memRow("vid2mp3 serve all (all four services)", idle, vid2mp3),
      memRow("bare node:http, drain", drain?.idle ?? Number.NaN, drain),
      memRow("bare node:http, disk + fsync", disk?.idle ?? Number.NaN, disk),
    ],
    "Flat memory means the peak is the same whatever the upload's size (the file streams through);\n" +
      "a peak growing with the size would mean the upload is buffered.",
  );
  if (failed > 0) say(`warning: ${failed} uploaded job(s) did not convert (see the server log)`);
}
