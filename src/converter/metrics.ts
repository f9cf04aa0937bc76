import type { ServiceMetrics } from "../platform/metrics.ts";

/**
 * How a message's conversion ended: `done` (MP3 stored, also when an earlier delivery had stored
 * it), `failed` (the job failed: the file's fault, or ours on the last attempt), `retried` (ours,
 * the broker redelivers later), `skipped` (the job was deleted before its turn).
 */
export type ConversionOutcome = "done" | "failed" | "retried" | "skipped";

/** How a segment offered by another converter ended here (segment-helper.ts). */
export type HelpOutcome = "encoded" | "skipped" | "failed";

export interface ConverterMetrics {
  /** A conversion started; call the returned function once with how it ended (or nothing when interrupted by close). */
  conversionStarted(): (outcome?: ConversionOutcome) => void;
  /** A segment of another converter's job, handled here. */
  segmentHelped(outcome: HelpOutcome): void;
  /** Segments of this converter's job that other converters encoded (fan-out). */
  segmentsEncodedElsewhere(count: number): void;
}

/** Conversion times in seconds: a short clip takes a second, a film many minutes. */
const DURATION_BUCKETS = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
const outcomes: ConversionOutcome[] = ["done", "failed", "retried", "skipped"];
const helpOutcomes: HelpOutcome[] = ["encoded", "skipped", "failed"];

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
  const helped = metrics.counter<"outcome">({
    name: "vid2mp3_segments_helped_total",
    help: "Segments of other converters' jobs handled here (CONVERTER_SEGMENT_FANOUT), by outcome: encoded, skipped (no longer wanted), failed (its converter encodes it itself).",
    labelNames: ["outcome"],
    initial: helpOutcomes.map((outcome) => ({ outcome })),
  });
  const elsewhere = metrics.counter({
    name: "vid2mp3_segments_encoded_elsewhere_total",
    help: "Segments of this converter's jobs that other converters encoded and this one joined.",
    initial: [{}],
  });
  return {
    segmentHelped: (outcome) => helped.inc({ outcome }),
    segmentsEncodedElsewhere: (count) => elsewhere.inc({}, count),
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
