import {
  type ApiClient,
  ApiError,
  ConnectionError,
  isEnded,
  type Job,
  type ServerEvent,
} from "./api-client.ts";

export interface WatchOptions {
  /** Every change seen, in order (never an older state after a newer one). */
  onChange?: (job: Job) => void;
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

/**
 * Follows a job until it is done or failed: over Server-Sent Events (`GET /events`) when the
 * server offers them, with a GET right after subscribing so no change before it is missed, and
 * falling back to polling `GET /jobs/:id` when the stream is refused or breaks.
 */
export async function waitForJob(api: ApiClient, jobId: string, options: WatchOptions = {}): Promise<Job> {
  const { pollIntervalMs = 1000, safetyPollMs = 10_000, outageToleranceMs = 60_000 } = options;
  let latest: Job | undefined;
  /** True once the job has ended. */
  const observe = (job: Job): boolean => {
    if (isNewer(job, latest)) {
      latest = job;
      options.onChange?.(job);
    }
    return latest !== undefined && isEnded(latest);
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
        if (observe(await api.job(jobId))) return latest as Job;
        const safety = setInterval(() => {
          api.job(jobId).then(
            (job) => {
              if (observe(job)) stream.abort();
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
            if (job.id === jobId && observe(job)) return latest as Job;
          }
        } finally {
          clearInterval(safety);
        }
      } catch (error) {
        if (latest && isEnded(latest)) return latest;
        // The job or the account is the problem (deleted, token expired): polling would meet it too.
        if (error instanceof ApiError && error.status < 500) throw error;
        // Otherwise the stream broke: go on by polling.
      }
    }
  } finally {
    stream.abort();
  }

  // Polling: the stream is unavailable or ended before the job did.
  let unreachableSince: number | undefined;
  for (;;) {
    try {
      if (observe(await api.job(jobId))) return latest as Job;
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
