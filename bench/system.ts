import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { closeSync, createReadStream, openSync } from "node:fs";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";

/**
 * The processes a benchmark talks to — the real system (`vid2mp3 serve all`) and the bare Node
 * HTTP server of the baselines — each a child process on 127.0.0.1, plus a small HTTP client
 * of the gateway's public API. Everything started here is stopped by `cleanUp()`, also on Ctrl-C.
 */

const main = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));
const bareServerScript = fileURLToPath(new URL("./bare-server.ts", import.meta.url));

export const ADMIN_EMAIL = "bench@example.com";
export const ADMIN_PASSWORD = "bench-password-1234";

const children = new Set<ChildProcess>();
const scratchDirs = new Set<string>();

/** A temporary folder removed by `cleanUp()`. */
export async function scratchDir(name: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), `vid2mp3-bench-${name}-`));
  scratchDirs.add(dir);
  return dir;
}

/** Stops every process still running and removes every scratch folder. */
export async function cleanUp(): Promise<void> {
  await Promise.all([...children].map((child) => stopChild(child)));
  await Promise.all([...scratchDirs].map((dir) => rm(dir, { recursive: true, force: true })));
  scratchDirs.clear();
}

export interface RunningProcess {
  url: string;
  pid: number;
  /** The file with everything the process printed. */
  logFile: string;
  log(): Promise<string>;
  /** The first JSON log line whose `msg` is `msg`, parsed, or undefined. */
  logRecord(msg: string): Promise<Record<string, unknown> | undefined>;
  stop(): Promise<void>;
}

/**
 * Spawns a server whose output goes to a log file (not a pipe: reading a busy server's request
 * log would cost the benchmark process CPU) and resolves once it is ready: once `knownUrl`
 * answers `GET /healthz` with 200 when given (a server that logs nothing at its LOG_LEVEL), else
 * once it prints its URL.
 */
async function spawnServer(
  args: string[],
  env: Record<string, string>,
  logFile: string,
  knownUrl?: string,
  timeoutMs = 120_000,
): Promise<RunningProcess> {
  const fd = openSync(logFile, "w");
  const child = spawn(process.execPath, args, { env, stdio: ["ignore", fd, fd] });
  closeSync(fd);
  children.add(child);
  const log = () => readFile(logFile, "utf8");
  const logRecord = async (msg: string) => {
    for (const line of (await log()).split("\n")) {
      if (!line.includes(msg)) continue;
      try {
        const record = JSON.parse(line) as Record<string, unknown>;
        if (record.msg === msg) return record;
      } catch {
        // Not a JSON line.
      }
    }
    return undefined;
  };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await log();
    const url = knownUrl
      ? (await answers(`${knownUrl}/healthz`)) && knownUrl
      : /"url":"(http:\/\/[^"]+)"/.exec(text)?.[1];
    if (url && child.pid !== undefined) {
      return { url, pid: child.pid, logFile, log, logRecord, stop: () => stopChild(child) };
    }
    if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
      await stopChild(child);
      throw new Error(`${args.join(" ")} did not start:\n${text.slice(-3000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function answers(url: string): Promise<boolean> {
  try {
    const response = await fetch(url);
    await response.body?.cancel();
    return response.status === 200;
  } catch {
    return false;
  }
}

/** A TCP port free on 127.0.0.1 right now. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const address = server.address();
  server.close();
  if (address === null || typeof address === "string") throw new Error("no TCP port");
  return address.port;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  }
  children.delete(child);
}

export interface System extends RunningProcess {
  dataDir: string;
}

/**
 * `vid2mp3 serve all` in a fresh DATA_DIR, with an admin to log in as. `LOG_LEVEL` is the
 * shipped default (info) unless `env` says otherwise; FFMPEG_PATH is passed on when set.
 */
export async function startSystem(env: Record<string, string> = {}): Promise<System> {
  const dir = await scratchDir("system");
  const dataDir = path.join(dir, "data");
  const port = await freePort();
  const passOn: Record<string, string> = {};
  if (process.env.FFMPEG_PATH) passOn.FFMPEG_PATH = process.env.FFMPEG_PATH;
  const running = await spawnServer(
    [main, "serve", "all"],
    {
      PATH: process.env.PATH ?? "",
      HOST: "127.0.0.1",
      PORT: String(port),
      DATA_DIR: dataDir,
      ADMIN_EMAIL,
      ADMIN_PASSWORD,
      ...passOn,
      ...env,
    },
    path.join(dir, "server.log"),
    `http://127.0.0.1:${port}`,
  );
  return { ...running, dataDir };
}

export type BareMode = "json" | "drain" | "disk";

/** The baseline: a bare `node:http` server (bench/bare-server.ts) in its own process. */
export async function startBareServer(mode: BareMode): Promise<RunningProcess> {
  const dir = await scratchDir(`bare-${mode}`);
  return spawnServer(
    [bareServerScript, mode, dir],
    { PATH: process.env.PATH ?? "" },
    path.join(dir, "server.log"),
  );
}

/** Reads a field of /proc/<pid>/status in bytes (VmRSS, VmHWM), or NaN when it cannot. */
export async function procMemory(pid: number, field: "VmRSS" | "VmHWM"): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
    return match?.[1] ? Number(match[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/**
 * Resets the process's peak RSS (VmHWM) to its current RSS (`echo 5 > /proc/<pid>/clear_refs`,
 * Linux 4.0+), so the peak of each upload is measured on its own. False when not possible.
 */
export async function resetPeakMemory(pid: number): Promise<boolean> {
  try {
    await writeFile(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}

/** The gateway's public API, as a user's script drives it. */
export function gateway(baseUrl: string) {
  const url = (p: string) => new URL(p, baseUrl);
  const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
  return {
    async login(email = ADMIN_EMAIL, password = ADMIN_PASSWORD): Promise<string> {
      const basic = Buffer.from(`${email}:${password}`).toString("base64");
      const response = await fetch(url("/login"), {
        method: "POST",
        headers: { authorization: `Basic ${basic}` },
      });
      const body = await response.text();
      if (response.status !== 200) throw new Error(`login answered ${response.status}: ${body}`);
      return body;
    },

    /** Opens `GET /events`; `next(jobId)` resolves with the job once it has ended (done or failed). */
    async events(token: string) {
      const controller = new AbortController();
      const response = await fetch(url("/events"), { headers: bearer(token), signal: controller.signal });
      if (response.status !== 200 || !response.body) throw new Error(`/events answered ${response.status}`);
      const ended = new Map<string, Job>();
      const waiting = new Map<string, (job: Job) => void>();
      const reading = (async () => {
        const decoder = new TextDecoder();
        let buffer = "";
        for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
          buffer += decoder.decode(chunk, { stream: true });
          let end = buffer.indexOf("\n\n");
          while (end !== -1) {
            const event = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            end = buffer.indexOf("\n\n");
            const data = /^data: (.*)$/m.exec(event)?.[1];
            if (!/^event: job$/m.test(event) || data === undefined) continue;
            const job = JSON.parse(data) as Job;
            if (job.status !== "done" && job.status !== "failed") continue;
            ended.set(job.id, job);
            waiting.get(job.id)?.(job);
          }
        }
      })().catch(() => {});
      return {
        next(jobId: string, timeoutMs = 600_000): Promise<Job> {
          const known = ended.get(jobId);
          if (known) return Promise.resolve(known);
          return new Promise<Job>((resolve, reject) => {
            const timer = setTimeout(
              () => reject(new Error(`job ${jobId} not ended after ${timeoutMs} ms`)),
              timeoutMs,
            );
            waiting.set(jobId, (job) => {
              clearTimeout(timer);
              resolve(job);
            });
          });
        },
        async close() {
          controller.abort();
          await reading;
        },
      };
    },

    /** Streams a file as multipart/form-data to `/upload` (see `uploadMultipart`). */
    async upload(token: string, file: string, how: UploadOptions = {}) {
      const { status, body, ms } = await uploadMultipart(url("/upload"), file, bearer(token), how);
      if (status !== 202) throw new Error(`upload answered ${status}: ${body}`);
      return { jobId: (JSON.parse(body) as { jobId: string }).jobId, ms };
    },

    async job(token: string, id: string): Promise<Job> {
      const response = await fetch(url(`/jobs/${id}`), { headers: bearer(token) });
      if (response.status !== 200) throw new Error(`GET /jobs/${id} answered ${response.status}`);
      return (await response.json()) as Job;
    },

    async deleteJob(token: string, id: string): Promise<void> {
      const response = await fetch(url(`/jobs/${id}`), { method: "DELETE", headers: bearer(token) });
      await response.body?.cancel();
      if (response.status !== 204) throw new Error(`DELETE /jobs/${id} answered ${response.status}`);
    },

    /** Downloads an MP3 completely; resolves with its size in bytes. */
    async download(token: string, fid: string): Promise<number> {
      const response = await fetch(url(`/download?fid=${encodeURIComponent(fid)}`), {
        headers: bearer(token),
      });
      if (response.status !== 200 || !response.body) throw new Error(`/download answered ${response.status}`);
      let bytes = 0;
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) bytes += chunk.byteLength;
      return bytes;
    },
  };
}

export interface Job {
  id: string;
  status: "queued" | "converting" | "done" | "failed";
  mp3Id: string | null;
  error: string | null;
}

export interface UploadOptions {
  onProgress?: (sent: number, total: number) => void;
  /** Conversion options, sent as fields before the file (`{ cover: "none" }`). */
  fields?: Record<string, string>;
}

/**
 * POSTs `file` as the one part of a multipart/form-data body, streamed from disk with a known
 * Content-Length (as curl -F does), with node:http so the same client serves vid2mp3 and the
 * baseline. `ms` runs from the first byte sent to the whole answer received.
 */
export async function uploadMultipart(
  target: URL,
  file: string,
  headers: Record<string, string> = {},
  { onProgress, fields = {} }: UploadOptions = {},
): Promise<{ status: number; body: string; ms: number }> {
  const size = (await stat(file)).size;
  const boundary = `----vid2mp3bench${Date.now().toString(16)}`;
  const head = Buffer.from(
    Object.entries(fields)
      .map(
        ([name, value]) =>
          `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`,
      )
      .join("") +
      `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${path.basename(file)}"\r\n` +
      "Content-Type: application/octet-stream\r\n\r\n",
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const total = head.length + size + tail.length;
  async function* body() {
    yield head;
    let sent = head.length;
    for await (const chunk of createReadStream(file, { highWaterMark: 1024 * 1024 })) {
      sent += (chunk as Buffer).length;
      onProgress?.(sent, total);
      yield chunk as Buffer;
    }
    yield tail;
  }
  const started = performance.now();
  const req = request(target, {
    method: "POST",
    headers: {
      ...headers,
      "content-type": `multipart/form-data; boundary=${boundary}`,
      "content-length": String(total),
    },
  });
  const answered = once(req, "response") as Promise<[import("node:http").IncomingMessage]>;
  // The server may answer (413, 401) before reading everything: then the rest is not sent.
  const sending = pipeline(Readable.from(body()), req).catch(() => {});
  const [response] = await answered;
  let text = "";
  response.setEncoding("utf8");
  for await (const chunk of response) text += chunk;
  const ms = performance.now() - started;
  await sending;
  return { status: response.statusCode ?? 0, body: text, ms };
}
