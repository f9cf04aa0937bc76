import { frameSamples } from "./mp3-frames.ts";
import type { SegmentFanout } from "./segment-fanout.ts";

/**
 * When a segmented (parallel) encode pays, and how the audio is cut for it. Pure arithmetic, kept
 * apart from the processes so it can be tested on its own.
 */

/** Frames each segment is encoded with before its join, and after the next segment's join. */
export const PRE_ROLL_FRAMES = 12;
export const POST_ROLL_FRAMES = 12;
/** A tail shorter than this is left to the segment before it (no join near the end of the stream). */
export const MIN_TAIL_FRAMES = 64;
/**
 * Segments are at least this long (the last ones about that): each one costs an ffmpeg start and
 * its pre- and post-roll.
 */
const MIN_SEGMENT_SECONDS = 60;

export interface SegmentingSettings {
  /** Encoder processes at once for one conversion on this machine. */
  workers: number;
  /** Other converters that may encode segments too (none: 1 worker means never segment). */
  fanout?: SegmentFanout | undefined;
  /** Audio shorter than this is encoded in one run (the segmented path's own cost would eat the gain). */
  minSeconds: number;
}

/** Whether a conversion of `durationSeconds` of audio is worth segmenting. */
export function shouldSegment(durationSeconds: number | undefined, settings: SegmentingSettings): boolean {
  return (
    settings.workers + (settings.fanout?.helpers ?? 0) > 1 &&
    durationSeconds !== undefined &&
    Number.isFinite(durationSeconds) &&
    durationSeconds >= Math.max(settings.minSeconds, 2 * MIN_SEGMENT_SECONDS)
  );
}

/**
 * Where each segment's kept part starts, in frames of the whole stream (the first is 0), for
 * audio of about `estimatedFrames` frames. The last segment runs to the end, whatever it is.
 *
 * The lengths shrink toward the end ("factoring"): each round gives every worker an equal share
 * of half of what is left, down to the minimum. A worker takes the next segment as soon as it is
 * free, so the workers end within about one short segment of each other, where equal segments
 * could leave a core idle for most of one long one. The decoder runs about ten times faster than
 * an encoder, so a long first segment does not hold the others back: each starts as soon as a
 * worker is free and reads its audio as it is decoded.
 */
export function planJoins(
  estimatedFrames: number,
  sampleRate: number,
  workers: number,
  /** Shortest segment in seconds (tests use short ones to get many joins from little audio). */
  minSegmentSeconds = MIN_SEGMENT_SECONDS,
): number[] {
  const framesPerSecond = sampleRate / frameSamples(sampleRate);
  const minFrames = Math.max(1, Math.floor(minSegmentSeconds * framesPerSecond));
  const joins = [0];
  if (workers < 2) return joins;
  let next = 0;
  let left = estimatedFrames;
  for (;;) {
    const share = Math.floor(left / (2 * workers));
    const last = share < minFrames;
    // The rest (less than two minimum segments a worker): as many of at least the minimum as fit.
    const parts = last ? Math.max(1, Math.floor(left / minFrames)) : workers;
    const length = last ? Math.floor(left / parts) : share;
    for (let k = 0; k < parts; k++) {
      if (next > 0) joins.push(next);
      next += length;
      left -= length;
    }
    if (last) return joins;
  }
}

/** One segment as it is encoded: its PCM range in samples and the frame its kept part starts at. */
export interface Segment {
  index: number;
  /** First frame of the whole stream this segment keeps (its join). */
  joinFrame: number;
  /** First sample encoded (pre-roll included): a multiple of the frame length. */
  startSample: number;
  /** Sample after the last one encoded (post-roll included); null: to the end of the stream. */
  endSample: number | null;
}

/**
 * The segments for the planned joins: each encodes from `PRE_ROLL_FRAMES` before its join to
 * `POST_ROLL_FRAMES` after the next one; the last to the end. Once the stream's real length is
 * known (`totalSamples`), segments that would start in the last `MIN_TAIL_FRAMES` are dropped
 * (the stream may be shorter than the container said) and the last remaining one runs to the end.
 */
export function segmentsFor(joins: readonly number[], sampleRate: number, totalSamples?: number): Segment[] {
  const spf = frameSamples(sampleRate);
  let kept = [...joins];
  if (totalSamples !== undefined) {
    const limit = totalSamples / spf - MIN_TAIL_FRAMES;
    kept = kept.filter((join, k) => k === 0 || join <= limit);
  }
  return kept.map((join, k) => {
    const next = kept[k + 1];
    return {
      index: k,
      joinFrame: join,
      startSample: Math.max(0, join - PRE_ROLL_FRAMES) * spf,
      endSample: next === undefined ? null : (next + POST_ROLL_FRAMES) * spf,
    };
  });
}
