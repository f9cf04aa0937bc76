import { mp3Key, videoKey } from "../contracts/messages.ts";
import type { BlobStore } from "../platform/blobs/blob-store.ts";
import type { Logger } from "../platform/logger.ts";
import type { JobsRepository } from "./jobs.ts";

const BATCH = 100;

/**
 * RETENTION_HOURS: finished jobs (done or failed) unchanged for longer than that are removed with
 * their files, as if their owner had deleted them. 0 keeps everything. Several gateway replicas
 * may sweep at once: every step is idempotent.
 */
export function createRetention(deps: {
  jobs: JobsRepository;
  blobs: BlobStore;
  logger: Logger;
  retentionHours: number;
}) {
  const { jobs, blobs, logger, retentionHours } = deps;
  let timer: NodeJS.Timeout | undefined;

  /** Removes what expired by `now`; returns how many jobs were removed. */
  async function sweep(now = new Date()): Promise<number> {
    const before = new Date(now.getTime() - retentionHours * 3_600_000).toISOString();
    let removed = 0;
    for (;;) {
      const rows = await jobs.finishedBefore(before, BATCH);
      for (const row of rows) {
        await jobs.delete(row.id, row.owner_id);
        await Promise.all([blobs.delete(videoKey(row.id)), blobs.delete(mp3Key(row.mp3_id))]);
      }
      removed += rows.length;
      if (rows.length < BATCH) break;
    }
    if (removed > 0) logger.info({ count: removed, retentionHours }, "removed expired jobs");
    return removed;
  }

  return {
    sweep,
    start(): void {
      if (retentionHours <= 0 || timer) return;
      const run = () => {
        sweep().catch((error: unknown) => logger.warn({ err: error }, "could not remove expired jobs"));
      };
      run();
      // Often enough that files outlive their retention by a small fraction of it.
      const everyMs = Math.min(Math.max(retentionHours * 3_600_000 * 0.05, 60_000), 3_600_000);
      timer = setInterval(run, everyMs);
      timer.unref();
    },
    stop(): void {
      clearInterval(timer);
      timer = undefined;
    },
  };
}
