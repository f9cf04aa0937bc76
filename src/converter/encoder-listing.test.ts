import assert from "node:assert/strict";
import { test } from "node:test";
import { EncoderListing } from "./encoder-listing.ts";

const read = (lines: string[]) => {
  const listing = new EncoderListing();
  let done = false;
  for (const line of lines) done = listing.line(line) || done;
  return { done, format: listing.format() };
};

const input = [
  "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/tmp/a.mp4':",
  "  Duration: 00:05:00.00, start: 0.000000, bitrate: 194 kb/s",
  "  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 22050 Hz, mono, fltp, 192 kb/s (default)",
  "Stream mapping:",
  "  Stream #0:1 -> #0:0 (aac (native) -> mp3 (libmp3lame))",
];

test("reads the encoder's rate and channels from the output listing, not the input's", () => {
  const { done, format } = read([
    ...input,
    "Output #0, mp3, to 'file:/tmp/x.mp3':",
    "  Metadata:",
    "    TSSE            : Lavf59.27.100",
    "  Stream #0:0(und): Audio: mp3, 48000 Hz, stereo, fltp (default)",
  ]);
  assert.equal(done, true);
  assert.deepEqual(format, { sampleRate: 48000, channels: 2 });
  assert.deepEqual(
    read(["Output #0, mp3, to 'x':", "  Stream #0:0: Audio: mp3, 22050 Hz, mono, fltp"]).format,
    {
      sampleRate: 22050,
      channels: 1,
    },
  );
});

test("unknown before the output listing; unusable for other layouts or a line of odd shape", () => {
  assert.deepEqual(read(input), { done: false, format: null });
  for (const stream of [
    "  Stream #0:0: Audio: mp3, 48000 Hz, 5.1, fltp",
    "  Stream #0:0: Audio: aac, 48000 Hz, stereo, fltp",
    "  Stream #0:0(Stream #0:0: Audio: mp3, 8000 Hz, mono): Audio: mp3, 48000 Hz, stereo",
  ]) {
    assert.deepEqual(read(["Output #0, mp3, to 'x':", stream]), { done: true, format: null }, stream);
  }
});

test("a metadata value cannot pose as the stream line: only lines starting with Stream count", () => {
  const { format } = read([
    "Output #0, mp3, to 'x':",
    "  Metadata:",
    "    title           : Stream #0:0: Audio: mp3, 8000 Hz, mono",
    "  Stream #0:0: Audio: mp3, 44100 Hz, stereo, fltp",
  ]);
  assert.deepEqual(format, { sampleRate: 44100, channels: 2 });
});
