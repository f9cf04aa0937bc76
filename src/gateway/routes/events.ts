import type { ServerResponse } from "node:http";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { HttpError } from "../../platform/http.ts";
import { bearer } from "../../platform/openapi.ts";
import { securityHeaders } from "../../platform/security-headers.ts";
import type { Caller } from "../authentication.ts";
import { gatewayError, gatewayErrorResponse, tokenErrorResponses } from "../errors.ts";
import type { JobFeed } from "../job-feed.ts";
import type { GatewayMetrics } from "../metrics.ts";

export interface EventsRouteDeps {
  feed: JobFeed;
  /** Checks the request's token again (the caller itself is `request.caller`, checked as the stream opened). */
  verifyAgain: (request: FastifyRequest) => Promise<Caller>;
  heartbeatMs?: number;
  /** How often an open stream's token is checked again (expired, revoked, account disabled: the stream ends). */
  recheckMs?: number;
  /** Most streams one user may hold open at once (tabs, devices); one more is 429. */
  maxStreamsPerUser?: number;
  metrics: Pick<GatewayMetrics, "eventStreamOpened">;
}

const eventsSchema = {
  operationId: "streamJobEvents",
  summary: "Live changes of your jobs (Server-Sent Events)",
  description:
    "Each change is `event: job`, `id: <jobId>:<updatedAt>`, `data: <Job as JSON>`. A comment line every 15 s keeps " +
    "proxies from closing the stream; `retry: 3000` asks browsers to reconnect after 3 s.",
  tags: ["jobs"],
  security: bearer,
  response: {
    200: {
      description: "An endless event stream",
      content: { "text/event-stream": { schema: { type: "string" } } },
    },
    ...tokenErrorResponses,
    429: gatewayErrorResponse("Too many open streams for this user", "too_many_streams"),
  },
} as const;

/** Enough for every tab and device a person uses; far below what would tie up a replica. */
export const MAX_EVENT_STREAMS_PER_USER = 10;

/**
 * `GET /events`: Server-Sent Events of the caller's job changes (`event: job`, data = the job).
 * A comment line every `heartbeatMs` keeps proxies from closing an idle stream. A stream lives no
 * longer than its token: it is checked again every `recheckMs` (5 s) and the stream ends (after an
 * `event: error` saying why) once the token has expired or been revoked.
 */
export function registerEventsRoute(app: FastifyInstance, deps: EventsRouteDeps): void {
  const open = new Set<ServerResponse>();
  const perUser = new Map<string, number>();
  const maxPerUser = deps.maxStreamsPerUser ?? MAX_EVENT_STREAMS_PER_USER;
  app.addHook("preClose", async () => {
    for (const stream of open) stream.end();
  });

  app.get("/events", { schema: eventsSchema }, async (request, reply) => {
    const { caller } = request;
    const streams = perUser.get(caller.id) ?? 0;
    if (streams >= maxPerUser) {
      throw gatewayError(
        "too_many_streams",
        `You already have ${streams} live event streams open (the limit); close a tab or another client first.`,
      );
    }
    perUser.set(caller.id, streams + 1);
    const stream = reply.raw;
    reply.hijack();
    stream.writeHead(200, {
      ...securityHeaders,
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    stream.write("retry: 3000\n\n");
    const unsubscribe = deps.feed.subscribe(caller.id, (job) => {
      stream.write(`event: job\nid: ${job.id}:${job.updatedAt}\ndata: ${JSON.stringify(job)}\n\n`);
    });
    const heartbeat = setInterval(() => stream.write(": keep-alive\n\n"), deps.heartbeatMs ?? 15_000);
    const recheck = setInterval(() => {
      deps.verifyAgain(request).catch((error: unknown) => {
        if (!(error instanceof HttpError) || error.statusCode >= 500) return; // auth down: keep streaming
        const body = JSON.stringify({ error: { code: error.code, message: error.message } });
        stream.end(`event: error\ndata: ${body}\n\n`);
      });
    }, deps.recheckMs ?? 5_000);
    open.add(stream);
    const closed = deps.metrics.eventStreamOpened();
    stream.on("close", () => {
      closed();
      clearInterval(heartbeat);
      clearInterval(recheck);
      const left = (perUser.get(caller.id) ?? 1) - 1;
      if (left > 0) perUser.set(caller.id, left);
      else perUser.delete(caller.id);
      unsubscribe();
      open.delete(stream);
    });
  });
}
