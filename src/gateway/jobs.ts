import path from "node:path";
import type { Kysely, Selectable } from "kysely";
import { FINAL_STATUSES, isFinalStatus, type Job, type JobStatus } from "../contracts/jobs.ts";
import type { JobEvent } from "../contracts/messages.ts";
import { appliedOptions, ConversionOptions } from "../contracts/options.ts";

export type { Job, JobStatus };

interface JobsTable {
  id: string;
  owner_id: string;
  owner_email: string;
  file_name: string;
  format: string;
  size: number;
  status: JobStatus;
  progress: number;
  duration_seconds: number | null;
  mp3_id: string;
  mp3_size: number | null;
  error: string | null;
  created_at: string;
  updated_at: string;
  /** `ConversionOptions` as JSON; null for none (and for jobs older than options). */
  options: string | null;
}

export interface GatewayDatabase {
  jobs: JobsTable;
  gateway_secrets: { name: string; value: string };
}

export type JobRow = Selectable<JobsTable>;

/**
 * The job as clients see it. `retentionHours` (RETENTION_HOURS) gives a finished job its
 * `expiresAt`: the retention sweep removes it then. Null while unfinished or when kept for ever.
 */
export function toJob(row: JobRow, retentionHours: number): Job {
  const finished = isFinalStatus(row.status);
  return {
    id: row.id,
    status: row.status,
    fileName: row.file_name,
    size: Number(row.size),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    progress: Number(row.progress),
    durationSeconds: row.duration_seconds === null ? null : Number(row.duration_seconds),
    mp3Id: row.status === "done" ? row.mp3_id : null,
    error: row.error,
    expiresAt:
      finished && retentionHours > 0
        ? new Date(Date.parse(row.updated_at) + retentionHours * 3_600_000).toISOString()
        : null,
    options: appliedOptions(storedOptions(row)),
    mp3FileName: mp3FileName(row.file_name),
    mp3Size: row.status === "done" && row.mp3_size !== null ? Number(row.mp3_size) : null,
  };
}

/** The options a job was uploaded with (what the user chose, no defaults filled in). */
export function storedOptions(row: Pick<JobRow, "options">): ConversionOptions {
  if (row.options === null) return {};
  // Written by this gateway from validated options; parsed again so a bad row cannot pass unseen.
  return ConversionOptions.parse(JSON.parse(row.options));
}

/** `holiday.mov` → `holiday.mp3`. */
export function mp3FileName(uploadName: string): string {
  const base = path.parse(uploadName).name || "audio";
  return `${base}.mp3`;
}

const unfinished: JobStatus[] = ["queued", "converting"];

export interface NewJob {
  id: string;
  ownerId: string;
  ownerEmail: string;
  fileName: string;
  format: string;
  size: number;
  mp3Id: string;
  /** What the user chose; none: every default. */
  options?: ConversionOptions;
}

/** Every read and write of the jobs table; reads for clients are always scoped to the owner. */
export function createJobsRepository(db: Kysely<GatewayDatabase>, options: { retentionHours?: number } = {}) {
  const retentionHours = options.retentionHours ?? 0;
  const byOwner = (ownerId: string) => db.selectFrom("jobs").where("owner_id", "=", ownerId);

  return {
    /** The row as clients see it, with its expiry under this gateway's RETENTION_HOURS. */
    describe(row: JobRow): Job {
      return toJob(row, retentionHours);
    },

    async create(job: NewJob): Promise<JobRow> {
      const now = new Date().toISOString();
      const row: JobRow = {
        id: job.id,
        owner_id: job.ownerId,
        owner_email: job.ownerEmail,
        file_name: job.fileName,
        format: job.format,
        size: job.size,
        status: "queued",
        progress: 0,
        duration_seconds: null,
        mp3_id: job.mp3Id,
        mp3_size: null,
        error: null,
        created_at: now,
        updated_at: now,
        options: job.options && Object.keys(job.options).length > 0 ? JSON.stringify(job.options) : null,
      };
      await db.insertInto("jobs").values(row).execute();
      return row;
    },

    async get(id: string, ownerId: string): Promise<JobRow | undefined> {
      return byOwner(ownerId).where("id", "=", id).selectAll().executeTakeFirst();
    },

    async getDone(mp3Id: string, ownerId: string): Promise<JobRow | undefined> {
      return byOwner(ownerId)
        .where("mp3_id", "=", mp3Id)
        .where("status", "=", "done")
        .selectAll()
        .executeTakeFirst();
    },

    /** A done job by its MP3's id, whoever owns it: only for a signed download link. */
    async getDoneByMp3Id(mp3Id: string): Promise<JobRow | undefined> {
      return db
        .selectFrom("jobs")
        .where("mp3_id", "=", mp3Id)
        .where("status", "=", "done")
        .selectAll()
        .executeTakeFirst();
    },

    async list(
      ownerId: string,
      page: { limit: number; offset: number },
    ): Promise<{ rows: JobRow[]; total: number }> {
      const [rows, count] = await Promise.all([
        byOwner(ownerId)
          .selectAll()
          .orderBy("created_at", "desc")
          .orderBy("id", "desc")
          .limit(page.limit)
          .offset(page.offset)
          .execute(),
        byOwner(ownerId)
          .select((eb) => eb.fn.countAll<number>().as("n"))
          .executeTakeFirstOrThrow(),
      ]);
      return { rows, total: Number(count.n) };
    },

    async delete(id: string, ownerId: string): Promise<boolean> {
      const result = await db
        .deleteFrom("jobs")
        .where("id", "=", id)
        .where("owner_id", "=", ownerId)
        .executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },

    /** Jobs accepted but not finished, oldest first: re-queued at start when the broker is not durable. */
    async unfinished(): Promise<JobRow[]> {
      return db
        .selectFrom("jobs")
        .selectAll()
        .where("status", "in", unfinished)
        .orderBy("created_at")
        .execute();
    },

    /**
     * Applies a converter event and returns the job as it is now, or undefined when the event
     * changed nothing (unknown job, or the job already finished: events can arrive twice or late).
     */
    async apply(event: JobEvent): Promise<JobRow | undefined> {
      const update = db
        .updateTable("jobs")
        .where("id", "=", event.jobId)
        .where("status", "in", unfinished)
        .set({ updated_at: new Date().toISOString() });
      const changed = await (() => {
        switch (event.type) {
          case "converting":
            return update.set({ status: "converting" }).executeTakeFirst();
          case "progress":
            // Events may arrive late or twice: progress only ever moves forward.
            return update
              .where("progress", "<=", event.progress)
              .set({
                status: "converting",
                progress: event.progress,
                duration_seconds: event.durationSeconds,
              })
              .executeTakeFirst();
          case "done":
            return update
              .set({
                status: "done",
                progress: 1,
                mp3_size: event.mp3Size,
                error: null,
                // A redelivered job whose MP3 was already stored reports no duration: keep the known one.
                ...(event.durationSeconds === null ? {} : { duration_seconds: event.durationSeconds }),
              })
              .executeTakeFirst();
          case "failed":
            return update.set({ status: "failed", error: event.error }).executeTakeFirst();
        }
      })();
      if (Number(changed.numUpdatedRows) === 0) return undefined;
      return db.selectFrom("jobs").selectAll().where("id", "=", event.jobId).executeTakeFirst();
    },

    /**
     * Unfinished jobs last changed before the given times (queued ones before `queuedBefore`, none
     * when it is undefined; converting ones before `convertingBefore`), least recently changed
     * first: the sweep's candidates.
     */
    async stale(
      cutoff: { queuedBefore: string | undefined; convertingBefore: string },
      limit: number,
    ): Promise<JobRow[]> {
      const { queuedBefore, convertingBefore } = cutoff;
      return db
        .selectFrom("jobs")
        .selectAll()
        .where((eb) =>
          eb.or([
            ...(queuedBefore === undefined
              ? []
              : [eb.and([eb("status", "=", "queued"), eb("updated_at", "<", queuedBefore)])]),
            eb.and([eb("status", "=", "converting"), eb("updated_at", "<", convertingBefore)]),
          ]),
        )
        .orderBy("updated_at")
        .limit(limit)
        .execute();
    },

    /**
     * Marks an unfinished job as just handled, only if it is still as `seen` (same status and
     * `updated_at`): true for the one caller (of several gateway replicas) that gets to re-queue it.
     */
    async claim(seen: Pick<JobRow, "id" | "status" | "updated_at">, now = new Date()): Promise<boolean> {
      const result = await db
        .updateTable("jobs")
        .set({ updated_at: now.toISOString() })
        .where("id", "=", seen.id)
        .where("status", "=", seen.status)
        .where("updated_at", "=", seen.updated_at)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },

    /** Finished jobs (done or failed) last changed before `before`, oldest first. */
    async finishedBefore(before: string, limit: number): Promise<JobRow[]> {
      return db
        .selectFrom("jobs")
        .selectAll()
        .where("status", "in", [...FINAL_STATUSES])
        .where("updated_at", "<", before)
        .orderBy("updated_at")
        .limit(limit)
        .execute();
    },

    /**
     * What a user holds: jobs queued or converting, and bytes stored for them (MP3s of done jobs,
     * uploads not converted yet; a finished job's upload is deleted).
     */
    async usage(ownerId: string): Promise<{ activeJobs: number; bytes: number }> {
      const row = await byOwner(ownerId)
        .select((eb) => [
          eb.fn
            .sum<number | string | null>(eb.case().when("status", "in", unfinished).then(1).else(0).end())
            .as("active"),
          eb.fn
            .sum<number | string | null>(
              eb
                .case()
                .when("status", "in", unfinished)
                .then(eb.ref("size"))
                .when("status", "=", "done")
                .then(eb.fn.coalesce("mp3_size", eb.lit(0)))
                .else(0)
                .end(),
            )
            .as("bytes"),
        ])
        .executeTakeFirstOrThrow();
      // SUM is null over no rows, and a string for MySQL's DECIMAL: convert either way.
      return { activeJobs: Number(row.active ?? 0), bytes: Number(row.bytes ?? 0) };
    },

    async exists(id: string): Promise<boolean> {
      return (await db.selectFrom("jobs").select("id").where("id", "=", id).executeTakeFirst()) !== undefined;
    },

    async ping(): Promise<void> {
      await db.selectFrom("jobs").select("id").limit(1).execute();
    },
  };
}

export type JobsRepository = ReturnType<typeof createJobsRepository>;
