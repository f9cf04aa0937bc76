import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { type SegmentMessage, segmentKeys, segmentsFolder } from "../contracts/messages.ts";
import type { Quality } from "../contracts/options.ts";
import type { BlobStore } from "../platform/blobs/blob-store.ts";
import type { Broker } from "../platform/broker/broker.ts";
import type { Logger } from "../platform/logger.ts";
import type { PcmFormat } from "./ffmpeg-args.ts";

/**
 * The coordinating side of a segmented encode fanned out over the cluster
 * (`CONVERTER_SEGMENT_FANOUT`): the converter that holds a long job puts a segment's raw PCM in
 * the blob store, offers it on `SEGMENT_QUEUE`, and takes the MP3 frames another converter
 * stored for it (segment-helper.ts). The job stays this converter's alone (its message, its
 * outcome, its mail): an offer is only help, never a promise. A segment nobody takes, or whose
 * helper dies, is encoded here once the local cores have nothing else to do (parallel-encode.ts),
 * and a helper's frames are byte for byte what a local encode of the same PCM gives.
 *
 * Blobs live under `segments/<jobId>/<run>/`, a run per conversion attempt. They are removed when
 * the attempt ends, and a new attempt of the job first removes what an attempt that died left.
 */
export interface SegmentFanout {
  /** Segments offered to other converters at a time. */
  readonly helpers: number;
  /**
   * Has another converter encode bytes [byteStart, byteEnd) of `pcmFile` (all on disk), and
   * resolves with `output`, a local file of its MP3 frames. Waits for as long as nobody answers,
   * until `signal` aborts; rejects when the segment cannot be offered or fetched.
   */
  encode(segment: RemoteSegment, signal: AbortSignal): Promise<string>;
  /** Removes the job's segment blobs. Never throws (what is left is logged). */
  close(): Promise<void>;
}

export interface RemoteSegment {
  index: number;
  pcmFile: string;
  pcm: PcmFormat;
  byteStart: number;
  byteEnd: number;
  output: string;
}

export interface SegmentFanoutOptions {
  broker: Broker;
  blobs: BlobStore;
  /** SEGMENT_QUEUE. */
  queue: string;
  jobId: string;
  /** The job's encoder quality: a helper's encoder must be set as this converter's is. */
  quality: Quality | undefined;
  helpers: number;
  logger: Logger;
  /** How often the store is asked whether a helper's frames are there. */
  pollMs?: number;
}

const POLL_MS = 250;

export function createSegmentFanout(options: SegmentFanoutOptions): SegmentFanout {
  const { broker, blobs, jobId, helpers, logger } = options;
  const run = randomUUID();
  const pollMs = options.pollMs ?? POLL_MS;
  // Blobs of earlier attempts of this job are removed before the first offer.
  let ready: Promise<void> | undefined;
  let offered = false;

  return {
    helpers,

    async encode(segment, signal) {
      ready ??= removeSegmentBlobs(blobs, jobId);
      await ready;
      signal.throwIfAborted();
      offered = true;
      const keys = segmentKeys({ jobId, run, index: segment.index });
      await blobs.put(
        keys.pcm,
        createReadStream(segment.pcmFile, { start: segment.byteStart, end: segment.byteEnd - 1, signal }),
      );
      const message: SegmentMessage = {
        version: 1,
        jobId,
        run,
        index: segment.index,
        pcm: segment.pcm,
        ...(options.quality && { quality: options.quality }),
      };
      await broker.publish(options.queue, message);
      while (!(await blobs.stat(keys.mp3))) await sleep(pollMs, undefined, { signal });
      await pipeline(await blobs.get(keys.mp3), createWriteStream(segment.output), { signal });
      // No longer wanted: a helper that takes the offer now skips it.
      await blobs.delete(keys.pcm);
      return segment.output;
    },

    async close() {
      if (!offered) return;
      try {
        await removeSegmentBlobs(blobs, jobId);
      } catch (error) {
        logger.warn({ err: error, jobId }, "could not remove the segment blobs of the job");
      }
    },
  };
}

/**
 * Removes the job's segment blobs. The PCM goes first: a helper stores its frames, then checks
 * that its PCM is still there, and removes the frames itself if not (segment-helper.ts). So frames
 * stored after the PCM is gone are removed by their helper, and frames stored before by the second
 * listing here.
 */
async function removeSegmentBlobs(blobs: BlobStore, jobId: string): Promise<void> {
  const folder = segmentsFolder(jobId);
  const pcm = (await blobs.list(folder)).filter((key) => key.endsWith(".f32"));
  await Promise.all(pcm.map((key) => blobs.delete(key)));
  await Promise.all((await blobs.list(folder)).map((key) => blobs.delete(key)));
}
