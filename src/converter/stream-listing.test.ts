import assert from "node:assert/strict";
import { test } from "node:test";
import { StreamListing } from "./stream-listing.ts";

function firstAudioCodec(stderr: string): string | null {
  const listing = new StreamListing();
  for (const line of stderr.split("\n")) listing.line(line);
  return listing.firstAudioCodec();
}

test("finds the first audio stream's codec in ffmpeg's listing", () => {
  assert.equal(
    firstAudioCodec(`Input #0, mp3, from 'file:/tmp/a.mp3':
  Metadata:
    title           : Hello
  Duration: 00:00:09.04, start: 0.025057, bitrate: 81 kb/s
  Stream #0:0: Audio: mp3, 44100 Hz, stereo, fltp, 81 kb/s
    Metadata:
      encoder         : Lavc59.37
At least one output file must be specified`),
    "mp3",
  );
  assert.equal(
    firstAudioCodec(`Input #0, avi, from 'file:/tmp/a.avi':
  Stream #0:0: Video: mpeg4 (Simple Profile) (FMP4 / 0x34504D46), yuv420p, 160x120 [SAR 1:1 DAR 4:3], 10 fps
  Stream #0:1: Audio: mp3 (U[0][0][0] / 0x0055), 44100 Hz, mono, fltp, 64 kb/s`),
    "mp3",
  );
  assert.equal(
    firstAudioCodec(`Input #0, mpegts, from 'file:/tmp/a.ts':
  Program 1
  Stream #0:0[0x100]: Video: h264 (High) ([27][0][0][0] / 0x001B), yuv420p
  Stream #0:1[0x101](eng): Audio: aac (LC) ([15][0][0][0] / 0x000F), 48000 Hz, stereo, fltp
  Stream #0:2[0x102](ger): Audio: mp3 ([3][0][0][0] / 0x0003), 48000 Hz, stereo, fltp`),
    "aac",
    "the first audio stream counts, as with -map 0:a:0",
  );
  assert.equal(firstAudioCodec("  Stream #0:0: Audio: mp2, 44100 Hz, mono, fltp, 384 kb/s"), "mp2");
  assert.equal(firstAudioCodec("  Stream #0:0: Audio: mp3adu, 44100 Hz"), "mp3adu");
});

test("the first audio stream is the lowest index, whatever order ffmpeg prints them in", () => {
  assert.equal(
    firstAudioCodec(`  Program 1
  Stream #0:2: Audio: aac (LC), 48000 Hz
  No Program
  Stream #0:0: Video: h264
  Stream #0:1: Audio: mp3, 44100 Hz`),
    "mp3",
  );
});

test("no audio stream, or no listing at all (a file ffmpeg cannot open), is null", () => {
  assert.equal(firstAudioCodec("  Stream #0:0: Video: h264 (High), yuv420p"), null);
  assert.equal(firstAudioCodec("file:/tmp/x.mp4: Invalid data found when processing input"), null);
});

test("a listing a file's metadata may have tampered with is not trusted", () => {
  // A language tag with a newline: the real line is cut short and a made-up one follows.
  assert.equal(
    firstAudioCodec(`  Stream #0:0(x
  Stream #0:0: Audio: mp3, 44100 Hz): Audio: aac (LC), 44100 Hz`),
    null,
  );
  // A language tag imitating the rest of the line on the same line gets through (so does one in
  // a metadata key); harmless, as the mp3 muxer refuses the AAC stream and the file is encoded
  // (see transcode.test.ts). A language with a space, colon or parenthesis is not trusted.
  assert.equal(firstAudioCodec("  Stream #0:0(x): Audio: mp3 (): Audio: aac (LC), 44100 Hz"), "mp3");
  assert.equal(firstAudioCodec("  Stream #0:0(a b): Audio: mp3, 44100 Hz"), null);
  // A made-up line for a stream that has its own.
  assert.equal(
    firstAudioCodec(`  Stream #0:0: Audio: aac (LC), 44100 Hz
      title           : x
  Stream #0:0: Audio: mp3, 44100 Hz`),
    null,
  );
  // Streams numbered with a gap.
  assert.equal(firstAudioCodec("  Stream #0:1: Audio: mp3, 44100 Hz"), null);
});

function listingOf(stderr: string): StreamListing {
  const listing = new StreamListing();
  for (const line of stderr.split("\n")) listing.line(line);
  return listing;
}

const MKV_LISTING = `Input #0, matroska,webm, from 'file:/tmp/src.mkv':
  Metadata:
    title           : Source Title
    ARTIST          : Src Artist
  Duration: 00:01:06.50, start: 0.000000, bitrate: 196 kb/s
  Chapters:
    Chapter #0:0: start 0.000000, end 2.000000
      Metadata:
        title           : Intro
  Stream #0:0: Video: h264 (Constrained Baseline), yuv420p(progressive), 160x120 [SAR 1:1 DAR 4:3], 10 fps, 10 tbr, 1k tbn
    Metadata:
      DURATION        : 00:00:06.023000000
  Stream #0:1(fre): Audio: aac (LC), 48000 Hz, mono, fltp (default)
  Stream #0:2(ENG): Audio: mp3, 44100 Hz, stereo, fltp
  Stream #0:3(und): Audio: opus, 48000 Hz, stereo, fltp
At least one output file must be specified`;

test("lists the audio streams with their language and sample rate, in -map 0:a:<n> order", () => {
  const listing = listingOf(MKV_LISTING);
  assert.deepEqual(listing.audioStreams(), [
    { codec: "aac", language: "fre", sampleRate: 48000 },
    { codec: "mp3", language: "eng", sampleRate: 44100 },
    { codec: "opus", language: null, sampleRate: 48000 },
  ]);
  assert.equal(listing.durationSeconds, 66.5);
  assert.equal(listing.hasTitle, true);
  assert.equal(listing.pictureSource(), "moving");
});

test("a title of a stream or a chapter is not the file's title; an attached picture is not a video", () => {
  const listing = listingOf(`Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/tmp/a.m4a':
  Metadata:
    artist          : Someone
  Duration: 00:00:03.00, start: 0.000000, bitrate: 130 kb/s
  Chapters:
    Chapter #0:0: start 0.000000, end 2.000000
      Metadata:
        title           : Intro
  Stream #0:0(und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, stereo, fltp, 128 kb/s (default)
    Metadata:
      title           : SoundHandler
  Stream #0:1: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 300x300, 90k tbr, 90k tbn (attached pic)`);
  assert.equal(listing.hasTitle, false);
  assert.equal(listing.pictureSource(), "attached");
  assert.equal(listingOf("  Stream #0:0: Audio: mp3, 44100 Hz").pictureSource(), null);
  assert.equal(listingOf("  Stream #0:1: Audio: mp3, 44100 Hz").audioStreams(), null, "a gap: not trusted");
});
