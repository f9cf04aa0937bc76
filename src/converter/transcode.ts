import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { ConversionError } from "./conversion-error.ts";
import { buildFfmpegArgs } from "./ffmpeg-args.ts";

export { ConversionError } from "./conversion-error.ts";

export interface TranscodeOptions {
  ffmpegPath: string;
  /** Local file of the upload. */
  input: string;
  /** Local file to write the MP3 to; left behind on failure, the caller removes it. */
  output: string;
  /** ffmpeg demuxer name to force (see `buildFfmpegArgs`). */
  format: string;
  /** Wall-clock limit; ffmpeg is killed after it and the job fails with a readable reason. */
  timeoutSeconds: number;
  /**
   * Fraction done, 0..1, never decreasing; 1 once ffmpeg reports the end. Also passes the input's
   * duration (null when the container does not tell). Must not throw.
   */
  onProgress?: (fraction: number, inputDurationSeconds: number | null) => void;
  /** Aborting kills ffmpeg; the promise then rejects with an ordinary (retryable) Error. */
  signal?: AbortSignal;
}

export interface TranscodeResult {
  /** Length of the MP3 in seconds (what ffmpeg encoded; the input's duration if unknown), or null. */
  durationSeconds: number | null;
}

/** How much of ffmpeg's stderr is kept for error messages; a bad file can make it print without end. */
const STDERR_TAIL_LINES = 30;

/** Runs ffmpeg once (spawned directly, never through a shell) and classifies how it ended. */
export async function transcode(options: TranscodeOptions): Promise<TranscodeResult> {
  const { ffmpegPath, timeoutSeconds, onProgress, signal } = options;
  const args = buildFfmpegArgs(options);
  signal?.throwIfAborted();

  return new Promise<TranscodeResult>((resolve, reject) => {
    const child = spawn(ffmpegPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    const diagnosis = new StderrDiagnosis();
    const progress = new ProgressReader(() => diagnosis.inputDurationSeconds, onProgress);
    let timedOut = false;
    let aborted = false;
    let settled = false;

    const settle = (outcome: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      outcome();
    };
    const kill = (): void => {
      // SIGKILL: a stuck demuxer may ignore gentler signals, and the output is thrown away anyway.
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    };
    const onAbort = (): void => {
      aborted = true;
      kill();
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, timeoutSeconds * 1000);
    signal?.addEventListener("abort", onAbort, { once: true });

    createInterface({ input: child.stdout, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (line) =>
      progress.line(line),
    );
    createInterface({ input: child.stderr, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (line) =>
      diagnosis.line(line),
    );

    child.on("error", (error) => {
      settle(() =>
        reject(new Error(`could not run ffmpeg (${ffmpegPath}): ${error.message}`, { cause: error })),
      );
    });
    child.on("close", (code, killSignal) => {
      settle(() => {
        if (timedOut) return reject(ConversionError.timeout(timeoutSeconds));
        if (aborted) return reject(new Error("conversion aborted", { cause: signal?.reason }));
        const failure = diagnosis.classify(code, killSignal);
        if (failure) return reject(failure);
        progress.finish();
        const encoded = progress.outTimeSeconds;
        resolve({
          durationSeconds:
            encoded !== undefined && encoded > 0 ? encoded : (diagnosis.inputDurationSeconds ?? null),
        });
      });
    });
  });
}

/**
 * Reads ffmpeg's stderr line by line: the input duration (for progress fractions), flags for
 * the errors we can explain to a user, and a bounded tail for the rest.
 */
class StderrDiagnosis {
  inputDurationSeconds: number | undefined;
  private readonly tail: string[] = [];
  private noAudio = false;
  private undecodable = false;
  private emptyOutput = false;
  private localProblem = false;

  line(line: string): void {
    this.tail.push(line.length > 500 ? `${line.slice(0, 500)}…` : line);
    if (this.tail.length > STDERR_TAIL_LINES) this.tail.shift();

    if (this.inputDurationSeconds === undefined) {
      // The first "Duration:" belongs to input #0 (ffmpeg prints none for the output).
      const match = /^\s*Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)/.exec(line);
      if (match)
        this.inputDurationSeconds = Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3]);
    }
    if (/Stream map '0:a:0' matches no streams|does not contain any stream/.test(line)) this.noAudio = true;
    if (/Output file is empty, nothing was encoded/.test(line)) this.emptyOutput = true;
    if (
      /Invalid data found when processing input|moov atom not found|EBML header parsing failed|Unknown input format|could not find codec parameters|[Dd]ecoder \(codec .*\) not found|no decoder found|Error while decoding|not on whitelist|Unsupported codec/.test(
        line,
      )
    ) {
      this.undecodable = true;
    }
    // Problems of this machine, not of the file: retrying (perhaps elsewhere) can help.
    if (/No space left on device|Permission denied|Cannot allocate memory|Too many open files/.test(line)) {
      this.localProblem = true;
    }
  }

  /** The error for an ended ffmpeg, or undefined when it produced a usable MP3. */
  classify(code: number | null, killSignal: NodeJS.Signals | null): Error | undefined {
    if (code === 0) {
      // ffmpeg succeeds on an audio track without a single decodable frame; the MP3 would be empty.
      if (this.emptyOutput)
        return this.undecodable ? ConversionError.undecodable() : ConversionError.noAudio();
      return undefined;
    }
    if (!this.localProblem) {
      if (this.noAudio) return ConversionError.noAudio();
      if (this.undecodable) return ConversionError.undecodable();
    }
    const how = killSignal ? `was killed by ${killSignal}` : `exited with code ${code}`;
    return new Error(`ffmpeg ${how}: ${this.tail.slice(-8).join("\n")}`);
  }
}

/** Reads `-progress` blocks (key=value lines, each block ending with `progress=continue|end`). */
class ProgressReader {
  outTimeSeconds: number | undefined;
  private lastFraction = -1;
  private sawOutTimeUs = false;
  private readonly duration: () => number | undefined;
  private readonly onProgress: TranscodeOptions["onProgress"];

  constructor(duration: () => number | undefined, onProgress: TranscodeOptions["onProgress"]) {
    this.duration = duration;
    this.onProgress = onProgress;
  }

  line(line: string): void {
    const eq = line.indexOf("=");
    if (eq === -1) return;
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1).trim();
    // out_time_ms is in microseconds too (an old ffmpeg naming mistake); out_time_us is newer.
    if (key === "out_time_us") this.sawOutTimeUs = true;
    if (key === "out_time_us" || (key === "out_time_ms" && !this.sawOutTimeUs)) {
      const micros = Number(value);
      if (Number.isFinite(micros) && micros >= 0) this.outTimeSeconds = micros / 1e6;
    } else if (key === "progress") {
      if (value === "end") this.finish();
      else this.report();
    }
  }

  /** Called when ffmpeg ends successfully, in case the last block was cut short. */
  finish(): void {
    this.emit(1);
  }

  private report(): void {
    const duration = this.duration();
    if (duration === undefined || duration <= 0 || this.outTimeSeconds === undefined) return;
    this.emit(Math.min(1, this.outTimeSeconds / duration));
  }

  private emit(fraction: number): void {
    if (fraction <= this.lastFraction) return;
    this.lastFraction = fraction;
    try {
      this.onProgress?.(fraction, this.duration() ?? null);
    } catch {
      // Progress is informational; a failing listener must not take the conversion down with it.
    }
  }
}
