import { createReadStream, createWriteStream } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { id3v2Length } from "./mp3-frames.ts";

/**
 * Adds the front cover to an ID3v2 tag that ffmpeg wrote, as ffmpeg's own mp3 muxer would have
 * written it with the picture as an attached input. The picture is made while the audio converts
 * (a video's frame takes a separate ffmpeg run, a large share of a short clip's time), so it
 * cannot be one of the conversion's inputs: it goes into the finished file's tag (the segmented
 * encode's joining writes its tag itself, and puts it there as it does so).
 *
 * ffmpeg writes the text frames, then the chapters (CHAP, CTOC), then each picture (APIC), then
 * padding (zeros); the picture frame is inserted where the padding starts, with the bytes ffmpeg
 * would write: Latin-1 text, MIME type `image/jpeg`, picture type 3 ("Cover (front)"), and the
 * description ffmpeg takes from the picture stream's title (see `COVER_TITLE`).
 */

/** The attached picture's stream title, which the mp3 muxer writes as the APIC description. */
export const COVER_TITLE = "Album cover";
/** The stream comment that makes the mp3 muxer write picture type 3, the front cover. */
export const COVER_COMMENT = "Cover (front)";
const FRONT_COVER = 3;
/** An ID3v2 size field holds 28 bits (syncsafe). */
const MAX_TAG_BYTES = 2 ** 28 - 1;

/** `tag` (a whole ID3v2.3 or v2.4 tag, as ffmpeg writes it) with a front cover `jpeg` added. */
export function withFrontCover(tag: Uint8Array, jpeg: Uint8Array): Buffer {
  const bytes = Buffer.from(tag.buffer, tag.byteOffset, tag.byteLength);
  const version = bytes[3];
  if (bytes.length < 10 || bytes.toString("latin1", 0, 3) !== "ID3" || (version !== 3 && version !== 4)) {
    throw new Error("the header output has no ID3v2.3/2.4 tag");
  }
  // Unsynchronisation, an extended header or a footer would change the layout; ffmpeg writes none.
  if (bytes[5] !== 0) throw new Error("the ID3v2 tag has flags this writer does not handle");
  const end = 10 + readSyncsafe(bytes, 6);
  if (end > bytes.length) throw new Error("the ID3v2 tag is cut short");
  const paddingStart = framesEnd(bytes, end, version);

  const body = Buffer.concat([
    Buffer.from([0]), // text encoding: ISO-8859-1
    Buffer.from("image/jpeg\0", "latin1"),
    Buffer.from([FRONT_COVER]),
    Buffer.from(`${COVER_TITLE}\0`, "latin1"),
    jpeg,
  ]);
  const frameHeader = Buffer.alloc(10);
  frameHeader.write("APIC", 0, "latin1");
  if (version === 3) frameHeader.writeUInt32BE(body.length, 4);
  else writeSyncsafe(frameHeader, 4, body.length);
  const frames = bytes.subarray(10, paddingStart);
  const padding = bytes.subarray(paddingStart, end);
  const size = frames.length + frameHeader.length + body.length + padding.length;
  if (size > MAX_TAG_BYTES) throw new Error("the cover does not fit in an ID3v2 tag");
  const header = Buffer.from(bytes.subarray(0, 10));
  writeSyncsafe(header, 6, size);
  return Buffer.concat([header, frames, frameHeader, body, padding]);
}

/** Where the frames end (the padding starts, or the tag ends), walking them from the header. */
function framesEnd(bytes: Buffer, end: number, version: 3 | 4): number {
  let position = 10;
  while (position + 10 <= end && bytes[position] !== 0) {
    const size = version === 3 ? bytes.readUInt32BE(position + 4) : readSyncsafe(bytes, position + 4);
    position += 10 + size;
  }
  if (position > end) throw new Error("an ID3v2 frame runs past the tag's end");
  return Math.min(position, end);
}

function readSyncsafe(bytes: Buffer, offset: number): number {
  return (
    (((bytes[offset] as number) & 0x7f) << 21) |
    (((bytes[offset + 1] as number) & 0x7f) << 14) |
    (((bytes[offset + 2] as number) & 0x7f) << 7) |
    ((bytes[offset + 3] as number) & 0x7f)
  );
}

function writeSyncsafe(bytes: Buffer, offset: number, value: number): void {
  bytes[offset] = (value >> 21) & 0x7f;
  bytes[offset + 1] = (value >> 14) & 0x7f;
  bytes[offset + 2] = (value >> 7) & 0x7f;
  bytes[offset + 3] = value & 0x7f;
}

/**
 * Puts the front cover into the ID3v2 tag at the start of the MP3 `file`: the file is written
 * again behind the longer tag (a scratch file, renamed over it; the MP3 is stored with fsync
 * later, so there is none here).
 */
export async function addFrontCoverToFile(file: string, jpeg: Uint8Array): Promise<void> {
  const handle = await open(file, "r");
  let tag: Buffer;
  try {
    const head = Buffer.alloc(10);
    await handle.read(head, 0, 10, 0);
    tag = Buffer.alloc(id3v2Length(head));
    await handle.read(tag, 0, tag.length, 0);
  } finally {
    await handle.close();
  }
  const covered = `${file}.covered`;
  try {
    const out = createWriteStream(covered);
    out.write(withFrontCover(tag, jpeg));
    await pipeline(createReadStream(file, { start: tag.length }), out);
    await rename(covered, file);
  } finally {
    await rm(covered, { force: true });
  }
}
