import { randomUUID } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { availableParallelism } from "node:os";
import path from "node:path";
import {
  type JobEvent,
  type Mp3Message,
  mp3Key,
  parseWith,
  SegmentMessage,
  VideoMessage,
} from "../contracts/messages.ts";
import { BlobNotFoundError, type BlobStore, type LocalFile } from "../platform/blobs/blob-store.ts";
import type { Broker, Consumer, Delivery } from "../platform/broker/broker.ts";
import type { Config } from "../platform/config.ts";
import type { Logger } from "../platform/logger.ts";
import { createServiceMetrics, type ServiceMetrics } from "../platform/metrics.ts";
import { unavailableCause } from "../platform/unavailable.ts";
import { ConversionError } from "./conversion-error.ts";
import { type ConversionOutcome, createConverterMetrics } from "./metrics.ts";
import { createProgressReporter } from "./progress-reporter.ts";
import { createSegmentFanout, type SegmentFanout } from "./segment-fanout.ts";
import { createSegmentHelper } from "./segment-helper.ts";
import { type AudioPath, transcode } from "./transcode.ts";

/**
 * The converter worker: takes `video` messages, turns the upload into an MP3 with ffmpeg, stores
 * it and tells the gateway (job events) and the notification service (`mp3`) how it ended.
 *
 * Delivery is at least once, so a message may come again after a crash: the MP3's key is fixed by
 * `mp3Id`, a rerun overwrites it, and the events say the same thing twice. The message is
 * acknowledged (the handler resolves) only after the outcome is stored and published.
 */

/** The converter reads only these settings of the configuration: what it is given, and all it can depend on. */
export type ConverterConfig = Pick<
  Config,
  | "converterConcurrency"
  | "converterDrainSeconds"
  | "converterSegments"
  | "dataDir"
  | "ffmpeg"
  | "limits"
  | "queues"
  | "retry"
>;

export interface ConverterDeps {
  logger: Logger;
  broker: Broker;
  blobs: BlobStore;
  /** From `locateFfmpeg` at start-up. */
  ffmpegPath: string;
  /** Where its metrics go (the worker's `/metrics`); by default a registry nobody reads. */
  metrics?: ServiceMetrics;
}

export interface Converter {
  start(): Promise<void>;
  /**
   * Stops taking messages, lets the conversions in hand finish for up to CONVERTER_DRAIN_SECONDS,
   * then stops those still running: their messages are not acknowledged, so they come back
   * (redelivered by the broker, or re-queued from the jobs table at start).
   */
  close(): Promise<void>;
}

/** What the "conversion finished" log line tells besides the time. */
interface ConvertedSummary {
  mp3Size: number;
  durationSeconds: number | null;
  /** copy / encode; absent when an earlier delivery had stored the MP3. */
  audio?: AudioPath;
  sourceCodec?: string | null;
  copyAbandoned?: string;
  /** Whether a cover was attached and the loudness normalised. */
  cover?: boolean;
  normalized?: boolean;
  /** Segments encoded at once, when the encode was segmented (and why it was given up, if it was). */
  segments?: number;
  /** Of those, how many other converters encoded. */
  remoteSegments?: number;
  segmentingAbandoned?: string;
}

/** Wait before a converter that could not start helping with segments tries again. */
const HELP_RETRY_MS = 5000;

/** Time beyond ffmpeg's limit that a conversion may hold its message (download, upload, reporting). */
const HOLD_MARGIN_SECONDS = 600;

/** Shown to the user when the failure was ours and retrying did not help. */
export const INTERNAL_ERROR_MESSAGE =
  "The conversion failed because of an internal error; please upload the file again.";

export function createConverter(config: ConverterConfig, deps: ConverterDeps): Converter {
  const { broker, blobs, ffmpegPath } = deps;
  const logger = deps.logger.child({ component: "converter" });
  // Under the data dir, not the OS temp dir: it is the volume sized for videos.
  const workDir = path.join(config.dataDir, "tmp", "converter");
  let consumer: Consumer | undefined;
  const shutdown = new AbortController();
  const metrics = createConverterMetrics(
    deps.metrics ?? createServiceMetrics("converter", { processMetrics: false }),
  );

  const publishEvent = (event: JobEvent): Promise<void> => broker.publish(config.queues.jobEvents, event);
  const publishMp3 = (message: Mp3Message): Promise<void> => broker.publish(config.queues.mp3, message);
  const now = (): string => new Date().toISOString();

  // Conversions and helped segments in hand: a segmented encode takes the cores the others leave free.
  let running = 0;
  // Whole conversions in hand.
  let jobs = 0;
  let closing = false;

  // With fan-out on, a converter helps the others (segment-helper.ts) while it has room for a whole
  // job: it consumes SEGMENT_QUEUE only then, so it never takes its own offers while its slots are
  // full, and a busy cluster keeps its cores for whole jobs. Segments in hand when it stops
  // helping are finished (they are a few minutes of work at most).
  const help = createSegmentHelper({
    blobs,
    ffmpegPath,
    workDir,
    timeoutSeconds: config.ffmpeg.timeoutSeconds,
    logger,
  });
  let helping: Promise<Consumer | undefined> = Promise.resolve(undefined);
  let helpingWanted = false;
  function helpWhileIdle(): void {
    const wanted = config.converterSegments.fanout > 0 && !closing && jobs < config.converterConcurrency;
    if (wanted === helpingWanted) return;
    helpingWanted = wanted;
    helping = helping
      .then(async (current) => {
        if (!wanted) {
          current?.close({ graceMs: config.ffmpeg.timeoutSeconds * 1000 }).catch(() => {});
          return undefined;
        }
        return (
          current ??
          (await broker.consume(config.queues.segments, helpSegment, {
            parse: parseWith(SegmentMessage),
            concurrency: config.converterConcurrency,
          }))
        );
      })
      .catch((error: unknown) => {
        // The broker is down: tried again in a while (or at the next job's start or end).
        logger.warn({ err: error }, "could not start helping with segments; trying again in 5 s");
        helpingWanted = false;
        setTimeout(helpWhileIdle, HELP_RETRY_MS).unref();
        return undefined;
      });
  }

  async function helpSegment(delivery: Delivery<SegmentMessage>): Promise<void> {
    running++;
    try {
      metrics.segmentHelped(
        await help({ ...delivery, signal: AbortSignal.any([shutdown.signal, delivery.signal]) }),
      );
    } finally {
      running--;
    }
  }
  const segmentWorkers = (): number => {
    const { workers } = config.converterSegments;
    return workers === "auto" ? Math.max(1, availableParallelism() - (running - 1)) : workers;
  };

  async function handle(delivery: Delivery<VideoMessage>): Promise<void> {
    const ended = metrics.conversionStarted();
    // One conversion per job at a time: when the broker takes the message back (this
    // connection or channel was lost, so it goes to another converter) or the converter closes,
    // ffmpeg is killed and nothing is stored or reported.
    const signal = AbortSignal.any([shutdown.signal, delivery.signal]);
    running++;
    jobs++;
    helpWhileIdle();
    try {
      ended(await convertOnce(delivery, signal));
    } catch (error) {
      // Stopped: not an outcome; the message comes back.
      ended(signal.aborted ? undefined : "retried");
      throw error;
    } finally {
      running--;
      jobs--;
      helpWhileIdle();
    }
  }

  async function convertOnce(
    { body: video, attempt, isLastAttempt }: Delivery<VideoMessage>,
    signal: AbortSignal,
  ): Promise<ConversionOutcome> {
    const log = logger.child({ jobId: video.jobId, attempt });
    const started = performance.now();
    const elapsedMs = (): number => Math.round(performance.now() - started);
    log.info({ fileName: video.fileName, format: video.format }, "conversion started");
    try {
      const result = await convert(video, log, signal);
      if (result === "video gone") {
        log.warn(
          { videoKey: video.videoKey, ms: elapsedMs() },
          "video no longer stored (job deleted?); skipped",
        );
        return "skipped";
      }
      log.info({ ms: elapsedMs(), ...result }, "conversion finished");
      return "done";
    } catch (error) {
      // Stopped (taken back, closing): not the file's fault nor a failure; leave the message unacknowledged.
      if (signal.aborted) {
        log.info(
          { ms: elapsedMs() },
          "conversion stopped: the message was taken back or the converter closes",
        );
        throw error;
      }
      // A backend is down: the broker waits for it and runs this again, the attempt not counted.
      if (unavailableCause(error)) throw error;
      if (error instanceof ConversionError) {
        // The file's fault: retrying gives the same answer, so the job fails now, with the reason.
        log.info({ ms: elapsedMs(), reason: error.reason }, "conversion failed: %s", error.message);
        await fail(video, error.message, signal);
        return "failed";
      }
      if (isLastAttempt) {
        log.error({ err: error, ms: elapsedMs() }, "conversion failed on the last attempt; job failed");
        await fail(video, INTERNAL_ERROR_MESSAGE, signal);
        return "failed";
      }
      // Ours (ffmpeg missing, disk full, store or broker down): the broker retries after a delay.
      throw error;
    }
  }

  async function convert(
    video: VideoMessage,
    log: Logger,
    signal: AbortSignal,
  ): Promise<"video gone" | ConvertedSummary> {
    await publishEvent({ version: 1, jobId: video.jobId, at: now(), type: "converting" });

    // A redelivery of a job whose MP3 was already stored (the ack was lost): the blob is whole,
    // since puts are atomic, so only the outcome needs telling again.
    const stored = await blobs.stat(mp3Key(video.mp3Id));
    if (stored) {
      log.info("MP3 already stored by an earlier delivery; not converting again");
      await announceDone(video, stored.size, null, signal);
      return { mp3Size: stored.size, durationSeconds: null };
    }

    let local: LocalFile;
    try {
      local = await blobs.toLocalFile(video.videoKey, workDir);
    } catch (error) {
      if (error instanceof BlobNotFoundError) return "video gone";
      throw error;
    }

    // Unique per attempt: a redelivery may overlap with a run that is still going elsewhere.
    const mp3File = path.join(workDir, `${video.mp3Id}-${randomUUID()}.mp3`);
    const fanout: SegmentFanout | undefined =
      config.converterSegments.fanout > 0
        ? createSegmentFanout({
            broker,
            blobs,
            queue: config.queues.segments,
            jobId: video.jobId,
            quality: video.options?.quality,
            helpers: config.converterSegments.fanout,
            logger: log,
          })
        : undefined;
    const progress = createProgressReporter({
      publish: (fraction, durationSeconds) =>
        publishEvent({
          version: 1,
          jobId: video.jobId,
          at: now(),
          type: "progress",
          progress: fraction,
          durationSeconds,
        }),
      onError: (error) => log.warn({ err: error }, "could not publish a progress event"),
    });
    try {
      const transcoded = await transcode({
        ffmpegPath,
        input: local.path,
        output: mp3File,
        format: video.format,
        options: video.options,
        fileName: video.fileName,
        timeoutSeconds: config.ffmpeg.timeoutSeconds,
        maxSeconds: config.limits.maxAudioSeconds,
        onProgress: (fraction, inputDuration) => progress.update(fraction, inputDuration),
        signal,
        segmenting: { workers: segmentWorkers(), minSeconds: config.converterSegments.minSeconds, fanout },
      });
      const {
        durationSeconds,
        audio,
        sourceCodec,
        copyAbandoned,
        cover,
        normalized,
        segments,
        remoteSegments,
        segmentingAbandoned,
      } = transcoded;
      if (remoteSegments) metrics.segmentsEncodedElsewhere(remoteSegments);
      // Progress events must not arrive after the outcome.
      await progress.settled();
      // Taken back while ffmpeg finished: another converter has it now; store nothing.
      signal.throwIfAborted();

      // Taken over without a copy where the store can (a folder on the same disk).
      const { size: mp3Size } = await blobs.putFile(mp3Key(video.mp3Id), mp3File, {
        contentType: "audio/mpeg",
      });
      await announceDone(video, mp3Size, durationSeconds, signal);
      // `audio`: copy (the source's MP3 frames, unchanged) or encode; `copyAbandoned`: why a copy was given up.
      return {
        mp3Size,
        durationSeconds,
        audio,
        sourceCodec,
        cover,
        normalized,
        ...(copyAbandoned && { copyAbandoned }),
        ...(segments && { segments }),
        ...(remoteSegments && { remoteSegments }),
        ...(segmentingAbandoned && { segmentingAbandoned }),
      };
    } finally {
      await progress.settled();
      await rm(mp3File, { force: true });
      await local.release();
      await fanout?.close();
    }
  }

  /** Reports the outcome, unless it is no longer wanted (the message was taken back). */
  async function announceDone(
    video: VideoMessage,
    mp3Size: number,
    durationSeconds: number | null,
    signal: AbortSignal,
  ): Promise<void> {
    signal.throwIfAborted();
    await publishEvent({
      version: 1,
      jobId: video.jobId,
      at: now(),
      type: "done",
      mp3Id: video.mp3Id,
      mp3Size,
      durationSeconds,
    });
    await publishMp3({
      version: 1,
      outcome: "done",
      jobId: video.jobId,
      mp3Id: video.mp3Id,
      fileName: video.fileName,
      email: video.owner.email,
      durationSeconds,
    });
  }

  async function fail(video: VideoMessage, error: string, signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    await publishEvent({ version: 1, jobId: video.jobId, at: now(), type: "failed", error });
    await publishMp3({
      version: 1,
      outcome: "failed",
      jobId: video.jobId,
      fileName: video.fileName,
      email: video.owner.email,
      error,
    });
  }

  return {
    async start() {
      if (consumer) throw new Error("the converter is already started");
      // Scratch files left by a process that died mid-conversion are of no use to anyone.
      await rm(workDir, { recursive: true, force: true });
      await mkdir(workDir, { recursive: true });
      consumer = await broker.consume(config.queues.video, handle, {
        parse: parseWith(VideoMessage),
        concurrency: config.converterConcurrency,
        maxAttempts: config.retry.maxAttempts,
        retryDelayMs: config.retry.delayMs,
        maxRetryDelayMs: config.retry.maxDelayMs,
        // ffmpeg's limit, plus the video's download and the MP3's upload: the broker must not take
        // a running conversion back and hand it to a second converter.
        holdLimitMs: (config.ffmpeg.timeoutSeconds + HOLD_MARGIN_SECONDS) * 1000,
      });
      helpWhileIdle();
      logger.info(
        {
          queue: config.queues.video,
          concurrency: config.converterConcurrency,
          ffmpegPath,
          ...(config.converterSegments.fanout > 0 && { segmentQueue: config.queues.segments }),
        },
        "converter consuming",
      );
    },

    async close() {
      const running = consumer;
      consumer = undefined;
      // No more helping; a segment in hand is only help: given back at once, its converter does it itself.
      closing = true;
      helpingWanted = false;
      const helper = await helping;
      helping = Promise.resolve(undefined);
      // Stop taking messages; the conversions in hand may finish within the drain time (a
      // scaled-down Kubernetes pod loses no work), and are stopped after it, their messages
      // coming back unacknowledged.
      try {
        await Promise.all([
          running?.close({ graceMs: config.converterDrainSeconds * 1000 }),
          helper?.close(),
        ]);
      } finally {
        shutdown.abort();
      }
    },
  };
}
