import { availableParallelism, cpus, loadavg, release, totalmem } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { conversionBench } from "./conversion.ts";
import { fanoutBench } from "./fanout.ts";
import { cpuBusy, now, say } from "./report.ts";
import { requestsBench } from "./requests.ts";
import { scalingBench } from "./scaling.ts";
import { cleanUp } from "./system.ts";
import { throughputBench } from "./throughput.ts";
import { uploadBench } from "./upload.ts";

const usage = `Usage: npm run bench -- [conversion|upload|requests|scaling|throughput|fanout ...] [options]

Benchmarks of vid2mp3 against a baseline measured in the same run, printed as ratios:
  conversion  raw ffmpeg (vid2mp3's own arguments) vs login + upload + convert + download
              through \`vid2mp3 serve all\`; also the npm package's static ffmpeg vs the system's
  upload      a 100 MiB and a 500 MiB multipart upload to POST /upload vs a bare node:http
              server draining the body; the server's peak memory during each
  requests    authenticated GET /jobs/:id per second vs a bare node:http server answering JSON
  scaling     time against video length up to 60 minutes, vid2mp3 vs plain ffmpeg (segmented
              encoding; an SVG chart), and peak memory on the longest
  throughput  8 files with two workers vs xargs -P 2 plain ffmpeg
  fanout      one 20-minute job on one converter vs two (CONVERTER_SEGMENT_FANOUT), one core each,
              vs plain ffmpeg
With no name, all six run (about 17 minutes on 2 cores; --quick about a minute).

Options:
  --quick            small files, one run, 2 s of load: a smoke run
  --runs <n>         runs per measurement for conversion (its 60 s clip: 5 × n) and upload,
                     of scaling's longest input, of throughput's 8 files and of fanout
                     (default 3, --quick 1)
  --connections <n>  concurrent connections for requests (default 16)
  --chart <file>     where scaling writes its SVG chart (default bench/time-vs-length.svg)
  -h, --help         this text

Everything runs on 127.0.0.1 in temporary folders removed at the end. Set FFMPEG_PATH to
benchmark another ffmpeg, as vid2mp3 itself would use it.`;

const benchmarks = ["conversion", "upload", "requests", "scaling", "throughput", "fanout"] as const;
type Benchmark = (typeof benchmarks)[number];

function fail(message: string): never {
  process.stderr.write(`${message}\n\n${usage}\n`);
  process.exit(2);
}

function positiveInt(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < 1) fail(`--${name} must be a whole number ≥ 1`);
  return Number(value);
}

let parsed: ReturnType<typeof parse>;
function parse() {
  return parseArgs({
    allowPositionals: true,
    options: {
      quick: { type: "boolean", default: false },
      runs: { type: "string" },
      connections: { type: "string" },
      chart: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
}
try {
  parsed = parse();
} catch (error) {
  fail((error as Error).message);
}
const { values, positionals } = parsed;
if (values.help) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}
for (const name of positionals) {
  if (!(benchmarks as readonly string[]).includes(name)) fail(`Unknown benchmark "${name}".`);
}
const chosen = (positionals.length > 0 ? [...new Set(positionals)] : [...benchmarks]) as Benchmark[];
const quick = values.quick;
const runs = positiveInt("runs", values.runs, quick ? 1 : 3);
const connections = positiveInt("connections", values.connections, 16);
const defaultChart = fileURLToPath(new URL(`./time-vs-length${quick ? "-quick" : ""}.svg`, import.meta.url));

let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write("\ninterrupted: stopping the servers and removing the temporary files…\n");
    cleanUp().finally(() => process.exit(130));
  });
}

const started = now();
say(`# vid2mp3 benchmarks${quick ? " (--quick)" : ""}: ${chosen.join(", ")}`);
say(
  `machine: ${availableParallelism()} cores (${cpus()[0]?.model.trim() ?? "unknown CPU"}), ` +
    `${(totalmem() / 1024 ** 3).toFixed(0)} GiB, Linux ${release()}; Node ${process.version}; ${new Date().toISOString()}`,
);
const busy = await cpuBusy();
if (Number.isFinite(busy)) {
  say(
    `CPU busy before the run: ${(busy * 100).toFixed(0)} % (load average ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")})`,
  );
  if (busy > 0.1) say("warning: the machine is not idle; other processes will add noise to the results");
}
let exitCode = 0;
try {
  for (const name of chosen) {
    if (name === "conversion") await conversionBench({ quick, runs });
    if (name === "upload") await uploadBench({ quick, runs });
    if (name === "requests") await requestsBench({ quick, connections });
    if (name === "scaling")
      await scalingBench({ quick, runs, chartFile: path.resolve(values.chart ?? defaultChart) });
    if (name === "throughput") await throughputBench({ quick, runs });
    if (name === "fanout") await fanoutBench({ quick, runs });
  }
  say(
    `\ndone in ${((now() - started) / 1000).toFixed(0)} s (load average at the end ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")})`,
  );
} catch (error) {
  // After Ctrl-C the servers are being stopped under the running benchmark: that error is no news.
  if (!interrupted)
    process.stderr.write(
      `\nbenchmark failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
    );
  exitCode = 1;
} finally {
  await cleanUp();
}
process.exit(exitCode);
