import { readFile, rm, stat, writeFile } from "node:fs/promises";
import type { ConversionOptions } from "../contracts/options.ts";
import { errorMessage } from "../platform/error-message.ts";
import { ConversionError } from "./conversion-error.ts";
import { EncoderListing } from "./encoder-listing.ts";
import {
  type AudioPath,
  buildCoverArgs,
  buildFfmpegArgs,
  buildLoudnessArgs,
  buildProbeArgs,
  type OutputPlan,
  type PcmFormat,
} from "./ffmpeg-args.ts";
import { addFrontCoverToFile } from "./id3-picture.ts";
import { readLoudness } from "./loudness.ts";
import { ffmetadataChapters, planOutput } from "./output-plan.ts";
import { encodeInSegments } from "./parallel-encode.ts";
import { type FfmpegExit, runFfmpeg } from "./run-ffmpeg.ts";
import { type SegmentingSettings, shouldSegment } from "./segment-plan.ts";
import { StreamListing } from "./stream-listing.ts";

export { ConversionError } from "./conversion-error.ts";
export type { AudioPath } from "./ffmpeg-args.ts";

export interface TranscodeOptions {
  ffmpegPath: string;
  /** Local file of the upload. */
  input: string;
  /** Local file to write the MP3 to; left behind on failure, the caller removes it. */
  output: string;
  /** ffmpeg demuxer name to force (see `buildFfmpegArgs`). */
  format: string;
  /** Wall-clock limit for the whole conversion (probe included); ffmpeg is killed after it and the job fails with a readable reason. */
  timeoutSeconds: number;
  /**
   * Fraction done, 0..1, never decreasing; 1 once ffmpeg has ended successfully. Also passes the
   * input's duration (null when the container does not tell). Must not throw.
   */
  onProgress?: (fraction: number, inputDurationSeconds: number | null) => void;
  /** Aborting kills ffmpeg; the promise then rejects with an ordinary (retryable) Error. */
  signal?: AbortSignal;
  /** MAX_AUDIO_SECONDS: longer audio fails (ConversionError "too-long"); 0 or absent = no limit. */
  maxSeconds?: number;
  /** The user's options for this upload (see `contracts/options.ts`); none: every default. */
  options?: ConversionOptions | undefined;
  /** The upload's name: the MP3's title when neither the user nor the file gives one. */
  fileName?: string | undefined;
  /** Long inputs are encoded in segments on several cores (see parallel-encode.ts); undefined: never. */
  segmenting?: SegmentingSettings | undefined;
}

export interface TranscodeResult {
  /** Length of the MP3 in seconds (what ffmpeg wrote; the input's duration if unknown), or null. */
  durationSeconds: number | null;
  /** `copy`: the source's MP3 frames were copied unchanged; `encode`: decoded and encoded with LAME. */
  audio: AudioPath;
  /** Codec of the source's first audio stream as the probe saw it (`mp3`, `aac`, …), or null if unclear. */
  sourceCodec: string | null;
  /** Why a copy was tried and given up for encoding (damaged MP3 frames, muxer refused), if it was. */
  copyAbandoned?: string;
  /** Whether a cover picture was attached. */
  cover: boolean;
  /** Whether the loudness was normalised (not for silence, which has no loudness to set). */
  normalized: boolean;
  /** Segments encoded at once and joined, when the encode was segmented. */
  segments?: number;
  /** Of those, how many other converters encoded (CONVERTER_SEGMENT_FANOUT), when any did. */
  remoteSegments?: number;
  /** Why a segmented encode was given up for a single run, if it was. */
  segmentingAbandoned?: string;
}

/** How much of ffmpeg's stderr is kept for error messages; a bad file can make it print without end. */
const STDERR_TAIL_LINES = 30;

/**
 * Converts the first audio stream of `input` to an MP3. First the stream headers are read: by a
 * probe run (see `buildProbeArgs`), or by the conversion run itself where the options allow a
 * guess (see below); when the first audio stream already is MP3 its frames are copied
 * (`-c:a copy`: lossless, and an order of magnitude faster), otherwise encoded with LAME. Copying
 * is only an optimisation: if the copy fails, or the MP3 frames turn out damaged (the mp3 muxer
 * warns of invalid packets), the conversion is done again by encoding, which decodes what it can
 * and drops the rest, and which has the last word on how a bad file fails.
 */
export async function transcode(options: TranscodeOptions): Promise<TranscodeResult> {
  const { ffmpegPath, timeoutSeconds, signal } = options;
  // Validates the format before anything runs (a refused demuxer is the file's fault).
  const probeArgs = buildProbeArgs(options);
  signal?.throwIfAborted();
  const deadline = performance.now() + timeoutSeconds * 1000;
  const emitProgress = monotonic(options.onProgress);
  const chosen = options.options ?? {};
  const maxSeconds = options.maxSeconds ?? 0;

  const listing = new StreamListing();
  let resolved: ReturnType<typeof planOutput> | undefined;
  const expected = (inputSeconds: number | undefined) =>
    resolved?.outputSeconds(inputSeconds ?? listing.durationSeconds);
  /** The options resolved against the listing, once it is read. */
  const resolve = (): ReturnType<typeof planOutput> => {
    // Throws the user's kind of error for a track the file does not have or a start past its end.
    resolved = planOutput(listing, chosen, options.fileName);
    // Where the container tells the length, audio over the limit fails before any decoding. The
    // limit is enforced on what is written too (below), since a container may lie.
    const declaredOutput =
      listing.durationSeconds === undefined ? undefined : expected(listing.durationSeconds);
    if (maxSeconds > 0 && declaredOutput !== undefined && declaredOutput > maxSeconds) {
      throw ConversionError.tooLong(maxSeconds);
    }
    return resolved;
  };

  const coverFile = `${options.output}.cover.jpg`;
  const chaptersFile = `${options.output}.chapters.txt`;
  // The cover is made while the audio converts (on a core of its own when one is free) and put
  // into the finished file's tag (id3-picture.ts); stopped when the conversion ends without it.
  const coverStop = new AbortController();
  let cover: Promise<Uint8Array | undefined> | undefined;
  const startCover = (plan: OutputPlan): Promise<Uint8Array | undefined> => {
    const source = chosen.cover === "none" ? null : listing.pictureSource();
    cover ??= source
      ? extractCover(
          { ...options, signal: signal ? AbortSignal.any([signal, coverStop.signal]) : coverStop.signal },
          { source, plan, expected, coverFile, deadline },
        ).then((written) => (written ? readFile(coverFile) : undefined))
      : Promise.resolve(undefined);
    // Seen where it is awaited; a conversion that fails first never awaits it.
    cover.catch(() => {});
    return cover;
  };

  try {
    // The input's listing, which decides the plan, is what a probe run prints; the conversion run
    // prints the same one before it starts encoding. So where the options do not depend on what
    // the file holds (`guessedPlan`), the conversion starts at once with the plan of a file that
    // lists nothing special, and goes on when the listing gives the very same command line (no
    // title of its own, not MP3 to copy, …); otherwise it is stopped right after the listing (what
    // a probe run costs) and the conversion starts again with the right plan.
    const guess = guessedPlan(chosen, options.fileName);
    let early: FirstRun | undefined;
    if (guess) {
      let agreed = false;
      let failure: unknown;
      const outcome = await runConversion(
        options,
        "encode",
        guess,
        { deadline, emitProgress, expected, span: FULL_SPAN },
        options.segmenting,
        {
          line: (line) => listing.line(line),
          listed: () => {
            try {
              const { plan, sourceCodec } = resolve();
              agreed =
                !(sourceCodec === "mp3" && framesCanBeCopied(chosen)) && sameCommand(options, plan, guess);
              if (agreed) startCover(plan);
            } catch (error) {
              failure = error;
            }
            return agreed;
          },
        },
      );
      if (failure !== undefined) throw failure;
      if (agreed && outcome !== REFUSED) early = outcome;
    } else {
      const probed = await runFfmpeg({
        ffmpegPath,
        args: probeArgs,
        deadline,
        signal,
        onStderrLine: (line) => {
          listing.line(line);
          return undefined;
        },
      });
      // Its exit code is 1 by design (no output file); only a kill matters.
      throwIfKilled(probed, options);
    }
    // After a probe, or a guessed run that ended before its listing was whole (a file ffmpeg
    // cannot open, no audio): the conversion's own run then explains the failure.
    const { plan, sourceCodec, chapters } = resolved ?? resolve();
    const picture = startCover(plan);
    /** The result with the cover in its tag (a segmented encode's joining has put it there already). */
    const withCover = async <T extends { durationSeconds: number | null; segments?: number | undefined }>(
      result: T,
    ): Promise<T & { cover: boolean }> => {
      const jpeg = await picture;
      if (jpeg && result.segments === undefined) await addFrontCoverToFile(options.output, jpeg);
      return { ...result, cover: jpeg !== undefined };
    };

    if (chapters) {
      await writeFile(chaptersFile, ffmetadataChapters(chapters));
      plan.chaptersFile = chaptersFile;
    }
    // Normalising takes a pass to measure first: it gets the first half of the progress bar.
    let span: ProgressSpan = FULL_SPAN;
    if (chosen.normalize) {
      span = { from: 0, to: 0.5 };
      plan.loudness = await measureLoudness(options, plan, { deadline, emitProgress, expected, span });
      span = { from: 0.5, to: 1 };
    }
    const conversion = { deadline, emitProgress, expected, span };

    let copyAbandoned: string | undefined;
    if (sourceCodec === "mp3" && framesCanBeCopied(chosen)) {
      const copied = await runConversion(options, "copy", plan, conversion);
      if (!(copied instanceof Error)) {
        const result = withinLimit(copied, maxSeconds);
        return { ...(await withCover(result)), audio: "copy", sourceCodec, normalized: false };
      }
      copyAbandoned = copied.message;
    }
    const encoded = await encode(options, plan, conversion, picture, early);
    withinLimit(encoded, maxSeconds);
    return {
      ...(await withCover(encoded)),
      audio: "encode",
      sourceCodec,
      normalized: plan.loudness !== undefined,
      ...(copyAbandoned === undefined ? {} : { copyAbandoned }),
    };
  } finally {
    coverStop.abort();
    await cover?.catch(() => {});
    await Promise.all([rm(coverFile, { force: true }), rm(chaptersFile, { force: true })]);
  }
}

/**
 * The plan of a file whose listing says nothing special (no title of its own, nothing known of its
 * streams), when the options allow one without the listing: not with a trim (its chapters and the
 * start's check come from the listing), a track named by its language, or normalising (its
 * measurement pass comes first).
 */
function guessedPlan(options: ConversionOptions, fileName: string | undefined): OutputPlan | undefined {
  if (options.normalize || options.start !== undefined || options.end !== undefined) return undefined;
  try {
    return planOutput(new StreamListing(), options, fileName).plan;
  } catch {
    return undefined;
  }
}

/** Whether two plans make the same encoding command line, i.e. the same file. */
function sameCommand(options: TranscodeOptions, plan: OutputPlan, other: OutputPlan): boolean {
  const args = (p: OutputPlan) => buildFfmpegArgs({ ...options, audio: "encode", plan: p });
  return JSON.stringify(args(plan)) === JSON.stringify(args(other));
}

/** Copying MP3 frames keeps them as they are: only tags, cover and chapters may change. */
function framesCanBeCopied(options: ConversionOptions): boolean {
  return (
    options.quality === undefined &&
    options.start === undefined &&
    options.end === undefined &&
    !options.normalize &&
    !options.mono
  );
}

interface RunContext {
  deadline: number;
  emitProgress: ProgressListener;
  /** The output's expected length from the input's (for progress fractions). */
  expected: (inputSeconds: number | undefined) => number | undefined;
  span: ProgressSpan;
}

/** The part of the progress bar a run fills. */
interface ProgressSpan {
  from: number;
  to: number;
}
const FULL_SPAN: ProgressSpan = { from: 0, to: 1 };

const COVER_TIME_LIMIT_MS = 120_000;

/**
 * The cover picture, written to `coverFile`. A cover is a nicety: a picture that cannot be made
 * (undecodable video, a seek past the last frame) leaves the MP3 without one rather than failing
 * the conversion. Resolves whether a picture was written.
 */
async function extractCover(
  options: TranscodeOptions,
  {
    source,
    plan,
    expected,
    coverFile,
    deadline,
  }: {
    source: "moving" | "attached";
    plan: OutputPlan;
    expected: RunContext["expected"];
    coverFile: string;
    deadline: number;
  },
): Promise<boolean> {
  const start = plan.start ?? 0;
  const length = expected(undefined);
  // A third into the kept part, then (if that finds no frame) its very start.
  const seeks = length === undefined ? [start] : [start + length / 3, start];
  // A picture is a few frames' work: one that takes longer is not worth the conversion's time.
  const coverDeadline = Math.min(deadline, performance.now() + COVER_TIME_LIMIT_MS);
  for (const seekSeconds of seeks) {
    const lengthSeconds = length === undefined ? undefined : start + length - seekSeconds;
    const exit = await runFfmpeg({
      ffmpegPath: options.ffmpegPath,
      args: buildCoverArgs({ ...options, output: coverFile, seekSeconds, lengthSeconds, source }),
      deadline: coverDeadline,
      signal: options.signal,
    });
    if (exit.outcome === "timed out" && performance.now() < deadline) return false;
    throwIfKilled(exit, options);
    const written = await stat(coverFile).catch(() => undefined);
    if (exit.code === 0 && written && written.size > 0) return true;
  }
  return false;
}

/**
 * loudnorm's first pass over exactly what will be converted. Undefined for silence (nothing to
 * normalise); a file that cannot be decoded fails here as it would in the conversion.
 */
async function measureLoudness(
  options: TranscodeOptions,
  plan: OutputPlan,
  context: RunContext,
): Promise<OutputPlan["loudness"]> {
  const diagnosis = new StderrDiagnosis(plan.audioStream);
  const progress = new ProgressReader(() => context.expected(diagnosis.inputDurationSeconds), context);
  const stderr: string[] = [];
  const exit = await runFfmpeg({
    ffmpegPath: options.ffmpegPath,
    args: buildLoudnessArgs({ ...options, plan }),
    deadline: context.deadline,
    signal: options.signal,
    onStdoutLine: (line) => progress.line(line),
    onStderrLine: (line) => {
      diagnosis.line(line);
      // The measurement is the last few lines; keep a bounded tail.
      stderr.push(line);
      if (stderr.length > 40) stderr.shift();
      return undefined;
    },
  });
  throwIfKilled(exit, options);
  const failure = diagnosis.classify(exit.code, exit.killSignal);
  if (failure) throw failure;
  return readLoudness(stderr);
}

/** ffmpeg stops writing one second past the limit (see `buildFfmpegArgs`): more than the limit means the audio is longer. */
function withinLimit<T extends { durationSeconds: number | null }>(result: T, maxSeconds: number): T {
  if (maxSeconds > 0 && result.durationSeconds !== null && result.durationSeconds > maxSeconds + 0.5) {
    throw ConversionError.tooLong(maxSeconds);
  }
  return result;
}

/** The input's length from ffmpeg's `Duration: hh:mm:ss.ff` line, or undefined (not that line, or `N/A`). */
function parseDuration(line: string): number | undefined {
  const match = /^\s*Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)/.exec(line);
  return match ? Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3]) : undefined;
}

/**
 * Encodes: in one run, or, for a long input when `options.segmenting` allows, in segments on
 * several cores. The run itself tells whether to segment: once ffmpeg has opened the input and set
 * up the encoder it prints the input's duration and the encoder's sample rate and channels, and
 * that is where a long one is stopped and handed to `encodeInSegments` with exactly that format.
 * A segmented encode that fails for any reason but the time limit or an abort is done again in
 * one run, which has the last word on how a bad file fails.
 */
async function encode(
  options: TranscodeOptions,
  plan: OutputPlan,
  context: RunContext,
  cover: Promise<Uint8Array | undefined>,
  /** The first run, when it was started before the plan was known (see `transcode`). */
  early?: FirstRun,
): Promise<Pick<TranscodeResult, "durationSeconds" | "segments" | "remoteSegments" | "segmentingAbandoned">> {
  // Every option is reproduced exactly by a segmented encode (its processes take their arguments
  // from the single run's), so any plan may be segmented.
  const segmenting = options.segmenting;
  const first = early ?? (await runConversion(options, "encode", plan, context, segmenting));
  if (first instanceof Error) throw first;
  if (!("segment" in first)) return first;
  const { deadline, emitProgress, span } = context;
  const expectedSeconds = context.expected(first.inputDurationSeconds) ?? null;
  let segmentingAbandoned: string;
  try {
    const segmented = await encodeInSegments({
      ffmpegPath: options.ffmpegPath,
      conversion: { ...options, audio: "encode", plan },
      pcm: first.segment,
      estimatedSeconds: expectedSeconds ?? first.inputDurationSeconds,
      workers: segmenting?.workers ?? 1,
      fanout: segmenting?.fanout,
      cover,
      deadline,
      signal: options.signal,
      onProgress: (fraction) => emitProgress(span.from + fraction * (span.to - span.from), expectedSeconds),
    });
    emitProgress(span.to, expectedSeconds);
    return {
      durationSeconds: segmented.durationSeconds,
      segments: segmented.segments,
      ...(segmented.remoteSegments > 0 && { remoteSegments: segmented.remoteSegments }),
    };
  } catch (error) {
    if (options.signal?.aborted) throw new Error("conversion aborted", { cause: options.signal.reason });
    if (performance.now() >= deadline) throw ConversionError.timeout(options.timeoutSeconds);
    segmentingAbandoned = errorMessage(error);
  }
  const single = await runConversion(options, "encode", plan, context);
  if (single instanceof Error) throw single;
  return { ...single, segmentingAbandoned };
}

/** A run started before its plan was known: it is told the input listing's lines, then asked whether to go on. */
interface GuessedRun {
  line(line: string): void;
  /** Called once the listing is whole; false stops the run (it then resolves with `REFUSED`). */
  listed(): boolean;
}
const REFUSED = Symbol("the guessed plan was wrong");

/** How an encoding run that may hand over to segments ended (one refused as a guess aside). */
type FirstRun = { durationSeconds: number | null } | SegmentInstead | Error;

/** A run stopped because its input is long enough to be encoded in segments, in this format. */
interface SegmentInstead {
  segment: PcmFormat;
  inputDurationSeconds: number;
}

/** What the mp3 muxer says when copying cannot go on, and what we then log as the reason. */
const COPY_PROBLEMS: [RegExp, string][] = [
  // A copied packet that is not an MP3 frame (garbage in a damaged file): copying would carry it
  // into the MP3, encoding drops it.
  [/Audio packet of size \d+ .*is invalid/, "the source's MP3 frames are damaged"],
  // The stream is not MP3 after all (the listing misled the probe).
  [/Invalid audio stream/, "the mp3 muxer refused the stream as not MP3"],
];

/**
 * One conversion run. Resolves with the result, or with the error for a failed run (so a failed
 * copy can fall back to encoding); rejects for what no second run can help: the time limit, an
 * abort, ffmpeg that cannot be started.
 */
function runConversion(
  options: TranscodeOptions,
  audio: AudioPath,
  plan: OutputPlan,
  context: RunContext,
): Promise<{ durationSeconds: number | null } | Error>;
function runConversion(
  options: TranscodeOptions,
  audio: AudioPath,
  plan: OutputPlan,
  context: RunContext,
  segmenting: SegmentingSettings | undefined,
): Promise<FirstRun>;
function runConversion(
  options: TranscodeOptions,
  audio: AudioPath,
  plan: OutputPlan,
  context: RunContext,
  segmenting: SegmentingSettings | undefined,
  guessed: GuessedRun,
): Promise<FirstRun | typeof REFUSED>;
async function runConversion(
  options: TranscodeOptions,
  audio: AudioPath,
  plan: OutputPlan,
  context: RunContext,
  segmenting?: SegmentingSettings,
  guessed?: GuessedRun,
): Promise<FirstRun | typeof REFUSED> {
  // A guessed run hands its input listing over, up to where ffmpeg begins to set up the output.
  let listed = guessed === undefined;
  let refused = false;
  const diagnosis = new StderrDiagnosis(plan.audioStream);
  const progress = new ProgressReader(() => context.expected(diagnosis.inputDurationSeconds), context);
  let copyProblem: string | undefined;
  // Only asked while the input's duration allows segmenting at all.
  const encoder = segmenting && audio === "encode" ? new EncoderListing() : undefined;
  let segmentInstead: SegmentInstead | undefined;
  const exit = await runFfmpeg({
    ffmpegPath: options.ffmpegPath,
    args: buildFfmpegArgs({ ...options, audio, plan }),
    deadline: context.deadline,
    signal: options.signal,
    onStdoutLine: (line) => progress.line(line),
    onStderrLine: (line) => {
      diagnosis.line(line);
      if (!listed && guessed) {
        if (/^(Stream mapping:|Output #0)/.test(line)) {
          listed = true;
          refused = !guessed.listed();
          if (refused) return true;
        } else {
          guessed.line(line);
        }
      }
      // Stop a copy at the first sign of trouble: encoding will do it properly.
      if (audio === "copy") copyProblem ??= COPY_PROBLEMS.find(([pattern]) => pattern.test(line))?.[1];
      if (encoder?.line(line) && segmentInstead === undefined && segmenting) {
        const format = encoder.format();
        const duration = diagnosis.inputDurationSeconds;
        // What decides is the length of the output (a trim may keep a short part of a long input).
        const output = duration === undefined ? undefined : (context.expected(duration) ?? duration);
        if (format && duration !== undefined && shouldSegment(output, segmenting)) {
          segmentInstead = { segment: format, inputDurationSeconds: duration };
        }
      }
      return copyProblem !== undefined || segmentInstead !== undefined;
    },
  });
  if (copyProblem !== undefined) return new Error(copyProblem);
  throwIfKilled(exit, options);
  if (refused) return REFUSED;
  if (segmentInstead !== undefined) return segmentInstead;
  const failure = diagnosis.classify(exit.code, exit.killSignal);
  if (failure) return failure;
  progress.finish();
  const written = progress.outTimeSeconds;
  return {
    durationSeconds:
      written !== undefined && written > 0
        ? written
        : (context.expected(diagnosis.inputDurationSeconds) ?? null),
  };
}

function throwIfKilled(exit: FfmpegExit, { timeoutSeconds, signal }: TranscodeOptions): void {
  if (exit.outcome === "timed out") throw ConversionError.timeout(timeoutSeconds);
  if (exit.outcome === "aborted") throw new Error("conversion aborted", { cause: signal?.reason });
}

type ProgressListener = (fraction: number, inputDurationSeconds: number | null) => void;

/** Passes on only increasing fractions (across the runs of one conversion), and never throws. */
function monotonic(onProgress: TranscodeOptions["onProgress"]): ProgressListener {
  let last = -1;
  return (fraction, duration) => {
    if (fraction <= last) return;
    last = fraction;
    try {
      onProgress?.(fraction, duration);
    } catch {
      // Progress is informational; a failing listener must not take the conversion down with it.
    }
  };
}

/**
 * Reads ffmpeg's stderr line by line: the input duration (for progress fractions), flags for
 * the errors we can explain to a user, and a bounded tail for the rest.
 */
class StderrDiagnosis {
  inputDurationSeconds: number | undefined;
  /** The audio stream mapped (`0:a:<n>`): a map that matches nothing means that track is missing. */
  private readonly audioStream: number;
  private noSuchTrack = false;

  constructor(audioStream = 0) {
    this.audioStream = audioStream;
  }

  private readonly tail: string[] = [];
  private noAudio = false;
  private undecodable = false;
  private emptyOutput = false;
  private localProblem = false;
  private unsupportedAudio = false;

  line(line: string): void {
    this.tail.push(line.length > 500 ? `${line.slice(0, 500)}…` : line);
    if (this.tail.length > STDERR_TAIL_LINES) this.tail.shift();

    // The first "Duration:" belongs to input #0 (ffmpeg prints none for the output).
    this.inputDurationSeconds ??= parseDuration(line);
    if (/Stream map '0:a:\d+' matches no streams|does not contain any stream/.test(line)) {
      if (this.audioStream > 0 && /Stream map/.test(line)) this.noSuchTrack = true;
      else this.noAudio = true;
    }
    if (/Output file is empty, nothing was encoded/.test(line)) this.emptyOutput = true;
    if (
      /Invalid data found when processing input|moov atom not found|EBML header parsing failed|Unknown input format|could not find codec parameters|[Dd]ecoder \(codec .*\) not found|no decoder found|Error while decoding|not on whitelist|Unsupported codec|Failed to read frame size/.test(
        line,
      )
    ) {
      this.undecodable = true;
    }
    // Parameters no decoder, filter or encoder can work with (1024 channels, a 2³¹ Hz rate): the file's fault.
    if (
      /Too many channels|Invalid sample rate|unspecified number of channels|Error while opening (de|en)coder|Error reinitializing filters|Failed to configure output pad|Failed to inject frame into filter network|Error while processing the decoded data/.test(
        line,
      )
    ) {
      this.unsupportedAudio = true;
    }
    // Problems of this machine, not of the file: retrying (perhaps elsewhere) can help.
    if (/No space left on device|Permission denied|Cannot allocate memory|Too many open files/.test(line)) {
      this.localProblem = true;
    }
  }

  /** The error for an ended ffmpeg, or undefined when it produced a usable MP3. */
  classify(code: number | null, killSignal: NodeJS.Signals | null): Error | undefined {
    if (code === 0) {
      // ffmpeg succeeds on an audio track without a single decodable frame; the MP3 would be empty.
      if (this.emptyOutput)
        return this.undecodable ? ConversionError.undecodable() : ConversionError.noAudio();
      return undefined;
    }
    if (!this.localProblem) {
      if (this.noSuchTrack) return ConversionError.noSuchTrack(this.audioStream, undefined);
      if (this.noAudio) return ConversionError.noAudio();
      if (this.undecodable) return ConversionError.undecodable();
      if (this.unsupportedAudio) return ConversionError.unsupportedAudio();
    }
    const how = killSignal ? `was killed by ${killSignal}` : `exited with code ${code}`;
    return new Error(`ffmpeg ${how}: ${this.tail.slice(-8).join("\n")}`);
  }
}

/** Reads `-progress` blocks (key=value lines, each block ending with `progress=continue|end`). */
class ProgressReader {
  outTimeSeconds: number | undefined;
  private sawOutTimeUs = false;
  private readonly duration: () => number | undefined;
  private readonly emit: ProgressListener;
  private readonly span: ProgressSpan;

  constructor(
    duration: () => number | undefined,
    { emitProgress, span }: { emitProgress: ProgressListener; span: ProgressSpan },
  ) {
    this.duration = duration;
    this.emit = emitProgress;
    this.span = span;
  }

  line(line: string): void {
    const eq = line.indexOf("=");
    if (eq === -1) return;
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1).trim();
    // out_time_ms is in microseconds too (an old ffmpeg naming mistake); out_time_us is newer.
    if (key === "out_time_us") this.sawOutTimeUs = true;
    if (key === "out_time_us" || (key === "out_time_ms" && !this.sawOutTimeUs)) {
      const micros = Number(value);
      if (Number.isFinite(micros) && micros >= 0) this.outTimeSeconds = micros / 1e6;
    } else if (key === "progress") {
      this.report();
    }
  }

  /** Called when ffmpeg has ended successfully: only then is the conversion done. */
  finish(): void {
    this.emit(this.span.to, this.duration() ?? null);
  }

  private report(): void {
    const duration = this.duration();
    if (duration === undefined || duration <= 0 || this.outTimeSeconds === undefined) return;
    // 1 is kept for success: ffmpeg may still fail (or a copy be given up) after writing it all.
    const fraction = Math.min(0.99, this.outTimeSeconds / duration);
    this.emit(Math.min(0.99, this.span.from + (this.span.to - this.span.from) * fraction), duration);
  }
}
