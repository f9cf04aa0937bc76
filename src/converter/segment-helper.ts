import { randomUUID } from "node:crypto";
import { rm, stat } from "node:fs/promises";
import path from "node:path";
import { type SegmentMessage, segmentKeys } from "../contracts/messages.ts";
import { BlobNotFoundError, type BlobStore, type LocalFile } from "../platform/blobs/blob-store.ts";
import type { Delivery } from "../platform/broker/broker.ts";
import type { Logger } from "../platform/logger.ts";
import { buildSegmentEncodeArgs, pcmSampleBytes } from "./ffmpeg-args.ts";
import type { HelpOutcome } from "./metrics.ts";
import { runFfmpegOrThrow } from "./run-ffmpeg.ts";

/**
 * The helping side of a fanned-out encode (segment-fanout.ts): takes a `SegmentMessage`, encodes
 * the segment's PCM from the blob store with the job's encoder settings, exactly as the offering
 * converter would have, and stores the MP3 frames beside it.
 *
 * A segment is help, not a job: the converter that offered it encodes it itself when no answer
 * comes. So a failure here is logged and the message dropped (retrying would only come later than
 * that converter's own run), and an offer whose PCM is gone (the job's conversion ended, or
 * encoded it itself) is skipped.
 */
export interface SegmentHelperDeps {
  blobs: BlobStore;
  ffmpegPath: string;
  /** Scratch folder for the frames (and a remote store's copy of the PCM). */
  workDir: string;
  /** FFMPEG_TIMEOUT_SECONDS: a segment takes no longer than a whole job may. */
  timeoutSeconds: number;
  logger: Logger;
}

/** Handles one offer and says how it ended; rejects only when the delivery was taken back. */
export type SegmentHelper = (delivery: Delivery<SegmentMessage>) => Promise<HelpOutcome>;

export function createSegmentHelper(deps: SegmentHelperDeps): SegmentHelper {
  const { blobs, logger } = deps;
  return async ({ body: segment, signal }) => {
    const keys = segmentKeys(segment);
    const log = logger.child({ jobId: segment.jobId, segment: segment.index });
    const started = performance.now();
    const output = path.join(deps.workDir, `segment-${randomUUID()}.mp3`);
    let pcm: LocalFile | undefined;
    try {
      pcm = await blobs.toLocalFile(keys.pcm, deps.workDir).catch((error: unknown) => {
        if (error instanceof BlobNotFoundError) return undefined;
        throw error;
      });
      if (!pcm || (await blobs.stat(keys.mp3))) {
        log.info("segment no longer wanted (encoded already, or its conversion ended); skipped");
        return "skipped";
      }
      log.info("segment encoding");
      const bytes = (await stat(pcm.path)).size;
      const sampleBytes = pcmSampleBytes(segment.pcm);
      if (bytes === 0 || bytes % sampleBytes !== 0) {
        throw new Error(`the PCM holds ${bytes} bytes, not whole samples of ${sampleBytes} bytes`);
      }
      await runFfmpegOrThrow(`segment ${segment.index}`, {
        ffmpegPath: deps.ffmpegPath,
        args: buildSegmentEncodeArgs({
          input: pcm.path,
          format: "f32le",
          output,
          plan: { audioStream: 0, quality: segment.quality },
          pcmFile: pcm.path,
          pcm: segment.pcm,
          byteStart: 0,
          byteEnd: bytes,
        }),
        deadline: performance.now() + deps.timeoutSeconds * 1000,
        signal,
      });
      signal.throwIfAborted();
      await blobs.putFile(keys.mp3, output, { contentType: "audio/mpeg" });
      // The offering converter removes the PCM before the frames when it ends: frames stored after
      // that are nobody's, and only their helper can know it.
      if (!(await blobs.stat(keys.pcm))) {
        await blobs.delete(keys.mp3);
        log.info("segment encoded after its conversion ended; removed");
        return "skipped";
      }
      log.info({ ms: Math.round(performance.now() - started), pcmBytes: bytes }, "segment encoded");
      return "encoded";
    } catch (error) {
      // Taken back (connection lost, closing): the message comes again, or the offer lapses.
      if (signal.aborted) throw error;
      log.warn({ err: error }, "segment not encoded; the converter that offered it encodes it itself");
      return "failed";
    } finally {
      await rm(output, { force: true });
      await pcm?.release();
    }
  };
}
