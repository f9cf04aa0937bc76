import assert from "node:assert/strict";
import { test } from "node:test";
import { withFrontCover } from "./id3-picture.ts";
import { id3v2Length } from "./mp3-frames.ts";

/** An ID3v2 tag of `version` with one TIT2 frame and `padding` zero bytes. */
function tag(version: 3 | 4, padding: number): Buffer {
  const text = Buffer.from("\0Title", "latin1");
  const frame = Buffer.concat([Buffer.from("TIT2"), Buffer.from([0, 0, 0, text.length, 0, 0]), text]);
  const size = frame.length + padding;
  return Buffer.concat([
    Buffer.from([0x49, 0x44, 0x33, version, 0, 0, 0, 0, 0, size]),
    frame,
    Buffer.alloc(padding),
  ]);
}

test("the front cover goes after the frames, before the padding, and the tag's size grows by it", () => {
  const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3, 0xff, 0xd9]);
  for (const version of [3, 4] as const) {
    const before = tag(version, 10);
    const after = withFrontCover(before, jpeg);
    const apic = Buffer.concat([Buffer.from("\0image/jpeg\0\x03Album cover\0", "latin1"), jpeg]);
    assert.equal(id3v2Length(after), after.length);
    assert.equal(after.length, before.length + 10 + apic.length);
    const at = before.length - 10;
    assert.deepEqual(after.subarray(10, at), before.subarray(10, at), "the frames before it unchanged");
    assert.equal(after.toString("latin1", at, at + 4), "APIC");
    assert.equal(after[at + 7], apic.length, "its size (small enough to read the same in both versions)");
    assert.deepEqual(after.subarray(at + 10, at + 10 + apic.length), apic);
    assert.deepEqual(after.subarray(-10), Buffer.alloc(10), "the padding kept at the end");
  }
  // No padding at all: the picture ends the tag.
  assert.equal(withFrontCover(tag(3, 0), jpeg).subarray(-jpeg.length).compare(jpeg), 0);
});

test("what it cannot extend faithfully is refused (the segmented encode then falls back to a single run)", () => {
  const jpeg = Buffer.from([0xff, 0xd8]);
  assert.throws(() => withFrontCover(Buffer.alloc(0), jpeg), /no ID3v2/);
  assert.throws(() => withFrontCover(tag(3, 10).fill(2, 3, 4), jpeg), /no ID3v2/);
  const flagged = tag(3, 10);
  flagged[5] = 0x80; // unsynchronisation
  assert.throws(() => withFrontCover(flagged, jpeg), /flags/);
  const cut = tag(3, 10).subarray(0, 20);
  assert.throws(() => withFrontCover(cut, jpeg), /cut short/);
  const overlong = tag(3, 10);
  overlong.writeUInt32BE(1000, 14); // TIT2 claims more bytes than the tag has
  assert.throws(() => withFrontCover(overlong, jpeg), /past the tag's end/);
});
