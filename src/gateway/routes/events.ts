import type { ServerResponse } from "node:http";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Caller } from "../authentication.ts";
import type { JobFeed } from "../job-feed.ts";

export interface EventsRouteDeps {
  feed: JobFeed;
  authenticate: (request: FastifyRequest) => Promise<Caller>;
  heartbeatMs?: number;
}

/**
 * `GET /events`: Server-Sent Events of the caller's job changes (`event: job`, data = the job).
 * A comment line every `heartbeatMs` keeps proxies from closing an idle stream.
 */
export function registerEventsRoute(app: FastifyInstance, deps: EventsRouteDeps): void {
  const open = new Set<ServerResponse>();
  app.addHook("preClose", async () => {
    for (const stream of open) stream.end();
  });

  app.get("/events", async (request, reply) => {
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
    stream.on("close", () => {
      clearInterval(heartbeat);
      unsubscribe();
      open.delete(stream);
    });
  });
}
