import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { type ParsedMail, simpleParser } from "mailparser";

const sink = fileURLToPath(new URL("./smtp-sink.ts", import.meta.url));

export interface RunningSmtpServer {
  /** `smtp://[user:password@]127.0.0.1:<port>`, ready for `createSmtpMailer`. */
  url: string;
  /** Every mail received so far, oldest first, parsed with mailparser. */
  messages(): Promise<ParsedMail[]>;
  /** The first received mail that matches, waiting for it up to `timeoutMs`. */
  waitForMessage(predicate: (mail: ParsedMail) => boolean, timeoutMs?: number): Promise<ParsedMail>;
  /** Kills the server process (SIGKILL, like a crash); its port and received mails stay. */
  down(): Promise<void>;
  /** Starts the server process again on the same port. */
  up(): Promise<void>;
  /** Stops the server and removes its folder. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Starts a real SMTP server (the smtp-server package, in `smtp-sink.ts`) as a separate OS process
 * on a free local port. With `auth`, it demands AUTH with these credentials (and the URL carries
 * them). Each mail it accepts is a file in its own temporary folder, which `messages()` reads.
 */
export async function startSmtpServer(
  options: { auth?: { user: string; password: string } } = {},
): Promise<RunningSmtpServer> {
  const dir = await mkdtemp(path.join(tmpdir(), "smtp-sink-"));
  const credentials = options.auth && `${options.auth.user}:${options.auth.password}`;
  let child: ChildProcess | undefined;
  let exited: Promise<unknown> = Promise.resolve();

  async function launch(port: number): Promise<number> {
    const args = [sink, dir, String(port), ...(credentials ? [credentials] : [])];
    const started = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "pipe"] });
    child = started;
    exited = once(started, "exit");
    let output = "";
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        started.kill("SIGKILL");
        reject(new Error(`SMTP sink not ready in 10 s:\n${output}`));
      }, 10_000);
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        const match = /SMTP sink listening on port (\d+)/.exec(output);
        if (match?.[1]) {
          clearTimeout(timer);
          resolve(Number(match[1]));
        }
      };
      started.stdout?.on("data", onData);
      started.stderr?.on("data", onData);
      started.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`SMTP sink exited with ${code} before it was ready:\n${output}`));
      });
    });
  }

  async function kill(signal: NodeJS.Signals): Promise<void> {
    if (child && child.exitCode === null && child.signalCode === null) child.kill(signal);
    await exited;
  }

  let port: number;
  try {
    port = await launch(0);
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    throw error;
  }

  async function messages(): Promise<ParsedMail[]> {
    const files = (await readdir(dir)).filter((name) => name.endsWith(".eml")).sort();
    return Promise.all(files.map(async (name) => simpleParser(await readFile(path.join(dir, name)))));
  }

  const url = new URL(`smtp://127.0.0.1:${port}`);
  if (options.auth) {
    url.username = options.auth.user;
    url.password = options.auth.password;
  }

  return {
    url: url.toString(),
    messages,
    async waitForMessage(predicate, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = (await messages()).find(predicate);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no matching mail arrived within ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    },
    down: () => kill("SIGKILL"),
    async up() {
      await kill("SIGKILL");
      await launch(port);
    },
    async stop() {
      await kill("SIGTERM");
      await rm(dir, { recursive: true, force: true });
    },
  };
}
