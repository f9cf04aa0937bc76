import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { buildFfmpegArgs } from "./ffmpeg-args.ts";
import { addFrontCoverToFile, COVER_COMMENT, COVER_TITLE, withFrontCover } from "./id3-picture.ts";
import { id3v2Length } from "./mp3-frames.ts";

const run = promisify(execFile);

test("the file gets the very bytes ffmpeg's mp3 muxer writes for an attached front cover, tags and chapters kept", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-cover-"));
  try {
    const [source, cover, chapters] = ["a.wav", "cover.jpg", "chapters.txt"].map((f) =>
      path.join(dir, f),
    ) as [string, string, string];
    await run("ffmpeg", ["-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=duration=3", source]);
    await run("ffmpeg", [
      ...["-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x240", "-frames:v", "1"],
      ...["-c:v", "mjpeg", "-f", "mjpeg", cover],
    ]);
    await writeFile(chapters, ";FFMETADATA1\n[CHAPTER]\nTIMEBASE=1/1000\nSTART=0\nEND=3000\ntitle=Only\n");
    const plan = { audioStream: 0, tags: { title: "Sine", artist: "Tester" }, chaptersFile: chapters };
    const ours = path.join(dir, "ours.mp3");
    await run("ffmpeg", buildFfmpegArgs({ input: source, output: ours, format: "wav", plan }));
    const without = await readFile(ours);
    await addFrontCoverToFile(ours, await readFile(cover));

    // ffmpeg with the picture as an attached input, as the converter once ran it.
    const args = buildFfmpegArgs({
      input: source,
      output: path.join(dir, "theirs.mp3"),
      format: "wav",
      plan,
    });
    const [output, muxer] = [args.indexOf("-map"), args.lastIndexOf("-f")];
    const theirs = path.join(dir, "theirs.mp3");
    await run("ffmpeg", [
      ...args.slice(0, output),
      ...["-f", "jpeg_pipe", "-i", cover],
      ...args.slice(output, muxer).filter((arg) => arg !== "-vn"),
      ...["-map", "2:v:0", "-c:v", "copy", "-disposition:v:0", "attached_pic"],
      ...["-metadata:s:v:0", `title=${COVER_TITLE}`, "-metadata:s:v:0", `comment=${COVER_COMMENT}`],
      ...args.slice(muxer),
    ]);
    const [a, b] = [await readFile(ours), await readFile(theirs)];
    assert.deepEqual(a.subarray(0, id3v2Length(a)), b.subarray(0, id3v2Length(b)), "the same tag");
    assert.deepEqual(
      a.subarray(id3v2Length(a)),
      without.subarray(id3v2Length(without)),
      "the audio as it was",
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

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
