import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { id3v2Length, parseFrameHeader, splitFrames } from "./mp3-frames.ts";
import { crc16, fillXingFrame, readDelayPadding, readXingFrames, xingLayout } from "./xing.ts";

const run = promisify(execFile);
let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-xing-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * A stereo MP3 as ffmpeg writes it: ID3v2 tag, Xing/LAME frame, audio frames. (Stereo: in a mono
 * Xing frame ffmpeg's tag CRC covers 190 bytes all the same, past the CRC field or even the frame.)
 */
async function ffmpegMp3(name: string, args: string[]): Promise<{ xing: Uint8Array; audio: Uint8Array }> {
  const file = path.join(dir, name);
  await run("ffmpeg", [
    ...["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "anoisesrc=d=3:a=0.3:r=44100"],
    ...["-ac", "2", "-c:a", "libmp3lame", ...args, file],
  ]);
  const bytes = await readFile(file);
  const start = id3v2Length(bytes);
  const header = parseFrameHeader(bytes, start);
  assert.ok(header);
  return { xing: bytes.subarray(start, start + header.length), audio: bytes.subarray(start + header.length) };
}

test("crc16 is CRC-16/ARC (the LAME tag's checksum)", () => {
  assert.equal(crc16(Buffer.from("123456789")), 0xbb3d);
  assert.equal(crc16(new Uint8Array()), 0);
  // Incremental: a CRC can be carried over chunks.
  assert.equal(crc16(Buffer.from("6789"), crc16(Buffer.from("12345"))), 0xbb3d);
});

test("reads ffmpeg's own Xing frame: its frame count, encoder delay and padding, and both CRCs check", async () => {
  const { xing, audio } = await ffmpegMp3("vbr.mp3", ["-q:a", "2"]);
  const layout = xingLayout(xing);
  assert.ok(layout && layout.lame > 0);
  assert.equal(readXingFrames(xing), splitFrames(audio).length);
  const gapless = readDelayPadding(xing);
  assert.equal(gapless?.delay, 576, "LAME's encoder delay");
  // Frames × 1152 = delay + samples (3 s at 44.1 kHz) + padding.
  assert.equal(splitFrames(audio).length * 1152 - 576 - 3 * 44100, gapless?.padding);
  const view = new DataView(xing.buffer, xing.byteOffset);
  assert.equal(view.getUint16(layout.lame + 34), crc16(xing.subarray(0, layout.lame + 34)), "tag CRC");
  assert.equal(view.getUint16(layout.lame + 32), crc16(audio), "music CRC");
});

test("fillXingFrame writes the totals, the seek table, Xing or Info, and a valid tag CRC; the template is untouched", async () => {
  const { xing } = await ffmpegMp3("cbr.mp3", ["-b:a", "128k"]);
  assert.equal(Buffer.from(xing).includes("Info"), true, "ffmpeg writes Info for CBR");
  const before = Buffer.from(xing);
  const tocOffsets = Array.from({ length: 100 }, (_, i) => 417 + i * 1000);
  const filled = fillXingFrame(xing, {
    frames: 12345,
    bytes: 100_417,
    tocOffsets,
    variableBitrate: true,
    delay: 576,
    padding: 1234,
    musicCrc: 0xbeef,
  });
  assert.equal(Buffer.compare(Buffer.from(xing), before), 0);
  const layout = xingLayout(filled);
  assert.ok(layout);
  assert.equal(Buffer.from(filled.subarray(layout.tag, layout.tag + 4)).toString("latin1"), "Xing");
  assert.equal(readXingFrames(filled), 12345);
  assert.deepEqual(readDelayPadding(filled), { delay: 576, padding: 1234 });
  const view = new DataView(filled.buffer);
  assert.equal(view.getUint32(layout.tag + 12), 100_417);
  const toc = filled.subarray(layout.tag + 16, layout.tag + 116);
  assert.equal(toc[0], 0);
  assert.equal(toc[50], Math.floor((256 * (417 + 50_000)) / 100_417));
  for (let i = 1; i < 100; i++)
    assert.ok((toc[i] as number) >= (toc[i - 1] as number), "a rising seek table");
  assert.equal(view.getUint32(layout.lame + 28), 100_417, "music length");
  assert.equal(view.getUint16(layout.lame + 32), 0xbeef);
  assert.equal(view.getUint16(layout.lame + 34), crc16(filled.subarray(0, layout.lame + 34)));
  const constant = fillXingFrame(xing, {
    frames: 1,
    bytes: 1000,
    tocOffsets,
    variableBitrate: false,
    delay: 576,
    padding: 0,
    musicCrc: 0,
  });
  assert.equal(Buffer.from(constant).includes("Info"), true);
  assert.throws(
    () =>
      fillXingFrame(xing, {
        frames: 1,
        bytes: 1,
        tocOffsets,
        variableBitrate: false,
        delay: 576,
        padding: 5000,
        musicCrc: 0,
      }),
    RangeError,
  );
});

test("an audio frame is not a Xing frame", async () => {
  const { audio } = await ffmpegMp3("plain.mp3", ["-q:a", "5"]);
  const [first] = splitFrames(audio);
  assert.ok(first);
  assert.equal(xingLayout(first.bytes), null);
  assert.throws(() =>
    fillXingFrame(first.bytes, {
      frames: 1,
      bytes: 1,
      tocOffsets: [],
      variableBitrate: false,
      delay: 0,
      padding: 0,
      musicCrc: 0,
    }),
  );
});
