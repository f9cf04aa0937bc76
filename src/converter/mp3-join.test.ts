import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { buildFrame, type FrameSpec } from "../../test/support/mp3-frames.ts";
import { type Frame, mainDataOffset, slotLength } from "./mp3-frames.ts";
import {
  borrowedBytes,
  carryReservoir,
  chooseJoin,
  JoinError,
  Mp3Joiner,
  reservoirBefore,
  windowsMatch,
} from "./mp3-join.ts";
import { crc16 } from "./xing.ts";

/** 128 kb/s at 44.1 kHz stereo: 417 bytes, a 381-byte slot. */
const SLOT = 417 - 36;
const frames = (count: number, spec: FrameSpec = {}) => Array.from({ length: count }, () => buildFrame(spec));
const slot = (frame: Frame) => frame.bytes.subarray(mainDataOffset(frame.header));

describe("windowsMatch", () => {
  // The last granule's end (types 0, 3 end long) must meet the next frame's first granule's start (0, 1 start long).
  const cases: [number, number, boolean][] = [
    [0, 0, true],
    [0, 1, true],
    [3, 0, true],
    [1, 2, true],
    [2, 3, true],
    [0, 2, false],
    [3, 3, false],
    [1, 0, false],
    [2, 1, false],
  ];
  for (const [last, next, expected] of cases) {
    test(`block type ${last} then ${next}: ${expected ? "" : "no "}match`, () => {
      const a = buildFrame({ blockTypes: [0, last as 0] });
      const b = buildFrame({ blockTypes: [next as 0, 0] });
      assert.equal(windowsMatch(a, b), expected);
    });
  }
});

describe("the bit reservoir across a join", () => {
  test("borrowedBytes: how far back the join frame and the ones after it reach", () => {
    const later = [
      ...frames(3),
      buildFrame({ mainDataBegin: 100 }),
      // 381 bytes later, this one still reaches 20 bytes before the join frame's slot.
      buildFrame({ mainDataBegin: SLOT + 20 }),
      buildFrame({ mainDataBegin: 0 }),
    ];
    assert.equal(borrowedBytes(later, 3), 100);
    assert.equal(borrowedBytes(later, 4), SLOT + 20);
    assert.equal(borrowedBytes(later, 5), 0);
    assert.equal(borrowedBytes(frames(3), 1), 0);
  });

  test("reservoirBefore: the last bytes of the main-data stream before a frame, across slots", () => {
    const later = [buildFrame({ fill: 1 }), buildFrame({ fill: 2 }), buildFrame({ fill: 3 })];
    const bytes = reservoirBefore(later, 2, SLOT + 10);
    assert.ok(bytes);
    assert.equal(bytes.length, SLOT + 10);
    assert.deepEqual([...bytes.subarray(0, 10)], Array(10).fill(1));
    assert.ok(bytes.subarray(10).every((b) => b === 2));
    assert.equal(reservoirBefore(later, 1, SLOT + 1), null, "not so many bytes before");
    assert.equal(reservoirBefore(later, 0, 0)?.length, 0);
  });

  test("carryReservoir writes into the unused tail of the last kept frame", () => {
    // 100 bytes of the last frame's slot hold its main data; 281 are free.
    const kept = [...frames(2), buildFrame({ part23Bits: 200, mainDataBegin: 0 })];
    const reservoir = Buffer.alloc(200, 0x5a);
    const out = carryReservoir(kept, reservoir);
    assert.ok(out);
    const last = out.at(-1) as Frame;
    assert.equal(last.bytes.length, 417, "not enlarged");
    assert.ok(
      slot(last)
        .subarray(SLOT - 200)
        .every((b) => b === 0x5a),
    );
    assert.ok(
      slot(last)
        .subarray(0, SLOT - 200)
        .every((b) => b === 0),
    );
    assert.ok(
      slot(kept.at(-1) as Frame).every((b) => b === 0),
      "the input frames are not changed",
    );
  });

  test("carryReservoir spills into the slot before when the last frame's own data starts earlier", () => {
    // The last frame's main data (50 bytes) starts 300 bytes back, inside the frame before it.
    const kept = [buildFrame({ fill: 7 }), buildFrame({ mainDataBegin: 300, part23Bits: 100 })];
    const reservoir = Buffer.alloc(SLOT + 100, 0x33);
    const out = carryReservoir(kept, reservoir);
    assert.ok(out);
    assert.ok(slot(out[1] as Frame).every((b) => b === 0x33));
    const first = slot(out[0] as Frame);
    assert.ok(first.subarray(SLOT - 100).every((b) => b === 0x33));
    assert.ok(first.subarray(0, SLOT - 100).every((b) => b === 7));
  });

  test("carryReservoir enlarges the last frame when its tail is too short, and gives up beyond 320 kb/s", () => {
    const full = buildFrame({ part23Bits: Math.floor((SLOT * 8) / 4) }); // its slot is all its own
    assert.equal(slotLength(full) - full.side.mainDataLength, 0);
    const out = carryReservoir([full], Buffer.alloc(100, 0x11));
    assert.ok(out);
    const last = out[0] as Frame;
    assert.equal(last.header.bitrateKbps, 160, "the next bit rate with 100 more bytes");
    assert.ok(
      slot(last)
        .subarray(slotLength(last) - 100)
        .every((b) => b === 0x11),
    );
    const fullAt320 = buildFrame({ bitrateKbps: 320, part23Bits: 1990 });
    assert.equal(carryReservoir([fullAt320], Buffer.alloc(200)), null);
  });

  test("carryReservoir refuses a stream whose main data overruns its slot", () => {
    assert.throws(() => carryReservoir([buildFrame({ part23Bits: 4000 })], Buffer.alloc(1)), JoinError);
  });
});

describe("chooseJoin", () => {
  const earlier = frames(40, { part23Bits: 400 });
  test("joins at the planned frame when it fits, carrying what the later piece's frame borrows", () => {
    const laterFrames = [...frames(30, { fill: 9, part23Bits: 400 })];
    laterFrames[12] = buildFrame({ mainDataBegin: 50, part23Bits: 400 });
    const join = chooseJoin(earlier, 0, { frames: laterFrames, firstFrame: 10, joinFrame: 22 });
    assert.ok(join);
    assert.equal(join.frame, 22);
    assert.equal(join.carried, 50);
    assert.equal(join.enlarged, false);
    assert.equal(join.before.length, 22);
    assert.ok(
      slot(join.before[21] as Frame)
        .subarray(SLOT - 50)
        .every((b) => b === 9),
    );
  });

  test("moves the join to the nearest frame where the windows match", () => {
    const laterFrames = frames(30);
    // Short blocks around the planned join at 22 (later index 12) and at 23.
    laterFrames[12] = buildFrame({ blockTypes: [2, 2] });
    laterFrames[13] = buildFrame({ blockTypes: [2, 2] });
    const join = chooseJoin(earlier, 0, { frames: laterFrames, firstFrame: 10, joinFrame: 22 });
    assert.equal(join?.frame, 21);
  });

  test("needs warm-up frames in the later piece and look-ahead frames in the earlier one", () => {
    assert.equal(chooseJoin(frames(40), 0, { frames: frames(30), firstFrame: 14, joinFrame: 18 })?.frame, 22);
    assert.equal(chooseJoin(frames(30), 0, { frames: frames(30), firstFrame: 10, joinFrame: 26 })?.frame, 22);
    assert.equal(chooseJoin(frames(10), 0, { frames: frames(30), firstFrame: 10, joinFrame: 40 }), null);
  });

  test("refuses pieces of different formats", () => {
    const mono = frames(30, { channels: 1 });
    assert.throws(() => chooseJoin(earlier, 0, { frames: mono, firstFrame: 10, joinFrame: 22 }), JoinError);
  });
});

describe("Mp3Joiner", () => {
  test("writes the first piece whole and the next from the join on, holding back only until finish", async () => {
    const written: Uint8Array[] = [];
    const joiner = new Mp3Joiner(async (bytes) => {
      written.push(bytes);
    });
    const a = frames(100, { fill: 1 });
    const b = frames(100, { fill: 2, bitrateKbps: 160 });
    await joiner.add({ frames: a, firstFrame: 0, joinFrame: 0 });
    await joiner.add({ frames: b, firstFrame: 80, joinFrame: 90 });
    const result = await joiner.finish();
    assert.deepEqual(result.joins, [{ frame: 90, carried: 0, enlarged: false }]);
    assert.equal(result.frameLengths.length, 90 + 90);
    assert.deepEqual(result.frameLengths.slice(88, 92), [417, 417, 522, 522]);
    assert.equal(result.variableBitrate, true);
    const all = Buffer.concat(written);
    assert.equal(all.length, 90 * 417 + 90 * 522);
    assert.equal(result.crc, crc16(all));
  });

  test("a piece given in parts joins exactly as the piece given whole", async () => {
    const join = async (parts: (pieces: Frame[][]) => Frame[][]) => {
      const written: Uint8Array[] = [];
      const joiner = new Mp3Joiner(async (bytes) => {
        written.push(bytes);
      });
      const [a, b, c] = [
        frames(300, { fill: 1 }),
        frames(320, { fill: 2, bitrateKbps: 160 }),
        frames(200, { fill: 3 }),
      ];
      const pieces = [
        { frames: a, firstFrame: 0, joinFrame: 0 },
        { frames: b, firstFrame: 280, joinFrame: 290 },
        { frames: c, firstFrame: 570, joinFrame: 580 },
      ];
      for (const piece of pieces) {
        const [first, ...rest] = parts([piece.frames]);
        await joiner.add({ ...piece, frames: first as Frame[] });
        for (const more of rest) await joiner.extend(more);
      }
      return { result: await joiner.finish(), bytes: Buffer.concat(written) };
    };
    const whole = await join((pieces) => pieces);
    // Parts of 40 frames: each later piece's first part holds its join.
    const inParts = await join(([all]) =>
      Array.from({ length: Math.ceil((all as Frame[]).length / 40) }, (_, k) =>
        (all as Frame[]).slice(k * 40, k * 40 + 40),
      ),
    );
    assert.deepEqual(inParts.result, whole.result);
    assert.ok(inParts.bytes.equals(whole.bytes));
    assert.equal(whole.result.frameLengths.length, 290 + 290 + 190);
    await assert.rejects(new Mp3Joiner(async () => {}).extend(frames(3)), /add\(\) it first/);
  });

  test("a first piece must start at frame 0; no join possible is an error", async () => {
    const joiner = new Mp3Joiner(async () => {});
    await assert.rejects(joiner.add({ frames: frames(20), firstFrame: 5, joinFrame: 5 }), JoinError);
    const other = new Mp3Joiner(async () => {});
    await other.add({ frames: frames(20), firstFrame: 0, joinFrame: 0 });
    const short = frames(30, { blockTypes: [2, 2] });
    await assert.rejects(other.add({ frames: short, firstFrame: 2, joinFrame: 12 }), /no frame near 12/);
  });
});
