import type { ServiceMetrics } from "../platform/metrics.ts";

/**
 * How a message's conversion ended: `done` (MP3 stored, also when an earlier delivery had stored
 * it), `failed` (the job failed: the file's fault, or ours on the last attempt), `retried` (ours,
 * the broker redelivers later), `skipped` (the job was deleted before its turn).
 */
export type ConversionOutcome = "done" | "failed" | "retried" | "skipped";

export interface ConverterMetrics {
  /** A conversion started; call the returned function once with how it ended (or nothing when interrupted by close). */
  conversionStarted(): (outcome?: ConversionOutcome) => void;
}

/** Conversion times in seconds: a short clip takes a second, a film many minutes. */
const DURATION_BUCKETS = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
const outcomes: ConversionOutcome[] = ["done", "failed", "retried", "skipped"];

export function createConverterMetrics(metrics: ServiceMetrics): ConverterMetrics {
  const conversions = metrics.counter<"outcome">({
    name: "vid2mp3_conversions_total",
    help: "Conversions by outcome: done, failed (the job failed), retried (our error, redelivered later), skipped (job deleted).",
    labelNames: ["outcome"],
    initial: outcomes.map((outcome) => ({ outcome })),
  });
  const duration = metrics.histogram<"outcome">({
    name: "vid2mp3_conversion_duration_seconds",
    help: "Time from taking a video message to its outcome, by outcome.",
    labelNames: ["outcome"],
    buckets: DURATION_BUCKETS,
  });
  const inProgress = metrics.gauge({
    name: "vid2mp3_conversions_in_progress",
    help: "Conversions running now (at most CONVERTER_CONCURRENCY).",
  });
  return {
    conversionStarted() {
      const started = performance.now();
      inProgress.inc();
      let ended = false;
      return (outcome) => {
        if (ended) return;
        ended = true;
        inProgress.dec();
        if (outcome === undefined) return;
        conversions.inc({ outcome });
        duration.observe({ outcome }, (performance.now() - started) / 1000);
      };
    },
  };
}
