import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";

const main = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));

export interface RunningServer {
  url: string;
  process: ChildProcess;
  /** Everything the process printed so far. */
  output(): string;
  /** SIGTERM and wait for exit (graceful), or SIGKILL (a crash). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts `vid2mp3 serve <service>` (default `all`) as a real OS process on a free port and
 * resolves once it logs that it is ready. `env` adds to a minimal environment (DATA_DIR is required).
 */
export async function startServer(
  env: Record<string, string>,
  options: { service?: string; timeoutMs?: number } = {},
): Promise<RunningServer> {
  const { service = "all", timeoutMs = 60_000 } = options;
  const child = spawn(process.execPath, [main, "serve", service], {
    env: { PATH: process.env.PATH ?? "", PORT: "0", HOST: "127.0.0.1", LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const exited = once(child, "exit");
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      // A server that never got ready must not outlive the test (its pipes would keep the test running).
      child.kill("SIGKILL");
      reject(new Error(`server not ready in ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /"url":"(http:\/\/[^"]+)"/.exec(output);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before it was ready:\n${output}`));
    });
  });
  return {
    url,
    process: child,
    output: () => output,
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const [code] = await exited;
      return code as number | null;
    },
  };
}
