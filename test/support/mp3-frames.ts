import {
  type BlockType,
  bitrates,
  type Frame,
  frameLength,
  parseFrameHeader,
  parseSideInfo,
} from "../../src/converter/mp3-frames.ts";

/**
 * Test-only: MPEG-1 layer III frames built bit by bit, with the side-information fields the
 * joining reads (main_data_begin, part2_3_length, block types) set as a test needs them.
 */

export interface FrameSpec {
  bitrateKbps?: number;
  /** 44100 by default (MPEG-1); 22050 makes an MPEG-2 frame. */
  sampleRate?: number;
  channels?: 1 | 2;
  padding?: 0 | 1;
  crc?: boolean;
  mainDataBegin?: number;
  /** part2_3_length in bits, for every granule and channel. */
  part23Bits?: number;
  /** Block type per granule (all channels alike); 0 = long, without window switching. */
  blockTypes?: BlockType[];
  /** Fills the frame's main-data slot. */
  fill?: number;
}

export function buildFrame(spec: FrameSpec = {}): Frame {
  const {
    bitrateKbps = 128,
    sampleRate = 44100,
    channels = 2,
    padding = 0,
    crc = false,
    mainDataBegin = 0,
    part23Bits = 0,
    fill = 0,
  } = spec;
  const mpeg1 = sampleRate >= 32000;
  const granules = mpeg1 ? 2 : 1;
  const blockTypes = spec.blockTypes ?? Array.from({ length: granules }, () => 0 as BlockType);
  const version = mpeg1 ? "1" : "2";
  const length = frameLength(version, bitrateKbps, sampleRate, padding);
  const bytes = new Uint8Array(length).fill(fill);
  const rateIndex = { 44100: 0, 48000: 1, 32000: 2, 22050: 0, 24000: 1, 16000: 2 }[sampleRate] ?? 0;
  // The header's index counts from 1 (0 is "free format"), one more than the list's.
  const bitrateIndex = bitrates(version).indexOf(bitrateKbps) + 1;
  if (bitrateIndex === 0) throw new Error(`no bit rate index for ${bitrateKbps}`);
  bytes[0] = 0xff;
  bytes[1] = 0xe0 | ((mpeg1 ? 3 : 2) << 3) | (1 << 1) | (crc ? 0 : 1);
  bytes[2] = (bitrateIndex << 4) | (rateIndex << 2) | (padding << 1);
  bytes[3] = (channels === 1 ? 3 : 1) << 6;
  const bits = new BitWriter(bytes, 4 + (crc ? 2 : 0));
  bits.write(mainDataBegin, mpeg1 ? 9 : 8);
  bits.write(0, mpeg1 ? (channels === 1 ? 5 : 3) : channels === 1 ? 1 : 2);
  if (mpeg1) bits.write(0, 4 * channels);
  for (let granule = 0; granule < granules; granule++) {
    for (let channel = 0; channel < channels; channel++) {
      bits.write(part23Bits, 12);
      bits.write(0, 9 + 8 + (mpeg1 ? 4 : 9));
      const type = blockTypes[granule] ?? 0;
      if (type === 0) {
        bits.write(0, 1);
        bits.write(0, 15 + 4 + 3);
      } else {
        bits.write(1, 1);
        bits.write(type, 2);
        bits.write(0, 1 + 10 + 9);
      }
      bits.write(0, mpeg1 ? 3 : 2);
    }
  }
  const header = parseFrameHeader(bytes);
  if (!header) throw new Error("built an invalid header");
  return { header, side: parseSideInfo(bytes, 0, header), bytes };
}

class BitWriter {
  private position: number;
  private readonly bytes: Uint8Array;

  constructor(bytes: Uint8Array, byteOffset: number) {
    this.bytes = bytes;
    this.position = byteOffset * 8;
  }

  write(value: number, count: number): void {
    for (let i = count - 1; i >= 0; i--) {
      const bit = (value >> i) & 1;
      const at = this.position >> 3;
      const mask = 1 << (7 - (this.position & 7));
      this.bytes[at] = bit ? (this.bytes[at] as number) | mask : (this.bytes[at] as number) & ~mask;
      this.position++;
    }
  }
}
