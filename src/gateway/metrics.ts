import type { ServiceMetrics } from "../platform/metrics.ts";

/** What the gateway counts; the routes see only these methods. */
export interface GatewayMetrics {
  uploadAccepted(bytes: number): void;
  /** `reason`: the error code the client got (`payload_too_large`, `unsupported_media_type`, …). */
  uploadRefused(reason: string): void;
  jobFinished(outcome: "done" | "failed"): void;
  /** Unfinished jobs whose message the sweep published again. */
  jobsRequeued(count: number): void;
  /** An `/events` stream opened; call the returned function when it closes. */
  eventStreamOpened(): () => void;
}

/** Upload sizes in bytes: 1 MiB to the 2 GiB default limit. */
const SIZE_BUCKETS = [1, 4, 16, 64, 256, 1024, 2048].map((mib) => mib * 1024 * 1024);

export function createGatewayMetrics(metrics: ServiceMetrics): GatewayMetrics {
  const accepted = metrics.counter({
    name: "vid2mp3_uploads_accepted_total",
    help: "Uploads stored and queued for conversion (answered 202).",
  });
  const refused = metrics.counter<"reason">({
    name: "vid2mp3_uploads_refused_total",
    help: "Uploads refused, by the error code answered (bad_request, payload_too_large, unsupported_media_type, unauthorized, invalid_token, storage_unavailable, queue_unavailable, …).",
    labelNames: ["reason"],
  });
  const sizes = metrics.histogram({
    name: "vid2mp3_upload_size_bytes",
    help: "Sizes of the accepted uploads in bytes (_sum: bytes received).",
    buckets: SIZE_BUCKETS,
  });
  const finished = metrics.counter<"outcome">({
    name: "vid2mp3_jobs_finished_total",
    help: "Jobs that reached an end state, by outcome (done, failed).",
    labelNames: ["outcome"],
    initial: [{ outcome: "done" }, { outcome: "failed" }],
  });
  const requeued = metrics.counter({
    name: "vid2mp3_jobs_requeued_total",
    help: "Unfinished jobs whose video message the sweep published again (lost message, crash before publish).",
  });
  const streams = metrics.gauge({
    name: "vid2mp3_sse_clients",
    help: "Open GET /events (Server-Sent Events) streams.",
  });
  return {
    uploadAccepted(bytes) {
      accepted.inc();
      sizes.observe({}, bytes);
    },
    uploadRefused: (reason) => refused.inc({ reason }),
    jobFinished: (outcome) => finished.inc({ outcome }),
    jobsRequeued: (count) => requeued.inc({}, count),
    eventStreamOpened() {
      streams.inc();
      let open = true;
      return () => {
        if (open) streams.dec();
        open = false;
      };
    },
  };
}
