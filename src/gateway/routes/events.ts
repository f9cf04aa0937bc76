import type { ServerResponse } from "node:http";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { bearer, errorResponse } from "../../platform/openapi.ts";
import type { Caller } from "../authentication.ts";
import type { JobFeed } from "../job-feed.ts";
import type { GatewayMetrics } from "../metrics.ts";

export interface EventsRouteDeps {
  feed: JobFeed;
  authenticate: (request: FastifyRequest) => Promise<Caller>;
  heartbeatMs?: number;
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
    401: errorResponse("No token"),
    403: errorResponse("Invalid or expired token"),
  },
} as const;

/**
 * `GET /events`: Server-Sent Events of the caller's job changes (`event: job`, data = the job).
 * A comment line every `heartbeatMs` keeps proxies from closing an idle stream.
 */
export function registerEventsRoute(app: FastifyInstance, deps: EventsRouteDeps): void {
  const open = new Set<ServerResponse>();
  app.addHook("preClose", async () => {
    for (const stream of open) stream.end();
  });

  app.get("/events", { schema: eventsSchema }, async (request, reply) => {
    const caller = await deps.authenticate(request);
    const stream = reply.raw;
    reply.hijack();
    stream.writeHead(200, {
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
    open.add(stream);
    const closed = deps.metrics.eventStreamOpened();
    stream.on("close", () => {
      closed();
      clearInterval(heartbeat);
      unsubscribe();
      open.delete(stream);
    });
  });
}
