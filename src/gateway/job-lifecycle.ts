import { z } from "zod";
import { isFinalStatus } from "../contracts/jobs.ts";
import { JobEvent, mp3Key, parseWith, type VideoMessage, videoKey } from "../contracts/messages.ts";
import type { BlobStore } from "../platform/blobs/blob-store.ts";
import type { Broker, Consumer } from "../platform/broker/broker.ts";
import type { Logger } from "../platform/logger.ts";
import { gatewayError } from "./errors.ts";
import { createJobFeed, type JobFeed } from "./job-feed.ts";
import { type Job, type JobRow, type JobsRepository, type NewJob, storedOptions } from "./jobs.ts";
import type { GatewayMetrics } from "./metrics.ts";

/**
 * A job's whole life, in one place: created and published at upload, moved forward by the
 * converter's events, finished (the upload removed), re-queued when its message is lost, and
 * relayed to the owner's browsers on every gateway replica. The jobs table is the source of truth:
 * a job that sits `queued` (while no video message waits: not merely behind a backlog) or
 * `converting` too long without a change has its `video` message published again by the sweep
 * (harmless: the MP3's key is fixed and the converter skips an MP3 already stored), which also
 * covers a crash between the row's insert and its publish.
 */

export interface JobLifecycleOptions {
  jobs: JobsRepository;
  blobs: BlobStore;
  broker: Broker;
  logger: Logger;
  metrics: Pick<GatewayMetrics, "jobFinished" | "jobsRequeued">;
  queues: { video: string; jobEvents: string };
  retry: { maxAttempts: number; delayMs: number; maxDelayMs?: number };
  sweep: {
    /** How often the sweep runs. */
    everyMs: number;
    /** A `queued` job unchanged this long has its message published again. */
    queuedAfterMs: number;
    /** The same for a `converting` job: longer than any conversion may run without a progress event. */
    convertingAfterMs: number;
  };
}

export interface JobLifecycle {
  /** The live feed of job changes for this replica's SSE clients. */
  readonly feed: JobFeed;
  /**
   * Creates the job and publishes its message. A failure undoes what was done (row, uploaded blob)
   * and rejects: a 503 `queue_unavailable` when the message could not be published.
   */
  create(job: NewJob): Promise<JobRow>;
  /** Publishes the video message of every stale unfinished job again; returns how many. */
  sweep(now?: Date): Promise<number>;
  /** Relays updates, consumes job events, re-queues (all unfinished jobs when the broker forgets messages), sweeps. */
  start(): Promise<void>;
  close(): Promise<void>;
}

/** What one replica tells the others about a changed job. */
const JobUpdate = z.object({
  ownerId: z.string().min(1),
  job: z.object({ id: z.string(), status: z.string() }).loose(),
});
interface JobUpdate {
  ownerId: string;
  job: Job;
}

/** Jobs re-queued per query of the sweep. */
const SWEEP_BATCH = 100;

export function createJobLifecycle(options: JobLifecycleOptions): JobLifecycle {
  const { jobs, blobs, broker, logger, metrics, queues } = options;
  const feed = createJobFeed();
  const updatesTopic = `${queues.jobEvents}.updates`;
  let consumer: Consumer | undefined;
  let subscription: Consumer | undefined;
  let timer: NodeJS.Timeout | undefined;
  let sweeping: Promise<unknown> | undefined;

  // Every gateway replica relays job changes to the browsers connected to it, whichever replica
  // stored the change.
  function announce(row: JobRow): void {
    const update: JobUpdate = { ownerId: row.owner_id, job: jobs.describe(row) };
    broker.broadcast(updatesTopic, update).catch((error: unknown) => {
      logger.warn({ err: error, jobId: row.id }, "could not broadcast a job update");
    });
  }

  function relay(body: unknown): void {
    const update = JobUpdate.safeParse(body);
    if (update.success) feed.publish(update.data.ownerId, update.data.job as unknown as Job);
    else logger.warn({ body }, "ignored a malformed job update");
  }

  async function create(job: NewJob): Promise<JobRow> {
    const row = await jobs.create(job).catch(async (error: unknown) => {
      await blobs.delete(videoKey(job.id));
      throw error;
    });
    try {
      await broker.publish(queues.video, videoMessage(row));
    } catch (error) {
      logger.error({ err: error, jobId: row.id }, "could not queue the job");
      await jobs.delete(row.id, row.owner_id);
      await blobs.delete(videoKey(row.id));
      throw gatewayError(
        "queue_unavailable",
        "The job queue is not reachable; the upload was not kept. Try again shortly.",
      );
    }
    announce(row);
    return row;
  }

  /** A converter event updates the job row, then reaches the owner's browsers. */
  async function apply(event: JobEvent): Promise<void> {
    const row = await jobs.apply(event);
    if (row) {
      announce(row);
      if (isFinalStatus(row.status)) await finish(row);
    } else if (event.type === "done" && !(await jobs.exists(event.jobId))) {
      logger.info({ jobId: event.jobId }, "job was deleted while converting; removing its MP3");
      await blobs.delete(mp3Key(event.mp3Id));
    }
  }

  /** The upload has served its purpose once the job has ended either way. */
  async function finish(row: JobRow): Promise<void> {
    metrics.jobFinished(row.status === "done" ? "done" : "failed");
    await blobs.delete(videoKey(row.id));
  }

  /** The in-process broker forgets messages on exit; the jobs table does not, so it is the source to re-queue from. */
  async function requeueAll(): Promise<void> {
    const rows = await jobs.unfinished();
    for (const row of rows) {
      // Its updated_at moves on: the sweep leaves it alone for a period.
      await jobs.claim(row);
      await broker.publish(queues.video, videoMessage(row));
    }
    if (rows.length > 0) logger.info({ count: rows.length }, "re-queued unfinished jobs");
  }

  async function sweep(now = new Date()): Promise<number> {
    // A `queued` job behind a backlog is waiting its turn, not lost: its message may be among
    // those waiting, and a second copy could be taken by another converter while the first is
    // converted. So queued jobs are looked at only once the video queue has nothing waiting
    // (a lost message is found then); converting jobs always.
    const backlog = await broker.waiting(queues.video);
    const cutoff = {
      queuedBefore:
        backlog > 0 ? undefined : new Date(now.getTime() - options.sweep.queuedAfterMs).toISOString(),
      convertingBefore: new Date(now.getTime() - options.sweep.convertingAfterMs).toISOString(),
    };
    let requeued = 0;
    for (;;) {
      const rows = await jobs.stale(cutoff, SWEEP_BATCH);
      for (const row of rows) {
        // Claimed first (its updated_at moves on), so that of several replicas one re-queues it,
        // and it waits a whole period before the next try; a failed publish is tried then.
        if (!(await jobs.claim(row, now))) continue;
        await broker.publish(queues.video, videoMessage(row));
        requeued++;
        logger.warn(
          { jobId: row.id, status: row.status, lastChange: row.updated_at },
          "job made no progress for too long; its message was published again",
        );
      }
      if (rows.length < SWEEP_BATCH) break;
    }
    if (requeued > 0) metrics.jobsRequeued(requeued);
    return requeued;
  }

  function sweepInBackground(): void {
    sweeping ??= sweep()
      .catch((error: unknown) => logger.warn({ err: error }, "could not sweep stale jobs"))
      .finally(() => {
        sweeping = undefined;
      });
  }

  return {
    feed,
    create,
    sweep,

    async start() {
      subscription = await broker.subscribe(updatesTopic, relay);
      consumer = await broker.consume<JobEvent>(queues.jobEvents, ({ body }) => apply(body), {
        parse: parseWith(JobEvent),
        concurrency: 8,
        maxAttempts: options.retry.maxAttempts,
        retryDelayMs: options.retry.delayMs,
        ...(options.retry.maxDelayMs !== undefined && { maxRetryDelayMs: options.retry.maxDelayMs }),
      });
      if (broker.durable) sweepInBackground();
      else await requeueAll();
      timer = setInterval(sweepInBackground, options.sweep.everyMs);
      timer.unref();
    },

    async close() {
      clearInterval(timer);
      timer = undefined;
      await sweeping;
      await consumer?.close();
      await subscription?.close();
    },
  };
}

export function videoMessage(row: JobRow): VideoMessage {
  const options = storedOptions(row);
  return {
    version: 1,
    jobId: row.id,
    videoKey: videoKey(row.id),
    mp3Id: row.mp3_id,
    fileName: row.file_name,
    format: row.format,
    owner: { id: row.owner_id, email: row.owner_email },
    // Left out when there are none, so such a message reads as it always did.
    ...(Object.keys(options).length > 0 && { options }),
  };
}
