/**
 * Turns ffmpeg's frequent progress readings into few messages: at most one per `minIntervalMs`,
 * and only when the fraction moved by `minStep`. Each update is a broker message and an SSE push
 * to a browser, so a percent a second is plenty. Publishing runs in the background, in order; a
 * failed progress message is only reported, as the job's outcome does not depend on it.
 */

export interface ProgressReporterOptions {
  publish: (fraction: number, durationSeconds: number | null) => Promise<void>;
  onError: (error: unknown) => void;
  minIntervalMs?: number;
  minStep?: number;
  now?: () => number;
}

export interface ProgressReporter {
  update(fraction: number, durationSeconds: number | null): void;
  /** Resolves once every update handed over so far is published (or failed), so the next event comes after them. */
  settled(): Promise<void>;
}

export function createProgressReporter(options: ProgressReporterOptions): ProgressReporter {
  const { publish, onError, minIntervalMs = 1000, minStep = 0.01, now = Date.now } = options;
  // Starting at 0 skips "0 %": the converting event already says that much.
  let lastFraction = 0;
  let lastAt = Number.NEGATIVE_INFINITY;
  let chain: Promise<void> = Promise.resolve();

  return {
    update(fraction, durationSeconds) {
      const at = now();
      if (fraction - lastFraction < minStep || at - lastAt < minIntervalMs) return;
      lastFraction = fraction;
      lastAt = at;
      chain = chain.then(() => publish(fraction, durationSeconds)).catch(onError);
    },
    settled() {
      return chain;
    },
  };
}
