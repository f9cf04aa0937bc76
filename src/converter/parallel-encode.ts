import { type FileHandle, mkdir, open, readFile, rm, stat } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  buildDecodeArgs,
  buildHeaderArgs,
  buildSegmentEncodeArgs,
  type FfmpegArgsInput,
  type PcmFormat,
  pcmSampleBytes,
} from "./ffmpeg-args.ts";
import { withFrontCover } from "./id3-picture.ts";
import { frameSamples, id3v2Length, parseFrameHeader, readFrames } from "./mp3-frames.ts";
import { type JoinReport, Mp3Joiner } from "./mp3-join.ts";
import { runFfmpegOrThrow } from "./run-ffmpeg.ts";
import type { SegmentFanout } from "./segment-fanout.ts";
import { planJoins, type Segment, segmentsFor } from "./segment-plan.ts";
import { fillXingFrame, readDelayPadding, xingLayout } from "./xing.ts";

/**
 * Segmented encoding: one MP3 encode uses one core, so a long input is cut into segments that
 * are encoded at once on several cores and joined into one gapless MP3.
 *
 * 1. One ffmpeg decodes the audio (through the same filters as a single run) into a raw float
 *    PCM file, at the sample rate and channel count the single run's encoder chose. Beside it, the
 *    single run's own command stopped after one frame: its ID3v2 tag (tags, chapters; the cover
 *    picture is added to it here, see id3-picture.ts) and its Xing/LAME frame head the joined file.
 * 2. An ffmpeg encodes each segment (`subfile` reads exactly its byte range) with the single run's
 *    encoder settings, up to `workers` at a time. It starts at once and reads the PCM as the
 *    decoder writes it (`-follow`), so no core waits for a segment's PCM to be all on disk; the
 *    last segment, which runs to the end of the stream, starts once the decoder is done. Segments
 *    start on frame boundaries of the whole and overlap (see segment-plan.ts and mp3-join.ts).
 *    With a `fanout`, segments the local workers have no room for are offered to other converters
 *    once their PCM is written (segment-fanout.ts); the local workers back up any that are still
 *    out when nothing else is left, so a missing or dead helper costs time, never the encode.
 * 3. The segments' frames are joined in order into the output, behind the tag and the Xing frame,
 *    whose totals (frames, bytes, seek table, delay and padding, CRCs) are filled in last. Each
 *    segment's MP3 is read a MiB at a time, so the joining's memory does not grow with the length.
 *
 * Any failure rejects (after stopping every process); the caller falls back to a single run,
 * which has the last word on how a bad input fails.
 */

export interface SegmentedEncodeOptions {
  ffmpegPath: string;
  /** The conversion as a single run would do it (input, output, format, audio options). */
  conversion: FfmpegArgsInput;
  /** The single run's encoder input: its sample rate and channels (from its stream listing). */
  pcm: PcmFormat;
  /** The input's duration as its container tells it (for the plan; the real length may differ). */
  estimatedSeconds: number;
  /** Encoder processes at once on this machine. */
  workers: number;
  /** Other converters to offer segments to (segment-fanout.ts); undefined: this machine does all. */
  fanout?: SegmentFanout | undefined;
  /** `performance.now()` time at which every process is killed. */
  deadline: number;
  signal?: AbortSignal | undefined;
  /** Fraction of the audio encoded so far (0..1). */
  onProgress?: (fraction: number) => void;
  /** The front cover (a JPEG) for the tag, once made; undefined: none. */
  cover?: Promise<Uint8Array | undefined> | undefined;
  /** Shortest segment in seconds; the default suits production (see segment-plan.ts). */
  minSegmentSeconds?: number;
}

export interface SegmentedEncodeResult {
  durationSeconds: number;
  segments: number;
  /** Of those, how many other converters encoded (fan-out). */
  remoteSegments: number;
  /** The joins: where, and how much of the bit reservoir was carried across. */
  joins: JoinReport[];
}

/** How often a segment offered to another converter checks whether its PCM is all written. */
const PCM_POLL_MS = 100;

export async function encodeInSegments(options: SegmentedEncodeOptions): Promise<SegmentedEncodeResult> {
  const { conversion, pcm, workers, fanout } = options;
  const scratch = `${conversion.output}.segments`;
  await rm(scratch, { recursive: true, force: true });
  await mkdir(scratch, { recursive: true });
  // Stops every process when one fails, or when the caller aborts.
  const stop = new AbortController();
  const onOuterAbort = (): void => stop.abort(options.signal?.reason);
  if (options.signal?.aborted) onOuterAbort();
  options.signal?.addEventListener("abort", onOuterAbort, { once: true });
  const processes: Promise<unknown>[] = [];
  // Held open from its creation to the end (see the finally below).
  let pcmHandle: FileHandle | undefined;
  // The first thing that went wrong: what the caller is told, not the aborts it caused.
  let failure: unknown;
  const fail = (error: unknown): void => {
    failure ??= error;
    stop.abort(error);
  };
  try {
    const result = await run();
    // Offers still out (a segment backed up here won) and losing runs end now.
    stop.abort(new Error("the encode is done"));
    await Promise.allSettled(processes);
    return result;
  } catch (error) {
    fail(error);
    await Promise.allSettled(processes);
    throw failure;
  } finally {
    options.signal?.removeEventListener("abort", onOuterAbort);
    await rm(scratch, { recursive: true, force: true });
    // The PCM file's pages (about 1.4 GB an hour of audio) are freed when its last descriptor
    // closes, which takes the kernel about a third of a second: this one, closed without waiting,
    // so that the MP3's storing and the events go on meanwhile instead of after it.
    pcmHandle?.close().catch(() => {});
  }

  async function run(): Promise<SegmentedEncodeResult> {
    const spf = frameSamples(pcm.sampleRate);
    const sampleBytes = pcmSampleBytes(pcm);
    const estimatedFrames = Math.floor((options.estimatedSeconds * pcm.sampleRate) / spf);
    // Planned for every encoder that may take part: cut for this machine alone, a fanned-out
    // encode's segments would be too long for the helpers to shorten its time.
    const joins = planJoins(
      estimatedFrames,
      pcm.sampleRate,
      workers + (fanout?.helpers ?? 0),
      options.minSegmentSeconds,
    );
    let segments = segmentsFor(joins, pcm.sampleRate);
    const pcmFile = path.join(scratch, "audio.f32");
    const headerFile = path.join(scratch, "header.mp3");
    const progress = new EncodedSeconds(options.estimatedSeconds, options.onProgress);
    let remoteSegments = 0;

    // The segments started so far, in order, and how each ended (by segment index).
    const started: Segment[] = [];
    const encoded = new Map<number, Deferred<string>>();
    const deferredFor = (index: number): Deferred<string> => entryOf(encoded, index, deferred<string>);
    // Who encodes each started segment not yet done: here, another converter, or both (a late
    // helper's segment backed up here). Each run is cancelled on its own when the other wins.
    const runs = new Map<number, SegmentRuns>();
    const runsOf = (index: number): SegmentRuns => entryOf(runs, index, () => ({}));
    const done = new Set<number>();
    // 1. The decoder. Until it is done, the stream's real length is not known.
    let totalSamples: number | undefined;
    // The PCM file exists before any encoder opens it (they follow it as it grows).
    pcmHandle = await open(pcmFile, "w");
    const decoded = runOrThrow("decoding", { args: buildDecodeArgs({ ...conversion, pcmFile, pcm }) }).then(
      async () => {
        totalSamples = Math.floor((await stat(pcmFile)).size / sampleBytes);
        // The stream may end before the container said (or at MAX_AUDIO_SECONDS): segments started
        // on the plan whose range it cuts short are stopped, and done again if the new plan has them.
        const replanned = segmentsFor(joins, pcm.sampleRate, totalSamples);
        const cutFrom = started.findIndex(
          (segment) => replanned[segment.index]?.endSample !== segment.endSample,
        );
        if (cutFrom !== -1) {
          for (const segment of started.splice(cutFrom)) {
            const reason = new Error("the stream ends before this segment does");
            for (const run of Object.values(runs.get(segment.index) ?? {})) run.abort(reason);
            runs.delete(segment.index);
            // Even one encoded already (its range was all written) is encoded again on the new
            // plan: nothing has read it yet, the joining starts after this.
            done.delete(segment.index);
            encoded.delete(segment.index);
          }
        }
        segments = replanned;
        schedule();
      },
    );
    processes.push(decoded.catch(fail));
    const headed = runOrThrow("header", { args: buildHeaderArgs({ ...conversion, output: headerFile }) });
    processes.push(headed.catch(fail));
    // Once stopped, segments not started never will be: whoever waits for them must not wait for ever.
    stop.signal.addEventListener(
      "abort",
      () => {
        for (const segment of segments) {
          if (segment.index >= started.length) deferredFor(segment.index).reject(stop.signal.reason);
        }
      },
      { once: true },
    );

    // 2. The segment encoders, started in order: here while a local worker is free, else offered
    // to other converters while fewer than `fanout.helpers` offers are out. A segment that ends
    // before the stream does is read as it is written (or offered once it is all written); the
    // last one waits for the decoder. Once every segment is started, a free local worker backs up
    // the first one still out with a helper: nobody may have taken it, or its helper died. A run
    // cancelled because the stream ended early (above) or the other run won is no failure.
    let runningLocal = 0;
    let runningRemote = 0;
    const helpers = fanout?.helpers ?? 0;
    function schedule(): void {
      while (!stop.signal.aborted) {
        const next = segments[started.length];
        const startable = next !== undefined && (next.endSample !== null || totalSamples !== undefined);
        if (startable && runningLocal < workers) {
          started.push(next);
          startLocal(next);
        } else if (startable && runningRemote < helpers) {
          started.push(next);
          startRemote(next);
        } else if (next === undefined && runningLocal < workers) {
          const late = started.find((segment) => !done.has(segment.index) && !runs.get(segment.index)?.local);
          if (!late) return;
          startLocal(late);
        } else {
          return;
        }
      }
    }

    /** The run's outcome: the segment's file when it won, nothing when cancelled or beaten. */
    function settle(segment: Segment, run: AbortController, file: string): void {
      if (run.signal.aborted || done.has(segment.index)) return;
      done.add(segment.index);
      if (runsOf(segment.index).remote === run) remoteSegments++;
      progress.set(segment.index, segmentSeconds(segment));
      for (const other of Object.values(runsOf(segment.index))) {
        if (other !== run) other.abort(new Error("the segment is encoded already"));
      }
      runs.delete(segment.index);
      deferredFor(segment.index).resolve(file);
    }

    function startLocal(segment: Segment): void {
      const run = new AbortController();
      runsOf(segment.index).local = run;
      runningLocal++;
      const encoding = encodeSegment(segment, AbortSignal.any([stop.signal, run.signal]));
      processes.push(
        encoding
          .then(
            (file) => settle(segment, run, file),
            (error: unknown) => {
              if (run.signal.aborted) return;
              deferredFor(segment.index).reject(error);
              fail(error);
            },
          )
          .finally(() => {
            runningLocal--;
            schedule();
          }),
      );
    }

    function startRemote(segment: Segment): void {
      const helper = fanout as SegmentFanout;
      const run = new AbortController();
      runsOf(segment.index).remote = run;
      runningRemote++;
      const signal = AbortSignal.any([stop.signal, run.signal]);
      const encoding = (async () => {
        await pcmWritten(pcmRange(segment).byteEnd, signal);
        const output = path.join(scratch, `segment-${segment.index}.remote.mp3`);
        return helper.encode({ index: segment.index, pcmFile, pcm, ...pcmRange(segment), output }, signal);
      })();
      processes.push(
        encoding
          // A failure is not the encode's: the segment is then encoded here (see `schedule`).
          .then(
            (file) => settle(segment, run, file),
            () => {},
          )
          .finally(() => {
            runningRemote--;
            const current = runs.get(segment.index);
            if (current?.remote === run) delete current.remote;
            schedule();
          }),
      );
    }

    /** Resolves once the decoder has written `bytes` of PCM (or has ended: then the plan may change). */
    async function pcmWritten(bytes: number, signal: AbortSignal): Promise<void> {
      while (totalSamples === undefined && (await stat(pcmFile)).size < bytes) {
        await sleep(PCM_POLL_MS, undefined, { signal });
      }
    }

    async function encodeSegment(segment: Segment, signal: AbortSignal): Promise<string> {
      const output = path.join(scratch, `segment-${segment.index}.mp3`);
      await runOrThrow(`segment ${segment.index}`, {
        args: buildSegmentEncodeArgs({ ...conversion, output, pcmFile, pcm, ...pcmRange(segment) }),
        signal,
        onStdoutLine: (line) => {
          if (!line.startsWith("out_time_us=")) return;
          const micros = Number(line.slice("out_time_us=".length));
          if (Number.isFinite(micros) && micros >= 0) progress.set(segment.index, micros / 1e6);
        },
      });
      return output;
    }

    /**
     * The segment's bytes of the PCM file, as far as the stream is known to go: the last segment's
     * end is known once the decoder is done (it is started only then).
     */
    function pcmRange(segment: Segment): { byteStart: number; byteEnd: number } {
      const end = segment.endSample ?? (totalSamples as number);
      return {
        byteStart: segment.startSample * sampleBytes,
        byteEnd: Math.min(end, totalSamples ?? end) * sampleBytes,
      };
    }

    function segmentSeconds(segment: Segment): number {
      const { byteStart, byteEnd } = pcmRange(segment);
      return (byteEnd - byteStart) / sampleBytes / pcm.sampleRate;
    }

    schedule();

    // 3. Header and joining, in segment order, while later segments are still encoding.
    await decoded;
    await headed;
    const header = await readFile(headerFile);
    const tagLength = id3v2Length(header);
    const xingHeader = parseFrameHeader(header, tagLength);
    const xingTemplate = xingHeader && header.subarray(tagLength, tagLength + xingHeader.length);
    if (!xingHeader || !xingTemplate || !xingLayout(xingTemplate)) {
      throw new Error("the header output has no Xing frame");
    }
    if (xingHeader.sampleRate !== pcm.sampleRate || xingHeader.channels !== pcm.channels) {
      throw new Error(
        `the encoder chose ${xingHeader.sampleRate} Hz × ${xingHeader.channels}, not ${pcm.sampleRate} Hz × ${pcm.channels}`,
      );
    }
    const delay = readDelayPadding(xingTemplate)?.delay ?? 0;
    // The cover is made while the audio converts; the tag is written once it is there.
    const jpeg = await options.cover;
    const tag =
      jpeg === undefined
        ? header.subarray(0, tagLength)
        : withFrontCover(header.subarray(0, tagLength), jpeg);

    const out = await open(conversion.output, "w");
    try {
      await out.write(tag);
      await out.write(xingTemplate);
      const joiner = new Mp3Joiner(async (bytes) => {
        await out.write(bytes);
      });
      for (let index = 0; index < segments.length; index++) {
        const file = await deferredFor(index).promise;
        const segment = segments[index] as Segment;
        // Read a part at a time: the first part (a MiB, hundreds of frames) holds the join.
        let first = true;
        for await (const frames of readFrames(file)) {
          if (first)
            await joiner.add({ frames, firstFrame: segment.startSample / spf, joinFrame: segment.joinFrame });
          else await joiner.extend(frames);
          first = false;
        }
        if (first) throw new Error(`segment ${index} has no frames`);
        await rm(file, { force: true });
      }
      const joined = await joiner.finish();
      const frames = joined.frameLengths.length;
      const samples = totalSamples as number;
      let offset = xingTemplate.length;
      const frameOffsets: number[] = [];
      for (const length of joined.frameLengths) {
        frameOffsets.push(offset);
        offset += length;
      }
      const xing = fillXingFrame(xingTemplate, {
        frames,
        bytes: offset,
        tocOffsets: Array.from({ length: 100 }, (_, i) => frameOffsets[Math.floor((i * frames) / 100)] ?? 0),
        variableBitrate: joined.variableBitrate,
        delay,
        padding: frames * spf - delay - samples,
        musicCrc: joined.crc,
      });
      await out.write(xing, 0, xing.length, tag.length);
      return {
        durationSeconds: samples / pcm.sampleRate,
        segments: segments.length,
        remoteSegments,
        joins: joined.joins,
      };
    } finally {
      await out.close();
    }
  }

  /** Runs one ffmpeg of this encode; rejects unless it exits with 0. */
  function runOrThrow(
    what: string,
    run: { args: string[]; onStdoutLine?: (line: string) => void; signal?: AbortSignal },
  ): Promise<void> {
    return runFfmpegOrThrow(what, {
      ffmpegPath: options.ffmpegPath,
      args: run.args,
      deadline: options.deadline,
      signal: run.signal ?? stop.signal,
      onStdoutLine: run.onStdoutLine,
    });
  }
}

/**
 * Sums the seconds each segment has encoded (a segment encoded twice, here and by a helper, counts
 * once) and passes the fraction of the whole on, never above 0.99.
 */
class EncodedSeconds {
  private readonly bySegment = new Map<number, number>();
  private seconds = 0;
  private readonly total: number;
  private readonly onProgress: ((fraction: number) => void) | undefined;

  constructor(total: number, onProgress?: (fraction: number) => void) {
    this.total = total;
    this.onProgress = onProgress;
  }

  set(segment: number, seconds: number): void {
    const before = this.bySegment.get(segment) ?? 0;
    if (seconds <= before || this.total <= 0) return;
    this.bySegment.set(segment, seconds);
    this.seconds += seconds - before;
    this.onProgress?.(Math.min(0.99, this.seconds / this.total));
  }
}

/** The runs encoding one segment: here, by another converter, or both. */
interface SegmentRuns {
  local?: AbortController;
  remote?: AbortController;
}

/** The map's entry for `key`, made by `create` the first time it is asked for. */
function entryOf<K, V>(map: Map<K, V>, key: K, create: () => V): V {
  let entry = map.get(key);
  if (entry === undefined) {
    entry = create();
    map.set(key, entry);
  }
  return entry;
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A failure is also seen where the segment is awaited; this only keeps it from being "unhandled".
  promise.catch(() => {});
  return { promise, resolve, reject };
}
