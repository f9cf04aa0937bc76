import { open } from "node:fs/promises";
/**
 * MPEG audio layer III frames, as far as joining separately encoded pieces needs them: the
 * 4-byte header (version, bit rate, sample rate, padding, channel mode → frame length) and the
 * side information (where the frame's main data starts in the bit reservoir, how long it is,
 * and which MDCT window each granule uses).
 *
 * The npm parsers (codec-parser, mp3-parser, music-metadata) stop at the header: none reads the
 * side information, and that is what tells whether a frame borrows bytes from the frames before
 * it. So this module is written here, small and tested field by field (ISO/IEC 11172-3 §2.4.1,
 * 13818-3 §2.4.1 for the half-rate MPEG-2/2.5 variants).
 */

export type MpegVersion = "1" | "2" | "2.5";

export interface FrameHeader {
  version: MpegVersion;
  /** kb/s; never 0 here (the "free format" is refused: LAME does not write it). */
  bitrateKbps: number;
  sampleRate: number;
  /** 1 when the frame carries one extra byte. */
  padding: 0 | 1;
  /** True when a 16-bit CRC follows the header (protection bit 0). */
  crc: boolean;
  channels: 1 | 2;
  /** The 2-bit channel mode: 0 stereo, 1 joint stereo, 2 dual channel, 3 mono. */
  channelMode: number;
  /** Bytes of the whole frame, header included. */
  length: number;
  /** PCM samples per channel the frame decodes to: 1152 (MPEG-1) or 576. */
  samples: number;
  /** Bytes of side information after the header (and CRC). */
  sideInfoLength: number;
}

const BITRATES_V1 = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320];
const BITRATES_V2 = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
const SAMPLE_RATES_V1 = [44100, 48000, 32000];

/** Reads the header at `offset`; null if the bytes there are not a layer III frame header. */
export function parseFrameHeader(bytes: Uint8Array, offset = 0): FrameHeader | null {
  if (offset + 4 > bytes.length) return null;
  const b1 = bytes[offset + 1] as number;
  const b2 = bytes[offset + 2] as number;
  const b3 = bytes[offset + 3] as number;
  if (bytes[offset] !== 0xff || (b1 & 0xe0) !== 0xe0) return null;
  const versionBits = (b1 >> 3) & 3;
  if (versionBits === 1) return null; // reserved
  if (((b1 >> 1) & 3) !== 1) return null; // layer III only
  const bitrateIndex = b2 >> 4;
  const rateIndex = (b2 >> 2) & 3;
  if (bitrateIndex === 0 || bitrateIndex === 15 || rateIndex === 3) return null;
  const version: MpegVersion = versionBits === 3 ? "1" : versionBits === 2 ? "2" : "2.5";
  const divisor = version === "1" ? 1 : version === "2" ? 2 : 4;
  const sampleRate = (SAMPLE_RATES_V1[rateIndex] as number) / divisor;
  const bitrateKbps = (version === "1" ? BITRATES_V1 : BITRATES_V2)[bitrateIndex] as number;
  const padding = ((b2 >> 1) & 1) as 0 | 1;
  const channelMode = b3 >> 6;
  const channels = channelMode === 3 ? 1 : 2;
  const crc = (b1 & 1) === 0;
  return {
    version,
    bitrateKbps,
    sampleRate,
    padding,
    crc,
    channels,
    channelMode,
    length: frameLength(version, bitrateKbps, sampleRate, padding),
    samples: frameSamples(sampleRate),
    sideInfoLength: sideInfoLength(version, channels),
  };
}

/** PCM samples per channel in one frame: 1152 for MPEG-1 rates (32, 44.1, 48 kHz), 576 below. */
export function frameSamples(sampleRate: number): number {
  return sampleRate >= 32000 ? 1152 : 576;
}

export function frameLength(
  version: MpegVersion,
  bitrateKbps: number,
  sampleRate: number,
  padding: number,
): number {
  const coefficient = version === "1" ? 144 : 72;
  return Math.floor((coefficient * bitrateKbps * 1000) / sampleRate) + padding;
}

export function sideInfoLength(version: MpegVersion, channels: 1 | 2): number {
  if (version === "1") return channels === 1 ? 17 : 32;
  return channels === 1 ? 9 : 17;
}

/**
 * The bit-rate indices a frame of this version may use, with their kb/s (for making a frame
 * bigger without touching its content: see `withBitrate`).
 */
export function bitrates(version: MpegVersion): readonly number[] {
  return (version === "1" ? BITRATES_V1 : BITRATES_V2).slice(1);
}

/** The MDCT window of one granule of one channel: 0 long, 1 start, 2 short, 3 stop. */
export type BlockType = 0 | 1 | 2 | 3;

export interface SideInfo {
  /** How many bytes before this frame's header its main data starts (the bit reservoir). */
  mainDataBegin: number;
  /** Bytes of main data (part2_3_length of every granule and channel, rounded up to bytes). */
  mainDataLength: number;
  /** Block type per granule, per channel: [granule][channel]. */
  blockTypes: BlockType[][];
}

/** Reads the side information of the frame whose header is at `offset`. */
export function parseSideInfo(bytes: Uint8Array, offset: number, header: FrameHeader): SideInfo {
  const start = offset + 4 + (header.crc ? 2 : 0);
  if (start + header.sideInfoLength > bytes.length) throw new RangeError("side information cut short");
  const bits = new BitReader(bytes, start);
  const mpeg1 = header.version === "1";
  const channels = header.channels;
  const mainDataBegin = bits.read(mpeg1 ? 9 : 8);
  bits.skip(mpeg1 ? (channels === 1 ? 5 : 3) : channels === 1 ? 1 : 2); // private bits
  if (mpeg1) bits.skip(4 * channels); // scfsi
  const granules = mpeg1 ? 2 : 1;
  let mainDataBits = 0;
  const blockTypes: BlockType[][] = [];
  for (let granule = 0; granule < granules; granule++) {
    const types: BlockType[] = [];
    for (let channel = 0; channel < channels; channel++) {
      mainDataBits += bits.read(12); // part2_3_length
      bits.skip(9 + 8 + (mpeg1 ? 4 : 9)); // big_values, global_gain, scalefac_compress
      const windowSwitching = bits.read(1);
      if (windowSwitching) {
        types.push(bits.read(2) as BlockType);
        bits.skip(1 + 10 + 9); // mixed_block_flag, 2 table_select, 3 subblock_gain
      } else {
        types.push(0);
        bits.skip(15 + 4 + 3); // 3 table_select, region0_count, region1_count
      }
      bits.skip(mpeg1 ? 3 : 2); // (preflag,) scalefac_scale, count1table_select
    }
    blockTypes.push(types);
  }
  return { mainDataBegin, mainDataLength: Math.ceil(mainDataBits / 8), blockTypes };
}

class BitReader {
  private position: number;
  private readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array, byteOffset: number) {
    this.bytes = bytes;
    this.position = byteOffset * 8;
  }

  read(count: number): number {
    let value = 0;
    for (let i = 0; i < count; i++) {
      const byte = this.bytes[this.position >> 3] as number;
      value = (value << 1) | ((byte >> (7 - (this.position & 7))) & 1);
      this.position++;
    }
    return value;
  }

  skip(count: number): void {
    this.position += count;
  }
}

/** One frame as found in a buffer. */
export interface Frame {
  header: FrameHeader;
  side: SideInfo;
  /** The frame's bytes (a view into the buffer it was found in). */
  bytes: Uint8Array;
}

/**
 * The frames of a headerless layer III stream (what ffmpeg writes with `-id3v2_version 0
 * -write_xing 0`), in order. Throws on anything else: the caller made these bytes itself, so
 * anything unexpected is a bug to stop at, not damage to work around.
 */
export function splitFrames(bytes: Uint8Array): Frame[] {
  const { frames, used } = splitWholeFrames(bytes);
  if (used < bytes.length) throw new Error(`the frame at byte ${used} is cut short`);
  return frames;
}

/**
 * The whole frames at the start of `bytes` (a chunk of such a stream) and how many bytes they
 * take: what follows them is the start of a frame the next chunk completes.
 */
export function splitWholeFrames(bytes: Uint8Array): { frames: Frame[]; used: number } {
  const frames: Frame[] = [];
  // A segment has tens of thousands of frames but few distinct headers (bit rate × padding): they
  // share one object each, and the side information is read only for the frames a join looks at.
  // That keeps a 10-minute segment's frames at about 1 MiB of memory instead of about 20.
  const headers = new Map<number, FrameHeader>();
  let offset = 0;
  while (offset + 4 <= bytes.length) {
    const key = new DataView(bytes.buffer, bytes.byteOffset + offset, 4).getUint32(0);
    const header = headers.get(key) ?? parseFrameHeader(bytes, offset);
    if (!header) throw new Error(`no MPEG audio frame at byte ${offset}`);
    headers.set(key, header);
    if (offset + header.length > bytes.length) break;
    if (mainDataOffset(header) > header.length)
      throw new Error(`the frame at byte ${offset} has no room for its side information`);
    frames.push(new FrameInBuffer(bytes, offset, header));
    offset += header.length;
  }
  return { frames, used: offset };
}

/**
 * The frames of a file of such a stream, read `chunkBytes` at a time: only the frames of a chunk
 * or two are in memory, however long the file.
 */
export async function* readFrames(file: string, chunkBytes = 1024 * 1024): AsyncGenerator<Frame[]> {
  const handle = await open(file, "r");
  try {
    let rest: Uint8Array = new Uint8Array(0);
    for (;;) {
      const chunk = Buffer.allocUnsafe(rest.length + chunkBytes);
      chunk.set(rest);
      const { bytesRead } = await handle.read(chunk, rest.length, chunkBytes);
      const bytes = chunk.subarray(0, rest.length + bytesRead);
      if (bytesRead === 0) {
        if (bytes.length > 0) throw new Error(`the last ${bytes.length} bytes are no whole frame`);
        return;
      }
      const { frames, used } = splitWholeFrames(bytes);
      // What is left is copied, so the frames yielded keep only their own chunk alive.
      rest = Uint8Array.from(bytes.subarray(used));
      if (frames.length > 0) yield frames;
    }
  } finally {
    await handle.close();
  }
}

/**
 * A frame as a place in the buffer it was found in: its bytes are a view made when asked for, and
 * its side information is parsed when first asked for (a few dozen bytes of memory per frame).
 */
class FrameInBuffer implements Frame {
  readonly header: FrameHeader;
  private readonly buffer: Uint8Array;
  private readonly offset: number;
  private sideInfo: SideInfo | undefined;

  constructor(buffer: Uint8Array, offset: number, header: FrameHeader) {
    this.buffer = buffer;
    this.offset = offset;
    this.header = header;
  }

  get bytes(): Uint8Array {
    return this.buffer.subarray(this.offset, this.offset + this.header.length);
  }

  get side(): SideInfo {
    this.sideInfo ??= parseSideInfo(this.buffer, this.offset, this.header);
    return this.sideInfo;
  }
}

/** Where a frame's own share of the main-data byte stream starts (after header, CRC, side info). */
export function mainDataOffset(header: FrameHeader): number {
  return 4 + (header.crc ? 2 : 0) + header.sideInfoLength;
}

/** Bytes of the main-data stream the frame's own slot holds. */
export function slotLength(frame: Frame): number {
  return frame.header.length - mainDataOffset(frame.header);
}

/** Size of an ID3v2 tag at the start of `bytes` (header and footer included), or 0. */
export function id3v2Length(bytes: Uint8Array): number {
  if (bytes.length < 10 || bytes[0] !== 0x49 || bytes[1] !== 0x44 || bytes[2] !== 0x33) return 0;
  const size =
    (((bytes[6] as number) & 0x7f) << 21) |
    (((bytes[7] as number) & 0x7f) << 14) |
    (((bytes[8] as number) & 0x7f) << 7) |
    ((bytes[9] as number) & 0x7f);
  const footer = ((bytes[5] as number) & 0x10) !== 0 ? 10 : 0;
  return 10 + size + footer;
}

/**
 * A copy of `frame` with another bit rate (a longer slot) and the same content; the bytes the
 * longer slot adds at its end are zero. Null when the frame has a CRC (it would need recomputing)
 * or no bit rate of this version gives at least `minLength` bytes.
 */
export function enlargeFrame(frame: Frame, minLength: number): Frame | null {
  const { header } = frame;
  if (header.crc) return null;
  const table = header.version === "1" ? BITRATES_V1 : BITRATES_V2;
  for (let index = 1; index < table.length; index++) {
    const kbps = table[index] as number;
    const length = frameLength(header.version, kbps, header.sampleRate, header.padding);
    if (length < minLength || length < header.length) continue;
    const bytes = new Uint8Array(length);
    bytes.set(frame.bytes);
    bytes[2] = ((bytes[2] as number) & 0x0f) | (index << 4);
    return { header: { ...header, bitrateKbps: kbps, length }, side: frame.side, bytes };
  }
  return null;
}
