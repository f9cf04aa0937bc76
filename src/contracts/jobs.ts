import type { AppliedOptions } from "./options.ts";

export type { AppliedOptions };

/** A job's states: `queued → converting → done | failed`, never back. */
export type JobStatus = "queued" | "converting" | "done" | "failed";

/** A job as the gateway describes it to clients (`/jobs`, `/jobs/:id`, the `job` events). */
export interface Job {
  id: string;
  status: JobStatus;
  fileName: string;
  size: number;
  createdAt: string;
  updatedAt: string;
  /** 0..1. */
  progress: number;
  durationSeconds: number | null;
  /** The `fid` for `/download`, once the job is done. */
  mp3Id: string | null;
  /** Why the job failed, as a sentence for the user. */
  error: string | null;
  /** When the job and its MP3 are removed (RETENTION_HOURS after it ended); null while unfinished or when kept for ever. */
  expiresAt: string | null;
  /** The conversion options, every default filled in. */
  options: AppliedOptions;
  /** The name the MP3 downloads under (`holiday.mov` → `holiday.mp3`). */
  mp3FileName: string;
  /** The MP3's size in bytes, once the job is done. */
  mp3Size: number | null;
}

/** A page of `GET /jobs`. */
export interface JobPage {
  jobs: Job[];
  total: number;
  limit: number;
  offset: number;
}
