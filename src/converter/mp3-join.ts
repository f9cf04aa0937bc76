import { enlargeFrame, type Frame, mainDataOffset, slotLength } from "./mp3-frames.ts";
import { crc16 } from "./xing.ts";

/**
 * Joins MP3 streams encoded separately from overlapping pieces of one PCM stream into one stream
 * that decodes as if it had been encoded in one go.
 *
 * Every piece starts on a frame boundary of the whole (a multiple of the frame's samples), and
 * every piece is encoded by the same encoder with the same settings, so a piece's frame n is the
 * whole stream's frame (piece start / frame samples + n): the encoder delay shifts both alike.
 * A piece is encoded with some frames before the join (so the encoder's psychoacoustic model and
 * bit reservoir have settled) and the piece before it with some frames after (so its last kept
 * frames were made knowing what follows, not an end of stream); the join keeps the earlier
 * piece's frames up to frame J and the later piece's from J on. Two things could still break:
 *
 * - The bit reservoir: frame J (and a few after it) may start its main data in the bytes of the
 *   frames before it, which are the other piece's. Those bytes are copied into the unused tail of
 *   the kept frames before J (the part that held main data of the earlier piece's dropped frames),
 *   and when there is not room enough, frame J-1 is given the next larger bit rate, which lengthens
 *   its slot without changing its content.
 * - The MDCT windows: the decoder overlaps frame J's first granule with frame J-1's last; both
 *   halves must use the same window length (long/long or short/short), or the aliasing does not
 *   cancel. J is chosen among a few frames around the planned join where the windows match.
 */

/** Frames of one piece, and where it sits in the whole. */
export interface PieceFrames {
  frames: Frame[];
  /** Index, in the whole stream, of `frames[0]`. */
  firstFrame: number;
  /** Index, in the whole stream, of the frame this piece should take over from (the plan). */
  joinFrame: number;
}

/** How far from the planned join a join may move, in frames, and how many frames must be left around it. */
export const JOIN_LEEWAY = 4;
/** Frames of the later piece that must precede a join (the encoder settling). */
export const WARM_UP_FRAMES = 8;
/** Frames of the earlier piece that must follow a join (its last kept frames made knowing what follows). */
export const LOOK_AHEAD_FRAMES = 8;
/** Frames held back from writing, so that the next join can still change them. */
const HELD_FRAMES = 64;
/** Joined frames are written in chunks of about this size. */
const WRITE_CHUNK_BYTES = 256 * 1024;
/** The bit reservoir reaches back at most 511 bytes (MPEG-1; 255 for MPEG-2). */
const MAX_RESERVOIR = 511;

export interface JoinedStream {
  /** Bytes of every frame written, in order (for the Xing seek table). */
  frameLengths: number[];
  /** CRC-16 of all frames' bytes (the LAME extension's music CRC). */
  crc: number;
  /** True when the frames' bit rates differ. */
  variableBitrate: boolean;
  /** Each join: where it was made (the whole's frame index), reservoir bytes carried over, frame enlarged. */
  joins: JoinReport[];
}

export interface JoinReport {
  frame: number;
  carried: number;
  enlarged: boolean;
}

export class JoinError extends Error {
  override name = "JoinError";
}

/** Takes the pieces in order and writes the joined frames through `write`. */
export class Mp3Joiner {
  private held: Frame[] = [];
  private heldFirst = 0;
  private readonly result: JoinedStream = { frameLengths: [], crc: 0, variableBitrate: false, joins: [] };
  private firstBitrate: number | undefined;
  private readonly write: (bytes: Uint8Array) => Promise<void>;

  constructor(write: (bytes: Uint8Array) => Promise<void>) {
    this.write = write;
  }

  async add(piece: PieceFrames): Promise<void> {
    if (this.result.frameLengths.length === 0 && this.held.length === 0) {
      if (piece.firstFrame !== 0) throw new JoinError("the first piece must start at frame 0");
      this.held = [...piece.frames];
      this.heldFirst = 0;
    } else {
      const join = chooseJoin(this.held, this.heldFirst, piece);
      if (!join) throw new JoinError(`no frame near ${piece.joinFrame} to join at`);
      this.held = [...join.before, ...piece.frames.slice(join.frame - piece.firstFrame)];
      this.result.joins.push({ frame: join.frame, carried: join.carried, enlarged: join.enlarged });
    }
    await this.flush(this.held.length - HELD_FRAMES);
  }

  /**
   * More frames of the piece last added, which follow its frames so far: a piece may be given in
   * parts (its first part long enough for the join), so that only a part is in memory at a time.
   */
  async extend(frames: Frame[]): Promise<void> {
    if (this.result.frameLengths.length === 0 && this.held.length === 0) {
      throw new JoinError("extend() continues a piece: add() it first");
    }
    this.held = this.held.concat(frames);
    await this.flush(this.held.length - HELD_FRAMES);
  }

  async finish(): Promise<JoinedStream> {
    await this.flush(this.held.length);
    return this.result;
  }

  private async flush(count: number): Promise<void> {
    if (count <= 0) return;
    const out = this.held.slice(0, count);
    this.held = this.held.slice(count);
    this.heldFirst += count;
    // Written in chunks of about WRITE_CHUNK_BYTES: few writes, and no copy of a whole segment.
    let pending: Uint8Array[] = [];
    let pendingBytes = 0;
    const writePending = async (): Promise<void> => {
      const chunk = Buffer.concat(pending, pendingBytes);
      pending = [];
      pendingBytes = 0;
      this.result.crc = crc16(chunk, this.result.crc);
      await this.write(chunk);
    };
    for (const frame of out) {
      const bytes = frame.bytes;
      this.result.frameLengths.push(bytes.length);
      this.firstBitrate ??= frame.header.bitrateKbps;
      if (frame.header.bitrateKbps !== this.firstBitrate) this.result.variableBitrate = true;
      pending.push(bytes);
      pendingBytes += bytes.length;
      if (pendingBytes >= WRITE_CHUNK_BYTES) await writePending();
    }
    if (pendingBytes > 0) await writePending();
  }
}

interface Join extends JoinReport {
  /** The earlier piece's frames up to the join, some of them changed to carry the reservoir. */
  before: Frame[];
}

/** Candidate joins: the planned frame first, then ever further from it on either side. */
function* candidates(planned: number): Generator<number> {
  yield planned;
  for (let shift = 1; shift <= JOIN_LEEWAY; shift++) {
    yield planned + shift;
    yield planned - shift;
  }
}

export function chooseJoin(earlier: Frame[], earlierFirst: number, later: PieceFrames): Join | null {
  for (const frame of candidates(later.joinFrame)) {
    const keep = frame - earlierFirst;
    const laterIndex = frame - later.firstFrame;
    if (keep < 1 || earlierFirst + earlier.length - frame < LOOK_AHEAD_FRAMES) continue;
    if (laterIndex < WARM_UP_FRAMES || laterIndex >= later.frames.length) continue;
    const last = earlier[keep - 1] as Frame;
    const next = later.frames[laterIndex] as Frame;
    if (last.header.channels !== next.header.channels || last.header.sampleRate !== next.header.sampleRate) {
      throw new JoinError("the pieces differ in sample rate or channels");
    }
    if (!windowsMatch(last, next)) continue;
    const borrowed = borrowedBytes(later.frames, laterIndex);
    const reservoir = reservoirBefore(later.frames, laterIndex, borrowed);
    if (!reservoir) continue;
    const kept = earlier.slice(0, keep);
    const before = carryReservoir(kept, reservoir);
    if (before) {
      const enlarged = before.at(-1)?.bytes.length !== kept.at(-1)?.bytes.length;
      return { frame, before, carried: reservoir.length, enlarged };
    }
  }
  return null;
}

/** True when the last granule of `last` ends with the window length the first granule of `next` starts with. */
export function windowsMatch(last: Frame, next: Frame): boolean {
  const lastGranule = last.side.blockTypes.at(-1) ?? [];
  const firstGranule = next.side.blockTypes[0] ?? [];
  return lastGranule.every((type, channel) => {
    const endsLong = type === 0 || type === 3;
    const nextType = firstGranule[channel];
    const startsLong = nextType === 0 || nextType === 1;
    return endsLong === startsLong;
  });
}

/**
 * How many bytes before frame `index`'s slot the main data of it and the frames after it reach
 * back to (0 when none borrows from before it).
 */
export function borrowedBytes(frames: Frame[], index: number): number {
  let between = 0;
  let needed = 0;
  for (let i = index; i < frames.length && between <= MAX_RESERVOIR; i++) {
    const frame = frames[i] as Frame;
    needed = Math.max(needed, frame.side.mainDataBegin - between);
    between += slotLength(frame);
  }
  return needed;
}

/** The last `count` bytes of the main-data stream before frame `index`, or null if there are not so many. */
export function reservoirBefore(frames: Frame[], index: number, count: number): Uint8Array | null {
  const parts: Uint8Array[] = [];
  let left = count;
  for (let i = index - 1; i >= 0 && left > 0; i--) {
    const frame = frames[i] as Frame;
    const slot = frame.bytes.subarray(mainDataOffset(frame.header));
    const take = Math.min(left, slot.length);
    parts.unshift(slot.subarray(slot.length - take));
    left -= take;
  }
  return left > 0 ? null : Buffer.concat(parts);
}

/**
 * `frames` (ending just before the join) with `reservoir` written over the end of their
 * main-data stream, where no kept frame's main data lies; the last frame is enlarged if the
 * unused tail is too short. Null when even the largest frame would not do.
 */
export function carryReservoir(frames: Frame[], reservoir: Uint8Array): Frame[] | null {
  if (reservoir.length === 0) return frames;
  const out = [...frames];
  let last = out.at(-1) as Frame;
  // The last frame's main data ends here, relative to the start of its own slot (main data is in
  // frame order, so no earlier frame's data reaches further).
  const dataEnd = last.side.mainDataLength - last.side.mainDataBegin;
  const unused = slotLength(last) - dataEnd;
  if (unused < 0) throw new JoinError("a frame's main data runs past its slot");
  if (unused < reservoir.length) {
    const larger = enlargeFrame(last, last.header.length + reservoir.length - unused);
    if (!larger) return null;
    last = larger;
  } else {
    last = { ...last, bytes: Uint8Array.from(last.bytes) };
  }
  out[out.length - 1] = last;
  // Write from the end backwards, into the last frame's slot and, for a long reservoir, into the
  // tails of the slots before it (also unused: all main data of kept frames ends before).
  let left = reservoir.length;
  for (let i = out.length - 1; i >= 0 && left > 0; i--) {
    let frame = out[i] as Frame;
    if (i !== out.length - 1) {
      frame = { ...frame, bytes: Uint8Array.from(frame.bytes) };
      out[i] = frame;
    }
    const slotStart = mainDataOffset(frame.header);
    const take = Math.min(left, frame.bytes.length - slotStart);
    frame.bytes.set(reservoir.subarray(left - take, left), frame.bytes.length - take);
    left -= take;
  }
  return left > 0 ? null : out;
}
