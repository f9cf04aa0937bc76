import type { BlobStore } from "../platform/blobs/blob-store.ts";
import type { Logger } from "../platform/logger.ts";

/**
 * Uploads that never finished (a gateway killed mid-upload, a store that failed during one and
 * could not be told to abort it) leave parts in S3 or a temporary file in the folder store. The
 * gateway, which makes uploads, removes those older than `maxAgeMs` at start and periodically.
 * The bucket's lifecycle rule (deploy/README.md) is the second line of defence.
 */
export function createUploadSweep(deps: { blobs: BlobStore; logger: Logger; maxAgeMs: number }) {
  const { blobs, logger, maxAgeMs } = deps;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  function run(): void {
    running ??= blobs
      .sweepIncomplete(maxAgeMs)
      .then((removed) => {
        if (removed > 0) logger.info({ removed, maxAgeMs }, "removed incomplete uploads");
      })
      .catch((error: unknown) => logger.warn({ err: error }, "could not sweep incomplete uploads"))
      .finally(() => {
        running = undefined;
      });
  }

  return {
    start(): void {
      if (timer) return;
      run();
      // A small fraction of the age, so parts outlive it by little; never busier than once a minute.
      timer = setInterval(run, Math.min(Math.max(maxAgeMs / 4, 60_000), 3_600_000));
      timer.unref();
    },
    async stop(): Promise<void> {
      clearInterval(timer);
      timer = undefined;
      await running;
    },
  };
}
