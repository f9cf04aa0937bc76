import { z } from "zod";
import { AppliedOptions } from "./options.ts";
import { PageQuery, required } from "./requests.ts";

/**
 * The job as the gateway shows it to clients (`/jobs`, `/jobs/:id`, the upload's answer, the
 * `job` events), written once: the gateway's answers, its OpenAPI document and the command line
 * all take it from here (docs/architecture.md describes it).
 */

/** A job's states: `queued → converting → done | failed`, never back. */
export const JOB_STATUSES = ["queued", "converting", "done", "failed"] as const;
export const JobStatus = z.enum(JOB_STATUSES);
export type JobStatus = z.infer<typeof JobStatus>;

/** The states a job never leaves: its outcome is known, it holds no converter, the retention may remove it. */
export const FINAL_STATUSES = ["done", "failed"] as const satisfies readonly JobStatus[];

export function isFinalStatus(status: JobStatus): boolean {
  return (FINAL_STATUSES as readonly JobStatus[]).includes(status);
}

const timestamp = z.iso.datetime();
const bytes = z.number().int().min(0);

export const Job = z
  .object({
    id: z.uuid(),
    status: JobStatus.meta({ description: "Moves queued → converting → done | failed, never back." }),
    fileName: z.string().meta({ description: "The uploaded file's name" }),
    size: bytes.meta({ description: "The upload's size in bytes" }),
    createdAt: timestamp,
    updatedAt: timestamp,
    progress: z.number().min(0).max(1),
    durationSeconds: z.number().nullable().meta({ description: "The audio's length, once known" }),
    mp3Id: z.string().nullable().meta({ description: "The `fid` for `GET /download`, once done" }),
    error: z.string().nullable().meta({ description: "Why the job failed, a sentence for the user" }),
    expiresAt: timestamp.nullable().meta({
      description:
        "When the job and its MP3 are removed (RETENTION_HOURS after it ended); null while unfinished or kept for ever",
    }),
    options: AppliedOptions,
    mp3FileName: z.string().meta({ description: "The name the MP3 downloads under" }),
    mp3Size: bytes.nullable().meta({ description: "The MP3's size in bytes, once done" }),
  })
  .meta({ id: "Job", description: "One upload and its conversion." });
export type Job = z.infer<typeof Job>;

/** A page of `GET /jobs`, newest first. */
export const JobPage = z.object({
  jobs: z.array(Job),
  total: z.number().int().min(0),
  limit: z.number().int(),
  offset: z.number().int(),
});
export type JobPage = z.infer<typeof JobPage>;

/** The answer to an accepted upload (202). */
export const UploadAccepted = z.object({
  jobId: z.uuid(),
  status: z.literal("queued"),
  job: Job,
});
export type UploadAccepted = z.infer<typeof UploadAccepted>;

/** `GET /jobs`'s paging. */
export const JobPageQuery = PageQuery;

/** A job's id in the path (`/jobs/:id`). */
// Any 8-4-4-4-12 hex id, as before the job ids were checked with zod (they are all random v4 UUIDs).
export const JobIdParams = z.object({ id: z.guid({ error: "must be a job id (a UUID)" }) });

/** `GET /download?fid=<mp3Id>`, and a signed link's `expires` and `signature` (download-links). */
const fid = z
  .string({ error: required("a string") })
  .min(1, { error: "must not be empty" })
  .max(100, { error: "must be at most 100 characters" })
  .meta({ description: "The job's `mp3Id`" });
export const DownloadQuery = z.object({
  fid,
  expires: z.string().optional().meta({ description: "A signed link's expiry (Unix seconds)" }),
  signature: z.string().optional().meta({ description: "A signed link's signature" }),
});
export const DownloadLinkQuery = z.object({ fid });

/** A signed download link (`POST /download/link`). */
export const SignedLink = z.object({
  url: z.string().meta({ examples: ["/download?fid=…&expires=…&signature=…"] }),
  expiresAt: z.iso.datetime(),
});
export type SignedLink = z.infer<typeof SignedLink>;
