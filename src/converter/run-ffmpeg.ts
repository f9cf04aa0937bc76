import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

/**
 * Runs ffmpeg once, spawned directly (never through a shell), with a deadline and an abort signal,
 * handing its output over line by line. Both the probe run and the conversion go through here, so
 * every ffmpeg process the converter starts is bounded in time and killable.
 */

export interface RunFfmpegOptions {
  ffmpegPath: string;
  args: string[];
  /** `performance.now()` time at which ffmpeg is killed (outcome `timed out`). */
  deadline: number;
  /** Aborting kills ffmpeg (outcome `aborted`). */
  signal?: AbortSignal | undefined;
  onStdoutLine?: (line: string) => void;
  /** Returning true kills ffmpeg (outcome `stopped`): the caller has seen enough. */
  onStderrLine?: (line: string) => boolean | undefined;
}

export interface FfmpegExit {
  outcome: "exited" | "timed out" | "aborted" | "stopped";
  code: number | null;
  killSignal: NodeJS.Signals | null;
}

/** Resolves when ffmpeg has ended and its output is read; rejects only when it could not be started. */
export function runFfmpeg({
  ffmpegPath,
  args,
  deadline,
  signal,
  onStdoutLine,
  onStderrLine,
}: RunFfmpegOptions): Promise<FfmpegExit> {
  return new Promise<FfmpegExit>((resolve, reject) => {
    if (signal?.aborted) {
      resolve({ outcome: "aborted", code: null, killSignal: null });
      return;
    }
    const child = spawn(ffmpegPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let outcome: FfmpegExit["outcome"] = "exited";
    let settled = false;

    const settle = (then: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      then();
    };
    const kill = (why: FfmpegExit["outcome"]): void => {
      if (outcome === "exited") outcome = why;
      // SIGKILL: a stuck demuxer may ignore gentler signals, and the output is thrown away anyway.
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    };
    const onAbort = (): void => kill("aborted");
    const timer = setTimeout(() => kill("timed out"), Math.max(0, deadline - performance.now()));
    signal?.addEventListener("abort", onAbort, { once: true });

    createInterface({ input: child.stdout, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (line) =>
      onStdoutLine?.(line),
    );
    createInterface({ input: child.stderr, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (line) => {
      if (onStderrLine?.(line) === true) kill("stopped");
    });

    child.on("error", (error) => {
      settle(() =>
        reject(new Error(`could not run ffmpeg (${ffmpegPath}): ${error.message}`, { cause: error })),
      );
    });
    child.on("close", (code, killSignal) => {
      settle(() => resolve({ outcome, code, killSignal }));
    });
  });
}

/** Lines of stderr an error of `runFfmpegOrThrow` quotes. */
const QUOTED_STDERR_LINES = 4;

/**
 * Runs ffmpeg (`what` names the run in the error) and rejects unless it exits with 0, quoting the
 * last lines of its stderr: for runs whose failure needs no diagnosis, only a reason to log.
 */
export async function runFfmpegOrThrow(
  what: string,
  options: Omit<RunFfmpegOptions, "onStderrLine">,
): Promise<void> {
  const tail: string[] = [];
  const exit = await runFfmpeg({
    ...options,
    onStderrLine: (line) => {
      tail.push(line);
      if (tail.length > QUOTED_STDERR_LINES) tail.shift();
      return undefined;
    },
  });
  if (exit.outcome !== "exited" || exit.code !== 0) {
    const how = exit.outcome !== "exited" ? exit.outcome : `exited with code ${exit.code}`;
    throw new Error(`ffmpeg (${what}) ${how}: ${tail.join("\n")}`);
  }
}
