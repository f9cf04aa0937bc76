import assert from "node:assert/strict";
import { test } from "node:test";
import {
  MIN_TAIL_FRAMES,
  POST_ROLL_FRAMES,
  PRE_ROLL_FRAMES,
  planJoins,
  segmentsFor,
  shouldSegment,
} from "./segment-plan.ts";

test("shouldSegment: only with more than one worker, a known duration, and at least the minimum", () => {
  const settings = { workers: 2, minSeconds: 180 };
  assert.equal(shouldSegment(180, settings), true);
  assert.equal(shouldSegment(179.9, settings), false);
  assert.equal(shouldSegment(undefined, settings), false);
  assert.equal(shouldSegment(Number.NaN, settings), false);
  assert.equal(shouldSegment(3600, { workers: 1, minSeconds: 0 }), false);
  // Two segments of at least a minute each, whatever the setting says.
  assert.equal(shouldSegment(100, { workers: 2, minSeconds: 0 }), false);
  assert.equal(shouldSegment(120, { workers: 2, minSeconds: 0 }), true);
});

/** The lengths in seconds of the segments `planJoins` plans for `seconds` of 48 kHz audio. */
function plannedLengths(seconds: number, workers: number, minSegmentSeconds?: number): number[] {
  const fps = 48000 / 1152;
  const total = Math.floor(seconds * fps);
  const joins = planJoins(total, 48000, workers, minSegmentSeconds);
  assert.equal(joins[0], 0, "the first segment starts at the start");
  for (const [k, join] of joins.entries()) {
    assert.ok(Number.isInteger(join) && (k === 0 || join > (joins[k - 1] ?? 0)), `joins in order: ${joins}`);
  }
  return joins.map((join, k) => Math.round(((joins[k + 1] ?? total) - join) / fps));
}

test("planJoins: lengths shrink toward the end, each round half of what is left split among the workers", () => {
  // An hour on two cores: a quarter each, then an eighth each, ... down to the minute.
  assert.deepEqual(plannedLengths(3600, 2), [900, 900, 450, 450, 225, 225, 112, 112, 75, 75, 75]);
  assert.deepEqual(plannedLengths(3600, 4).slice(0, 8), [450, 450, 450, 450, 225, 225, 225, 225]);
  assert.deepEqual(plannedLengths(300, 2), [75, 75, 75, 75]);
  assert.deepEqual(plannedLengths(180, 2), [60, 60, 60]);
  assert.deepEqual(
    plannedLengths(120, 2),
    [60, 60],
    "two segments of the minimum: the shortest segmented input",
  );
});

test("planJoins: never a segment under the minimum, never more than one segment with one worker", () => {
  for (const [seconds, workers, min] of [
    [3600, 2, undefined],
    [3600, 8, undefined],
    [7200, 3, undefined],
    [61, 2, 10],
    [60, 8, 10],
    [1000, 2, 4],
  ] as const) {
    const lengths = plannedLengths(seconds, workers, min);
    for (const length of lengths) assert.ok(length >= (min ?? 60), `${seconds} s on ${workers}: ${lengths}`);
    assert.ok((lengths.at(-1) as number) < 2 * (min ?? 60), `the last one short: ${lengths}`);
  }
  assert.deepEqual(plannedLengths(100, 2), [100], "under two minimum segments: one");
  assert.deepEqual(plannedLengths(30, 8), [30]);
  assert.deepEqual(plannedLengths(3600, 1), [3600]);
  assert.equal(plannedLengths(60, 4, 10).length, 6, "a shorter minimum for tests");
});

test("segmentsFor: frame-aligned overlapping ranges, the last one open-ended", () => {
  const segments = segmentsFor([0, 1000, 2000], 44100);
  assert.deepEqual(segments, [
    { index: 0, joinFrame: 0, startSample: 0, endSample: (1000 + POST_ROLL_FRAMES) * 1152 },
    {
      index: 1,
      joinFrame: 1000,
      startSample: (1000 - PRE_ROLL_FRAMES) * 1152,
      endSample: (2000 + POST_ROLL_FRAMES) * 1152,
    },
    { index: 2, joinFrame: 2000, startSample: (2000 - PRE_ROLL_FRAMES) * 1152, endSample: null },
  ]);
  for (const s of segments) assert.equal(s.startSample % 1152, 0);
  // MPEG-2 rates count in 576-sample frames.
  assert.equal(segmentsFor([0, 1000], 22050)[1]?.startSample, (1000 - PRE_ROLL_FRAMES) * 576);
});

test("segmentsFor with the real length: segments starting in the last frames are dropped", () => {
  const total = (2000 + MIN_TAIL_FRAMES - 1) * 1152;
  const segments = segmentsFor([0, 1000, 2000], 44100, total);
  assert.equal(segments.length, 2);
  assert.equal(segments[1]?.endSample, null, "the last remaining one runs to the end");
  assert.equal(segmentsFor([0, 1000, 2000], 44100, (2000 + MIN_TAIL_FRAMES) * 1152).length, 3);
  assert.equal(segmentsFor([0, 1000, 2000], 44100, 10).length, 1, "the first is always kept");
});
