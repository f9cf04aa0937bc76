import multipart from "@fastify/multipart";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Kysely } from "kysely";
import { z } from "zod";
import { sharedAuthApiSchemas } from "../contracts/auth-api.ts";
import { JobEvent, mp3Key, parseWith, videoKey } from "../contracts/messages.ts";
import type { BlobStore } from "../platform/blobs/blob-store.ts";
import type { Broker, Consumer } from "../platform/broker/broker.ts";
import type { Config } from "../platform/config.ts";
import { migrateToLatest } from "../platform/database.ts";
import { createHttpServer, registerHealthRoutes } from "../platform/http.ts";
import type { Logger } from "../platform/logger.ts";
import { createServiceMetrics, type ServiceMetrics } from "../platform/metrics.ts";
import type { ServiceFetch } from "../platform/service-fetch.ts";
import {
  bearerToken,
  type Caller,
  createJwksVerifier,
  createValidateVerifier,
  needsToken,
} from "./authentication.ts";
import { createJobFeed } from "./job-feed.ts";
import { createJobsRepository, type GatewayDatabase, type Job, type JobRow, toJob } from "./jobs.ts";
import { createGatewayMetrics } from "./metrics.ts";
import { GATEWAY_MIGRATION_TABLE, gatewayMigrations } from "./migrations.ts";
import { createRetention } from "./retention.ts";
import { registerAuthProxyRoutes } from "./routes/auth-proxy.ts";
import { registerDownloadRoute } from "./routes/download.ts";
import { registerEventsRoute } from "./routes/events.ts";
import { registerJobRoutes } from "./routes/jobs.ts";
import { registerUploadRoute, videoMessage } from "./routes/upload.ts";
import { registerWebRoutes } from "./routes/web.ts";
import { sharedGatewaySchemas } from "./schemas.ts";

/** What one replica tells the others about a changed job. */
const JobUpdate = z.object({
  ownerId: z.string().min(1),
  job: z.object({ id: z.string(), status: z.string() }).loose(),
});
interface JobUpdate {
  ownerId: string;
  job: Job;
}

export interface GatewayDeps {
  logger: Logger;
  db: Kysely<GatewayDatabase>;
  broker: Broker;
  blobs: BlobStore;
  /** Reaches the auth service (over HTTP, or in-process in the all-in-one mode). */
  authFetch: ServiceFetch;
  /** Where its metrics go; by default a registry of its own. */
  metrics?: ServiceMetrics;
}

export interface GatewayService {
  app: FastifyInstance;
  /** Starts consuming job events (and re-queues unfinished jobs when the broker is not durable). */
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function createGatewayService(config: Config, deps: GatewayDeps): Promise<GatewayService> {
  const { logger, broker, blobs, authFetch } = deps;
  await migrateToLatest(deps.db, gatewayMigrations, { table: GATEWAY_MIGRATION_TABLE });
  const jobs = createJobsRepository(deps.db);
  const feed = createJobFeed();
  const verifier = config.jwt.secret ? createValidateVerifier(authFetch) : createJwksVerifier(authFetch);
  const authenticate = (request: FastifyRequest): Promise<Caller> => verifier.verify(bearerToken(request));

  const serviceMetrics = deps.metrics ?? createServiceMetrics("gateway");
  const metrics = createGatewayMetrics(serviceMetrics);
  const app = await createHttpServer(logger, {
    metrics: serviceMetrics,
    openapi: { title: "vid2mp3", version: "1", description: "Upload a video, get its MP3." },
  });
  for (const schema of [...sharedGatewaySchemas, ...sharedAuthApiSchemas]) app.addSchema(schema);
  // A protected route without a token answers 401 before its input is validated (GET /jobs/abc
  // without a token is 401, not 400); the token itself is verified in the route.
  app.addHook("onRequest", async (request) => {
    if (needsToken(request.routeOptions.url)) bearerToken(request);
  });
  await app.register(multipart);
  registerHealthRoutes(app, [
    { name: "database", check: () => jobs.ping() },
    { name: "blobs", check: () => blobs.check() },
    { name: "broker", check: () => broker.check() },
    {
      name: "auth",
      check: async () => {
        const response = await authFetch("/healthz");
        if (!response.ok) throw new Error(`auth answered ${response.status}`);
      },
    },
  ]);
  registerAuthProxyRoutes(app, authFetch);
  registerUploadRoute(app, {
    jobs,
    blobs,
    broker,
    authenticate,
    videoQueue: config.queues.video,
    maxUploadBytes: config.maxUploadBytes,
    onAccepted: (row) => announce(row),
    metrics,
  });
  registerDownloadRoute(app, { jobs, blobs, authenticate });
  registerJobRoutes(app, { jobs, blobs, authenticate });
  registerEventsRoute(app, { feed, authenticate, metrics });
  registerWebRoutes(app, { registrationOpen: config.registrationOpen });

  // Every gateway replica relays job changes to the browsers connected to it, whichever replica
  // stored the change.
  const updatesTopic = `${config.queues.jobEvents}.updates`;
  function announce(row: JobRow): void {
    const update: JobUpdate = { ownerId: row.owner_id, job: toJob(row) };
    broker.broadcast(updatesTopic, update).catch((error: unknown) => {
      logger.warn({ err: error, jobId: row.id }, "could not broadcast a job update");
    });
  }
  function relay(body: unknown): void {
    const update = JobUpdate.safeParse(body);
    if (update.success) feed.publish(update.data.ownerId, update.data.job as unknown as Job);
    else logger.warn({ body }, "ignored a malformed job update");
  }

  /** Converter events update the job row, then reach the owner's browsers. */
  async function onJobEvent(event: JobEvent): Promise<void> {
    const row = await jobs.apply(event);
    if (row) {
      announce(row);
      // The upload has served its purpose once the job has ended either way.
      if (row.status === "done" || row.status === "failed") {
        metrics.jobFinished(row.status);
        await blobs.delete(videoKey(row.id));
      }
    } else if (event.type === "done" && !(await jobs.exists(event.jobId))) {
      logger.info({ jobId: event.jobId }, "job was deleted while converting; removing its MP3");
      await blobs.delete(mp3Key(event.mp3Id));
    }
  }

  /** The in-process broker forgets messages on exit; the jobs table does not, so it is the source to re-queue from. */
  async function requeueUnfinished(): Promise<void> {
    const rows = await jobs.unfinished();
    for (const row of rows) await broker.publish(config.queues.video, videoMessage(row));
    if (rows.length > 0) logger.info({ count: rows.length }, "re-queued unfinished jobs");
  }

  const retention = createRetention({ jobs, blobs, logger, retentionHours: config.retentionHours });

  let consumer: Consumer | undefined;
  let subscription: Consumer | undefined;
  return {
    app,
    async start() {
      subscription = await broker.subscribe(updatesTopic, relay);
      consumer = await broker.consume<JobEvent>(config.queues.jobEvents, ({ body }) => onJobEvent(body), {
        parse: parseWith(JobEvent),
        concurrency: 8,
        maxAttempts: config.retry.maxAttempts,
        retryDelayMs: config.retry.delayMs,
      });
      if (!broker.durable) await requeueUnfinished();
      retention.start();
    },
    async close() {
      retention.stop();
      await app.close();
      await consumer?.close();
      await subscription?.close();
    },
  };
}
