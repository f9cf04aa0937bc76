import { type ApiClient, ApiError, type Job } from "./api-client.ts";
import { CliError, UsageError } from "./command-kit.ts";

// Jobs are named by their ids, UUIDs; `vid2mp3 jobs` shows only their first characters, as git
// shows commits, and every command that takes a job id takes such a prefix too.

export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** The start of a UUID, at least four hex digits (hyphens where the UUID has them). */
const PREFIX = /^[0-9a-f]{4}[0-9a-f-]{0,31}$/i;

/** The first characters of an id, as `vid2mp3 jobs` shows it. */
export const SHORT_ID_LENGTH = 8;
export const shortId = (id: string): string => id.slice(0, SHORT_ID_LENGTH);

/** A job id or its prefix as typed, or a usage error (exit 2) for anything else. */
export function parseJobRef(value: string): string {
  const ref = value.trim().toLowerCase();
  if (!UUID.test(ref) && !PREFIX.test(ref)) {
    throw new UsageError(`"${value}" is not a job id (see \`vid2mp3 jobs\`).`);
  }
  return ref;
}

/** Every job of the caller, newest first, page by page. */
export async function* allJobs(api: ApiClient): AsyncGenerator<Job> {
  for (let offset = 0; ; ) {
    const page = await api.jobs({ limit: 100, offset });
    yield* page.jobs;
    offset += page.jobs.length;
    if (page.jobs.length === 0 || offset >= page.total) return;
  }
}

/** The job a full id or a prefix names; a prefix must name exactly one. */
export async function findJob(api: ApiClient, ref: string): Promise<Job> {
  if (UUID.test(ref)) return api.job(ref);
  const matches: Job[] = [];
  for await (const job of allJobs(api)) {
    if (job.id.startsWith(ref)) matches.push(job);
    if (matches.length > 1) {
      throw new UsageError(`"${ref}" is the start of several jobs' ids; give more of it.`);
    }
  }
  const [job] = matches;
  if (!job) throw new CliError(`No job of yours has an id starting with "${ref}" (see \`vid2mp3 jobs\`).`);
  return job;
}

/**
 * The fid of the MP3 a reference names: a job's id (or its prefix) when the job is done, else the
 * reference taken as a fid (the one in the "ready" mail).
 */
export async function findMp3(api: ApiClient, ref: string): Promise<{ fid: string; job?: Job }> {
  let job: Job;
  try {
    job = await findJob(api, ref);
  } catch (error) {
    // Not a job id: a full UUID may still be an MP3's fid.
    const notFound = (error instanceof ApiError && error.status === 404) || error instanceof CliError;
    if (notFound && UUID.test(ref)) return { fid: ref };
    throw error;
  }
  if (job.status === "done" && job.mp3Id) return { fid: job.mp3Id, job };
  if (job.status === "failed")
    throw new CliError(`Job ${shortId(job.id)} failed: ${job.error ?? "no reason"}`);
  throw new CliError(
    `Job ${shortId(job.id)} is still ${job.status}; wait for it with \`vid2mp3 jobs\` and download it once done.`,
  );
}
