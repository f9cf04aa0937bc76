import path from "node:path";
import autocannon from "autocannon";
import { makeSmallVideo, systemFfmpeg } from "./media.ts";
import { median, millis, perSecond, printTable, ratio, say, withStep } from "./report.ts";
import { gateway, type RunningProcess, scratchDir, startBareServer, startSystem } from "./system.ts";

/**
 * Requests: authenticated `GET /jobs/:id` (the token verified locally against the cached JWKS,
 * then one SQLite read) at a fixed concurrency, against a bare node:http server answering a
 * job-sized JSON (the baseline). autocannon runs in this process; each server in its own. The
 * targets take turns in short rounds, so a noisy moment of the machine hits them all alike.
 */

export interface RequestsOptions {
  quick: boolean;
  connections: number;
}

interface Target {
  what: string;
  url: string;
  headers: Record<string, string>;
  rps: number[];
  latencies: Float64Array[];
}

/** One autocannon run; latencies are kept per response (its own histogram rounds to whole ms). */
function cannon(
  options: autocannon.Options,
): Promise<{ result: autocannon.Result; latencies: Float64Array }> {
  return new Promise((resolve, reject) => {
    let latencies = new Float64Array(1 << 16);
    let count = 0;
    const instance = autocannon(options, (error, result) => {
      if (error) reject(error);
      else resolve({ result, latencies: latencies.subarray(0, count) });
    });
    instance.on("response", (_client, statusCode, _bytes, ms) => {
      if (statusCode < 200 || statusCode > 299) return;
      if (count === latencies.length) {
        const grown = new Float64Array(latencies.length * 2);
        grown.set(latencies);
        latencies = grown;
      }
      latencies[count++] = ms;
    });
  });
}

async function hit(target: Target, seconds: number, connections: number, record: boolean): Promise<void> {
  const { result, latencies } = await cannon({
    url: target.url,
    headers: target.headers,
    connections,
    duration: seconds,
  });
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`${target.url}: ${result.non2xx} non-2xx answers and ${result.errors} errors under load`);
  }
  if (!record) return;
  target.rps.push(result.requests.total / result.duration);
  target.latencies.push(latencies);
}

function percentiles(target: Target): { p50: number; p99: number } {
  const all = new Float64Array(target.latencies.reduce((n, l) => n + l.length, 0));
  let offset = 0;
  for (const l of target.latencies) {
    all.set(l, offset);
    offset += l.length;
  }
  all.sort();
  const at = (p: number) =>
    all.length === 0 ? Number.NaN : (all[Math.floor((p / 100) * (all.length - 1))] as number);
  return { p50: at(50), p99: at(99) };
}

export async function requestsBench({ quick, connections }: RequestsOptions): Promise<void> {
  say("\n## 3. Requests: authenticated GET /jobs/:id vs a bare HTTP server answering JSON");
  const rounds = quick ? 1 : 3;
  const seconds = quick ? 1 : 2;
  const warmUp = quick ? 1 : 2;
  const dir = await scratchDir("requests");
  const video = path.join(dir, "small.mp4");
  await makeSmallVideo((await systemFfmpeg()).path, video);

  const servers: RunningProcess[] = [];
  const targets: Target[] = [];
  const target = (what: string, url: string, headers: Record<string, string> = {}) => {
    const t: Target = { what, url, headers, rps: [], latencies: [] };
    targets.push(t);
    return t;
  };
  try {
    const bare = await startBareServer("json");
    servers.push(bare);
    const baseline = target("bare node:http", `${bare.url}/jobs/7d4b7c3e`);

    /** vid2mp3 with a done job to read; `LOG_LEVEL` as given (the shipped default is info). */
    async function vid2mp3(logLevel: string): Promise<{ url: string; jobPath: string; token: string }> {
      const system = await withStep(`requests: starting vid2mp3 (LOG_LEVEL=${logLevel})`, () =>
        startSystem({ LOG_LEVEL: logLevel }),
      );
      servers.push(system);
      const client = gateway(system.url);
      const token = await client.login();
      const events = await client.events(token);
      const { jobId } = await client.upload(token, video);
      const job = await events.next(jobId);
      await events.close();
      if (job.status !== "done") throw new Error(`the job to read ended ${job.status}: ${job.error}`);
      return { url: system.url, jobPath: `/jobs/${jobId}`, token };
    }
    const info = await vid2mp3("info");
    const warn = await vid2mp3("warn");
    const jobsInfo = target("GET /jobs/:id, LOG_LEVEL=info (the default)", `${info.url}${info.jobPath}`, {
      authorization: `Bearer ${info.token}`,
    });
    const jobsWarn = target("GET /jobs/:id, LOG_LEVEL=warn (no request logs)", `${warn.url}${warn.jobPath}`, {
      authorization: `Bearer ${warn.token}`,
    });
    const health = target("GET /healthz, LOG_LEVEL=warn (no token, no SQL)", `${warn.url}/healthz`);

    await withStep(`requests: warming up each server (${warmUp} s each)`, async (s) => {
      for (const t of targets) {
        s.update(t.what);
        await hit(t, warmUp, connections, false);
      }
    });
    await withStep(`requests: ${rounds} round(s) of ${seconds} s per target`, async (s) => {
      for (let round = 1; round <= rounds; round++) {
        for (const t of targets) {
          s.update(`round ${round}/${rounds}, ${t.what}`);
          await hit(t, seconds, connections, true);
        }
      }
    });

    const base = { rps: median(baseline.rps), ...percentiles(baseline) };
    const row = (t: Target) => {
      const v = { rps: median(t.rps), ...percentiles(t) };
      return [
        t.what,
        perSecond(v.rps),
        perSecond(base.rps),
        ratio(v.rps / base.rps),
        `${millis(v.p50)} / ${millis(base.p50)}`,
        `${millis(v.p99)} / ${millis(base.p99)}`,
      ];
    };
    printTable(
      `Requests per second at ${connections} connections (keep-alive), median of ${rounds} round(s) of ${seconds} s, after a ${warmUp} s warm-up`,
      ["what", "vid2mp3", "baseline", "ratio", "p50 vid2mp3 / base", "p99 vid2mp3 / base"],
      [row(jobsInfo), row(jobsWarn), row(health)],
      "baseline = a bare node:http server answering a job-sized JSON. ratio = vid2mp3 ÷ baseline\n" +
        "requests per second: 1.00× is as fast as bare Node, 0.25× a quarter of it. Each server is one\n" +
        "Node process (one core for JavaScript); the load generator (autocannon) takes the other core.\n" +
        "LOG_LEVEL=info writes two JSON log lines per request (pino, to a file here); /healthz shows\n" +
        "the framework's own share (Fastify, metrics); /jobs/:id adds the EdDSA token check and the\n" +
        "SQLite read. Latencies: every 2xx response of the measured rounds.",
    );
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}
