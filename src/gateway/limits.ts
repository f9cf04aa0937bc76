import type { HttpError } from "../platform/http.ts";
import type { Caller } from "./authentication.ts";
import { fileTooLarge, gatewayError } from "./errors.ts";
import type { JobsRepository } from "./jobs.ts";

/**
 * Per-user admission of uploads: MAX_ACTIVE_JOBS_PER_USER (jobs queued or converting) and
 * USER_QUOTA_BYTES (MP3s kept plus uploads waiting). Checked before the body is read, so a refused
 * upload costs nothing; uploads still streaming on this replica count too, so a burst of parallel
 * uploads cannot slip past the check. (Across replicas each may admit one upload the others have
 * not stored yet: the limits can be overshot by at most the number of gateway replicas.)
 *
 * This is also what keeps the one shared `video` queue fair: no user can have more than
 * MAX_ACTIVE_JOBS_PER_USER jobs in it, so a newcomer's job waits behind at most that many jobs of
 * each other user, never behind one user's whole backlog.
 */
export interface UploadLimits {
  /** Throws 429 `too_many_active_jobs` or 413 `quota_exceeded`; else reserves room until `release`. */
  admit(caller: Caller, declaredBytes: number): Promise<Admission>;
}

export interface Admission {
  /** The most bytes the file may have: the upload limit, or what is left of the quota if less. */
  maxFileBytes: number;
  /** The error for a file that went over `maxFileBytes` (quota or size limit, whichever it was). */
  overLimit(): HttpError;
  /** The upload has ended (stored as a job, or refused): it no longer counts as in flight. */
  release(): void;
}

export interface UploadLimitOptions {
  jobs: Pick<JobsRepository, "usage">;
  maxActiveJobsPerUser: number;
  userQuotaBytes: number;
  maxUploadBytes: number;
}

export function createUploadLimits(options: UploadLimitOptions): UploadLimits {
  const { maxActiveJobsPerUser, userQuotaBytes, maxUploadBytes } = options;
  const inFlight = new Map<string, { uploads: number; bytes: number }>();
  const tooLarge = () => fileTooLarge(maxUploadBytes);

  return {
    async admit(caller, declaredBytes) {
      const flying = inFlight.get(caller.id) ?? { uploads: 0, bytes: 0 };
      const stored = await options.jobs.usage(caller.id);
      const active = stored.activeJobs + flying.uploads;
      if (maxActiveJobsPerUser > 0 && active >= maxActiveJobsPerUser) {
        throw gatewayError(
          "too_many_active_jobs",
          `You already have ${active} uploads waiting or converting (the limit is ${maxActiveJobsPerUser}); ` +
            "upload more once one of them has finished.",
        );
      }
      const used = stored.bytes + flying.bytes;
      const left = userQuotaBytes > 0 ? Math.max(0, userQuotaBytes - used) : Number.POSITIVE_INFINITY;
      const quotaExceeded = () =>
        gatewayError(
          "quota_exceeded",
          `Your storage quota is ${formatBytes(userQuotaBytes)} and ${formatBytes(used)} of it is in use, ` +
            "too little left for this file; delete finished jobs you no longer need (their MP3s) to free space.",
        );
      // The declared length includes the multipart envelope: a little over is still let through,
      // the stream is cut at the exact limit.
      if (left === 0 || declaredBytes > left + 64 * 1024) throw quotaExceeded();

      const reserved = Math.min(declaredBytes, left, maxUploadBytes);
      flying.uploads++;
      flying.bytes += reserved;
      inFlight.set(caller.id, flying);
      let released = false;
      return {
        maxFileBytes: Math.min(maxUploadBytes, left),
        overLimit: () => (left < maxUploadBytes ? quotaExceeded() : tooLarge()),
        release() {
          if (released) return;
          released = true;
          flying.uploads--;
          flying.bytes -= reserved;
          if (flying.uploads === 0) inFlight.delete(caller.id);
        },
      };
    },
  };
}

/** 1536 → "1.5 KiB": readable in a sentence. */
export function formatBytes(bytes: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} bytes` : `${Number(value.toFixed(1))} ${units[unit]}`;
}
