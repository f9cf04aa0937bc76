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

test("planJoins: a segment a worker, segments of at most 10 and at least 1 minute, evenly spread from 0", () => {
  const fps = 48000 / 1152;
  const hour = planJoins(Math.floor(3600 * fps), 48000, 2);
  assert.equal(hour.length, 6, "an hour: six 10-minute segments");
  const fiveMinutes = planJoins(Math.floor(300 * fps), 48000, 2);
  assert.equal(fiveMinutes.length, 2, "two workers: two segments");
  assert.equal(planJoins(Math.floor(150 * fps), 48000, 2).length, 2, "no segment under a minute");
  assert.equal(planJoins(Math.floor(30 * fps), 48000, 8).length, 1);
  assert.equal(planJoins(Math.floor(60 * fps), 48000, 4, 10).length, 4, "a shorter minimum for tests");
  assert.equal(planJoins(Math.floor(60 * fps), 48000, 8, 10).length, 6, "no segment under the minimum");
  for (const joins of [hour, fiveMinutes]) {
    assert.equal(joins[0], 0);
    for (const [k, join] of joins.entries())
      assert.ok(Number.isInteger(join) && (k === 0 || join > (joins[k - 1] ?? 0)));
  }
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
