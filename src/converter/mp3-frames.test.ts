import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { buildFrame } from "../../test/support/mp3-frames.ts";
import {
  enlargeFrame,
  frameLength,
  frameSamples,
  id3v2Length,
  mainDataOffset,
  parseFrameHeader,
  parseSideInfo,
  readFrames,
  slotLength,
  splitFrames,
} from "./mp3-frames.ts";

const run = promisify(execFile);
let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-frames-"));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

const header = (...bytes: number[]) => parseFrameHeader(Uint8Array.from(bytes));

test("frameSamples: 1152 at the MPEG-1 rates, 576 below", () => {
  for (const rate of [32000, 44100, 48000]) assert.equal(frameSamples(rate), 1152);
  for (const rate of [8000, 11025, 12000, 16000, 22050, 24000]) assert.equal(frameSamples(rate), 576);
});

describe("parseFrameHeader", () => {
  test("reads an MPEG-1 header: the Xing frame ffmpeg writes at 48 kHz", () => {
    assert.deepEqual(header(0xff, 0xfb, 0x54, 0x00), {
      version: "1",
      bitrateKbps: 64,
      sampleRate: 48000,
      padding: 0,
      crc: false,
      channels: 2,
      channelMode: 0,
      length: 192,
      samples: 1152,
      sideInfoLength: 32,
    });
  });

  test("320 kb/s joint stereo at 48 kHz; 128 kb/s at 44.1 kHz with and without padding; mono", () => {
    assert.equal(header(0xff, 0xfb, 0xe4, 0x64)?.length, 960);
    assert.equal(header(0xff, 0xfb, 0xe4, 0x64)?.channelMode, 1);
    assert.equal(header(0xff, 0xfb, 0x90, 0x00)?.length, 417);
    assert.equal(header(0xff, 0xfb, 0x92, 0x00)?.length, 418);
    const mono = header(0xff, 0xfb, 0x90, 0xc0);
    assert.equal(mono?.channels, 1);
    assert.equal(mono?.sideInfoLength, 17);
  });

  test("MPEG-2 and 2.5 (half and quarter rates): 576 samples, the smaller side information", () => {
    const v2 = header(0xff, 0xf3, 0x80, 0xc0); // MPEG-2, 64 kb/s, 22050 Hz, mono
    assert.equal(v2?.version, "2");
    assert.equal(v2?.sampleRate, 22050);
    assert.equal(v2?.bitrateKbps, 64);
    assert.equal(v2?.samples, 576);
    assert.equal(v2?.sideInfoLength, 9);
    assert.equal(v2?.length, 208);
    const v25 = header(0xff, 0xe3, 0x10, 0x00); // MPEG-2.5, 8 kb/s, 11025 Hz, stereo
    assert.equal(v25?.version, "2.5");
    assert.equal(v25?.sampleRate, 11025);
    assert.equal(v25?.sideInfoLength, 17);
  });

  test("a CRC-protected frame says so", () => {
    assert.equal(header(0xff, 0xfa, 0x90, 0x00)?.crc, true);
  });

  test("refuses what is not a layer III frame header", () => {
    const refused = [
      [0xfe, 0xfb, 0x90, 0x00], // no sync
      [0xff, 0x1b, 0x90, 0x00], // no sync in the second byte
      [0xff, 0xeb, 0x90, 0x00], // reserved version
      [0xff, 0xfd, 0x90, 0x00], // layer II
      [0xff, 0xff, 0x90, 0x00], // layer I
      [0xff, 0xf9, 0x90, 0x00], // reserved layer
      [0xff, 0xfb, 0x00, 0x00], // free format
      [0xff, 0xfb, 0xf0, 0x00], // bad bit rate
      [0xff, 0xfb, 0x9c, 0x00], // reserved sample rate
      [0xff, 0xfb, 0x90], // cut short
    ];
    for (const bytes of refused) assert.equal(header(...bytes), null, bytes.join(","));
    assert.equal(parseFrameHeader(Uint8Array.from([0, 0xff, 0xfb, 0x90, 0x00]), 0), null);
    assert.ok(parseFrameHeader(Uint8Array.from([0, 0xff, 0xfb, 0x90, 0x00]), 1));
  });

  test("frame lengths follow 144 (72 for MPEG-2) × bit rate ÷ sample rate, plus the padding byte", () => {
    assert.equal(frameLength("1", 32, 32000, 0), 144);
    assert.equal(frameLength("1", 320, 44100, 1), 1045);
    assert.equal(frameLength("2", 8, 8000, 0), 72);
    assert.equal(frameLength("2.5", 160, 12000, 0), 960);
  });
});

describe("parseSideInfo", () => {
  test("reads main_data_begin, the main data length and the block types of every granule and channel", () => {
    const frame = buildFrame({ mainDataBegin: 300, part23Bits: 1001, blockTypes: [2, 3] });
    assert.equal(frame.side.mainDataBegin, 300);
    // 2 granules × 2 channels × 1001 bits = 4004 bits → 501 bytes (rounded up).
    assert.equal(frame.side.mainDataLength, 501);
    assert.deepEqual(frame.side.blockTypes, [
      [2, 2],
      [3, 3],
    ]);
  });

  test("MPEG-1 mono, MPEG-2 stereo and mono, and a CRC before the side information", () => {
    const mono = buildFrame({ channels: 1, mainDataBegin: 511, part23Bits: 4095, blockTypes: [1, 0] });
    assert.deepEqual(mono.side, { mainDataBegin: 511, mainDataLength: 1024, blockTypes: [[1], [0]] });
    const lsf = buildFrame({ sampleRate: 22050, bitrateKbps: 64, mainDataBegin: 255, part23Bits: 8 });
    assert.deepEqual(lsf.side, { mainDataBegin: 255, mainDataLength: 2, blockTypes: [[0, 0]] });
    const lsfMono = buildFrame({ sampleRate: 22050, bitrateKbps: 64, channels: 1, blockTypes: [2] });
    assert.deepEqual(lsfMono.side.blockTypes, [[2]]);
    const protectedFrame = buildFrame({ crc: true, mainDataBegin: 7, part23Bits: 16 });
    assert.equal(protectedFrame.side.mainDataBegin, 7);
    assert.equal(mainDataOffset(protectedFrame.header), 4 + 2 + 32);
  });

  test("refuses a frame cut short inside its side information", () => {
    const frame = buildFrame();
    const header = frame.header;
    assert.throws(() => parseSideInfo(frame.bytes.subarray(0, 20), 0, header), RangeError);
  });
});

describe("frames of real encodes", () => {
  const settings: { name: string; args: string[] }[] = [
    { name: "VBR V0, 44.1 kHz stereo", args: ["-ar", "44100", "-ac", "2", "-q:a", "0"] },
    { name: "VBR V9, 48 kHz mono", args: ["-ar", "48000", "-ac", "1", "-q:a", "9"] },
    { name: "CBR 128k, 44.1 kHz stereo", args: ["-ar", "44100", "-ac", "2", "-b:a", "128k"] },
    { name: "CBR 320k, 32 kHz stereo", args: ["-ar", "32000", "-ac", "2", "-b:a", "320k"] },
    { name: "VBR V4, 22.05 kHz mono (MPEG-2)", args: ["-ar", "22050", "-ac", "1", "-q:a", "4"] },
    { name: "CBR 64k, 24 kHz stereo (MPEG-2)", args: ["-ar", "24000", "-ac", "2", "-b:a", "64k"] },
  ];
  for (const { name, args } of settings) {
    test(`${name}: every frame is found, and the bit reservoir adds up frame by frame`, async () => {
      const file = path.join(dir, `${name.replace(/\W+/g, "-")}.mp3`);
      // Noise, silence and a tone: full and empty frames, window switching at the transitions.
      await run("ffmpeg", [
        ...["-nostdin", "-v", "error", "-y"],
        ...["-f", "lavfi", "-i", "anoisesrc=d=2:a=0.5,apad=pad_dur=1"],
        ...["-f", "lavfi", "-i", "sine=f=1000:d=1"],
        ...["-filter_complex", "[0][1]concat=n=2:v=0:a=1"],
        ...["-c:a", "libmp3lame", ...args, "-write_xing", "0", "-id3v2_version", "0", "-f", "mp3", file],
      ]);
      const bytes = await readFile(file);
      const frames = splitFrames(bytes);
      const { stdout } = await run("ffprobe", [
        ...["-v", "error", "-count_packets", "-select_streams", "a:0"],
        ...["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", file],
      ]);
      assert.equal(frames.length, Number(stdout.trim()), "as many frames as ffmpeg's demuxer finds");
      // Main data lies in order in the byte stream of all slots: each frame's starts where the
      // previous one's has ended or later, never before the stream's start, and ends in its own slot.
      let streamPosition = 0;
      let previousEnd = 0;
      let borrowed = 0;
      for (const [index, frame] of frames.entries()) {
        const start = streamPosition - frame.side.mainDataBegin;
        const end = start + frame.side.mainDataLength;
        assert.ok(
          start >= previousEnd,
          `frame ${index}: main data starts at ${start}, before ${previousEnd}`,
        );
        assert.ok(end <= streamPosition + slotLength(frame), `frame ${index}: main data runs past its slot`);
        if (frame.side.mainDataBegin > 0) borrowed++;
        previousEnd = end;
        streamPosition += slotLength(frame);
      }
      assert.ok(borrowed > 0, "some frames use the bit reservoir");
    });
  }
});

test("splitFrames refuses bytes that are not frames, and a last frame cut short", () => {
  const frame = buildFrame();
  assert.equal(splitFrames(Buffer.concat([frame.bytes, frame.bytes])).length, 2);
  assert.throws(() => splitFrames(Buffer.concat([frame.bytes, Buffer.from("junk")])), /no MPEG audio frame/);
  assert.throws(() => splitFrames(frame.bytes.subarray(0, 100)), /cut short/);
});

test("readFrames reads a file a chunk at a time: the same frames as splitFrames, whatever the chunk size", async () => {
  // Frames of three lengths, so chunk ends fall inside frames, on their boundaries and in headers.
  const bytes = Buffer.concat(
    Array.from({ length: 60 }, (_, i) => buildFrame({ bitrateKbps: [128, 160, 320][i % 3], fill: i }).bytes),
  );
  const file = path.join(dir, "chunked.mp3");
  await writeFile(file, bytes);
  const whole = splitFrames(bytes).map((frame) => Buffer.from(frame.bytes).toString("hex"));
  for (const chunkBytes of [1, 3, 417, 500, 1044, 4096, bytes.length, bytes.length * 2]) {
    const parts: string[] = [];
    let reads = 0;
    for await (const frames of readFrames(file, chunkBytes)) {
      reads++;
      for (const frame of frames) parts.push(Buffer.from(frame.bytes).toString("hex"));
    }
    assert.deepEqual(parts, whole, `chunks of ${chunkBytes} bytes`);
    if (chunkBytes >= bytes.length) assert.equal(reads, 1);
  }
  await writeFile(file, bytes.subarray(0, bytes.length - 10));
  await assert.rejects(async () => {
    for await (const _ of readFrames(file, 700));
  }, /no whole frame/);
});

test("enlargeFrame gives the next bit rate that is long enough, keeping the content; never for a CRC frame", () => {
  const frame = buildFrame({ bitrateKbps: 128, mainDataBegin: 12, part23Bits: 100, fill: 0xab });
  const larger = enlargeFrame(frame, frame.header.length + 50);
  assert.ok(larger);
  assert.equal(larger.header.bitrateKbps, 160);
  assert.equal(larger.bytes.length, 522);
  assert.deepEqual(parseFrameHeader(larger.bytes), larger.header);
  assert.deepEqual(parseSideInfo(larger.bytes, 0, larger.header), frame.side);
  assert.deepEqual(larger.bytes.subarray(4, frame.bytes.length), frame.bytes.subarray(4));
  assert.ok(larger.bytes.subarray(frame.bytes.length).every((b) => b === 0));
  assert.equal(enlargeFrame(frame, 2000), null, "more than 320 kb/s can hold");
  assert.equal(enlargeFrame(buildFrame({ crc: true }), 500), null);
});

test("id3v2Length reads the syncsafe size, with a footer when flagged; 0 without a tag", () => {
  const tag = Uint8Array.from([0x49, 0x44, 0x33, 3, 0, 0, 0, 0, 0x02, 0x01]);
  assert.equal(id3v2Length(tag), 10 + 257);
  const withFooter = Uint8Array.from([0x49, 0x44, 0x33, 4, 0, 0x10, 0, 0, 0x01, 0x7f]);
  assert.equal(id3v2Length(withFooter), 10 + 255 + 10);
  assert.equal(id3v2Length(Uint8Array.from([0xff, 0xfb, 0x90, 0, 0, 0, 0, 0, 0, 0])), 0);
  assert.equal(id3v2Length(Uint8Array.from([0x49, 0x44, 0x33])), 0);
});
