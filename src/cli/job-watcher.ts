import {
  type ApiClient,
  ApiError,
  ConnectionError,
  isEnded,
  type Job,
  type ServerEvent,
} from "./api-client.ts";

export interface WatchOptions {
  /** Every change seen, in order per job (never an older state after a newer one). */
  onChange?: (job: Job) => void;
  /** A job has ended (done or failed); called once per job. */
  onEnded?: (job: Job) => void;
  /** Polling interval when the event stream is not available. */
  pollIntervalMs?: number;
  /** While following events, a GET this often in case an event was lost. */
  safetyPollMs?: number;
  /** How long polling tolerates the server being unreachable before giving up. */
  outageToleranceMs?: number;
}

const statusRank: Record<Job["status"], number> = { queued: 0, converting: 1, done: 2, failed: 2 };

/** `next` says something `previous` did not: a later status, or more progress. */
function isNewer(next: Job, previous: Job | undefined): boolean {
  if (!previous) return true;
  const rank = statusRank[next.status] - statusRank[previous.status];
  if (rank !== 0) return rank > 0;
  return next.progress > previous.progress || (isEnded(next) && !isEnded(previous));
}

/** Follows one job until it is done or failed (see `waitForJobs`). */
export async function waitForJob(api: ApiClient, jobId: string, options: WatchOptions = {}): Promise<Job> {
  const [job] = await waitForJobs(api, [jobId], options);
  return job as Job;
}

/**
 * Follows several jobs together until each is done or failed, over one Server-Sent Events stream
 * (`GET /events`) when the server offers it, with a GET of each job right after subscribing so no
 * change before it is missed, and falling back to polling `GET /jobs/:id` when the stream is
 * refused or breaks. Answers the ended jobs in the order of `jobIds`.
 */
export async function waitForJobs(
  api: ApiClient,
  jobIds: string[],
  options: WatchOptions = {},
): Promise<Job[]> {
  const { pollIntervalMs = 1000, safetyPollMs = 10_000, outageToleranceMs = 60_000 } = options;
  const latest = new Map<string, Job>();
  const open = new Set(jobIds);
  const ended = () => open.size === 0;
  const answer = () => jobIds.map((id) => latest.get(id) as Job);
  /** True once every job has ended. */
  const observe = (job: Job): boolean => {
    if (!open.has(job.id)) return ended();
    if (isNewer(job, latest.get(job.id))) {
      latest.set(job.id, job);
      options.onChange?.(job);
      if (isEnded(job)) {
        open.delete(job.id);
        options.onEnded?.(job);
      }
    }
    return ended();
  };
  /** One GET of every job still open. */
  const pollOnce = async (): Promise<boolean> => {
    for (const id of [...open]) observe(await api.job(id));
    return ended();
  };

  const stream = new AbortController();
  try {
    let events: AsyncIterable<ServerEvent> | undefined;
    try {
      events = await api.events(stream.signal);
    } catch (error) {
      // No event stream here (an older gateway, a proxy that refuses it): poll instead.
      if (error instanceof ApiError && error.isAuthProblem) throw error;
    }
    if (events) {
      try {
        if (await pollOnce()) return answer();
        const safety = setInterval(() => {
          pollOnce().then(
            (done) => {
              if (done) stream.abort();
            },
            () => {},
          );
        }, safetyPollMs);
        try {
          for await (const event of events) {
            if (event.event !== "job") continue;
            let job: Job;
            try {
              job = JSON.parse(event.data) as Job;
            } catch {
              continue;
            }
            if (observe(job)) return answer();
          }
        } finally {
          clearInterval(safety);
        }
      } catch (error) {
        if (ended()) return answer();
        // The job or the account is the problem (deleted, token expired): polling would meet it too.
        if (error instanceof ApiError && error.status < 500) throw error;
        // Otherwise the stream broke: go on by polling.
      }
    }
  } finally {
    stream.abort();
  }
  if (ended()) return answer();

  // Polling: the stream is unavailable or ended before the jobs did.
  let unreachableSince: number | undefined;
  for (;;) {
    try {
      if (await pollOnce()) return answer();
      unreachableSince = undefined;
    } catch (error) {
      const transient =
        error instanceof ConnectionError || (error instanceof ApiError && error.status >= 500);
      if (!transient) throw error;
      unreachableSince ??= Date.now();
      if (Date.now() - unreachableSince > outageToleranceMs) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
  }
}
