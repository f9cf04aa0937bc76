import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { once } from "node:events";

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed. */
  input?: string;
  /** Killed (SIGKILL) after this long. */
  timeoutMs?: number;
  /** Called with the child once it runs (to send it a signal when its output says so). */
  onStart?: (
    child: ChildProcessWithoutNullStreams,
    output: { stdout: () => string; stderr: () => string },
  ) => void;
}

/** Runs a program as a real process without a terminal and collects what it printed. */
export async function runProcess(command: string, args: string[], options: RunOptions = {}): Promise<Run> {
  const child = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  child.stdin.on("error", () => {}); // a child that exits without reading its input
  child.stdin.end(options.input ?? "");
  const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 120_000);
  options.onStart?.(child, { stdout: () => stdout, stderr: () => stderr });
  const [code, signal] = (await once(child, "close")) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  return { code, signal, stdout, stderr };
}

/** A run's outcome for an assertion message. */
export const show = (run: Run): string =>
  `exit ${run.code ?? run.signal}\n--- stdout\n${run.stdout}--- stderr\n${run.stderr}`;
