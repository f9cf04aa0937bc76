import { mainDataOffset, parseFrameHeader } from "./mp3-frames.ts";

/**
 * The Xing/LAME header frame: the first frame of a VBR (tag "Xing") or CBR ("Info") MP3 that
 * decodes to silence and tells players the frame count (exact duration), the byte count and a
 * seek table (TOC), and in its LAME extension the encoder delay and padding that gapless players
 * trim. A segmented encode takes the frame ffmpeg wrote for the same settings (so every field we
 * do not know better stays as ffmpeg writes it) and fills in the totals of the joined file.
 *
 * Layout after the tag: flags (4), then, if flagged, frames (4), bytes (4), TOC (100), quality
 * (4); then the LAME extension: encoder (9), revision/VBR method (1), lowpass (1), peak (4),
 * replay gains (2 + 2), encoding flags (1), bit rate (1), delay and padding (12 + 12 bits), misc
 * (1), MP3 gain (1), preset/surround (2), music length (4), music CRC (2), and the CRC of the
 * frame's bytes before it (2; the first 190 in a stereo MPEG-1 frame, where ffmpeg and LAME agree).
 */

const FLAG_FRAMES = 1;
const FLAG_BYTES = 2;
const FLAG_TOC = 4;
const FLAG_QUALITY = 8;

export interface XingTotals {
  /** Audio frames after the Xing frame. */
  frames: number;
  /** Bytes of the MPEG stream: the Xing frame and every audio frame. */
  bytes: number;
  /** Byte offset (from the start of the Xing frame) of the frame at 0 %, 1 %, … 99 % of the frames. */
  tocOffsets: readonly number[];
  /** True when the audio frames' bit rates differ ("Xing"), false for constant bit rate ("Info"). */
  variableBitrate: boolean;
  /** Encoder delay and padding in samples, as gapless players trim them. */
  delay: number;
  padding: number;
  /** CRC-16 of all the audio frames' bytes. */
  musicCrc: number;
}

interface XingLayout {
  tag: number;
  flags: number;
  /** Offset of the LAME extension, or -1 when the frame has none. */
  lame: number;
}

/** Where the Xing fields are in `frame` (a whole Xing frame), or null when it is not one. */
export function xingLayout(frame: Uint8Array): XingLayout | null {
  const header = parseFrameHeader(frame);
  if (!header) return null;
  const tag = mainDataOffset(header);
  const name = Buffer.from(frame.buffer, frame.byteOffset + tag, 4).toString("latin1");
  if (name !== "Xing" && name !== "Info") return null;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const flags = view.getUint32(tag + 4);
  let at = tag + 8;
  if (flags & FLAG_FRAMES) at += 4;
  if (flags & FLAG_BYTES) at += 4;
  if (flags & FLAG_TOC) at += 100;
  if (flags & FLAG_QUALITY) at += 4;
  // The LAME extension: 36 bytes, when the frame has room for them.
  const lame = at + 36 <= frame.length ? at : -1;
  return { tag, flags, lame };
}

/** Writes `totals` into a copy of the Xing frame `template`. */
export function fillXingFrame(template: Uint8Array, totals: XingTotals): Uint8Array {
  const frame = Uint8Array.from(template);
  const layout = xingLayout(frame);
  if (!layout) throw new Error("the header frame has no Xing/Info tag");
  const view = new DataView(frame.buffer);
  Buffer.from(frame.buffer).write(totals.variableBitrate ? "Xing" : "Info", layout.tag, "latin1");
  let at = layout.tag + 8;
  if (layout.flags & FLAG_FRAMES) {
    view.setUint32(at, totals.frames);
    at += 4;
  }
  if (layout.flags & FLAG_BYTES) {
    view.setUint32(at, totals.bytes);
    at += 4;
  }
  if (layout.flags & FLAG_TOC) {
    for (let i = 0; i < 100; i++) {
      const offset = totals.tocOffsets[i] ?? 0;
      frame[at + i] = i === 0 ? 0 : Math.min(255, Math.floor((256 * offset) / totals.bytes));
    }
  }
  const lame = layout.lame;
  if (lame >= 0 && lame + 36 <= frame.length) {
    if (totals.delay > 0xfff || totals.padding > 0xfff || totals.padding < 0) {
      throw new RangeError(`encoder delay ${totals.delay} or padding ${totals.padding} out of range`);
    }
    const delayPadding = (totals.delay << 12) | totals.padding;
    frame[lame + 21] = delayPadding >> 16;
    frame[lame + 22] = (delayPadding >> 8) & 0xff;
    frame[lame + 23] = delayPadding & 0xff;
    view.setUint32(lame + 28, totals.bytes);
    view.setUint16(lame + 32, totals.musicCrc);
    view.setUint16(lame + 34, crc16(frame.subarray(0, lame + 34)));
  }
  return frame;
}

/** Encoder delay and padding from a Xing frame's LAME extension, or null without one. */
export function readDelayPadding(frame: Uint8Array): { delay: number; padding: number } | null {
  const layout = xingLayout(frame);
  if (!layout || layout.lame < 0) return null;
  const value =
    ((frame[layout.lame + 21] as number) << 16) |
    ((frame[layout.lame + 22] as number) << 8) |
    (frame[layout.lame + 23] as number);
  return { delay: value >> 12, padding: value & 0xfff };
}

/** Frame count of a Xing frame, or null when it has none. */
export function readXingFrames(frame: Uint8Array): number | null {
  const layout = xingLayout(frame);
  if (!layout || !(layout.flags & FLAG_FRAMES)) return null;
  return new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getUint32(layout.tag + 8);
}

const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let n = 0; n < 256; n++) {
    let crc = n;
    for (let bit = 0; bit < 8; bit++) crc = crc & 1 ? (crc >>> 1) ^ 0xa001 : crc >>> 1;
    table[n] = crc;
  }
  return table;
})();

/** CRC-16 (polynomial 0x8005, reflected, initial 0): the checksum of the LAME extension. */
export function crc16(bytes: Uint8Array, crc = 0): number {
  let value = crc;
  const length = bytes.length;
  for (let i = 0; i < length; i++) {
    value = (value >>> 8) ^ (CRC16_TABLE[(value ^ (bytes[i] as number)) & 0xff] as number);
  }
  return value;
}
