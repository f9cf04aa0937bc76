import multipart from "@fastify/multipart";
import type { FastifyInstance } from "fastify";
import type { Kysely } from "kysely";
import { componentSchemas } from "../contracts/api-components.ts";
import type { BlobStore } from "../platform/blobs/blob-store.ts";
import type { Broker } from "../platform/broker/broker.ts";
import type { Config } from "../platform/config.ts";
import { prepareSchema } from "../platform/database.ts";
import { createHttpServer, registerHealthRoutes } from "../platform/http.ts";
import type { HttpTimeouts } from "../platform/http-timeouts.ts";
import type { Logger } from "../platform/logger.ts";
import { createServiceMetrics, type ServiceMetrics } from "../platform/metrics.ts";
import type { ServiceFetch } from "../platform/service-fetch.ts";
import {
  authenticateRequests,
  bearerToken,
  createJwksVerifier,
  createValidateVerifier,
} from "./authentication.ts";
import { createDownloadLinks, loadDownloadLinkKey } from "./download-links.ts";
import { createJobLifecycle } from "./job-lifecycle.ts";
import { createJobsRepository, type GatewayDatabase } from "./jobs.ts";
import { createUploadLimits } from "./limits.ts";
import { createGatewayMetrics } from "./metrics.ts";
import { GATEWAY_MIGRATION_TABLE, gatewayMigrations } from "./migrations.ts";
import { createRetention } from "./retention.ts";
import { withRevocationCheck } from "./revocation-check.ts";
import { registerAuthProxyRoutes } from "./routes/auth-proxy.ts";
import { registerDownloadLinkRoute, registerDownloadRoute } from "./routes/download.ts";
import { registerEventsRoute } from "./routes/events.ts";
import { registerJobRoutes } from "./routes/jobs.ts";
import { registerUploadRoute } from "./routes/upload.ts";
import { registerWebRoutes } from "./routes/web.ts";
import { createUploadSweep } from "./upload-sweep.ts";

/** The gateway reads only these settings of the configuration: what it is given, and all it can depend on. */
export type GatewayConfig = Pick<
  Config,
  | "incompleteUploadMaxAgeMs"
  | "jobSweep"
  | "jwt"
  | "limits"
  | "maxUploadBytes"
  | "metricsToken"
  | "migrateOnStart"
  | "queues"
  | "registrationOpen"
  | "retentionHours"
  | "retry"
  | "trustProxy"
>;

export interface GatewayDeps {
  logger: Logger;
  db: Kysely<GatewayDatabase>;
  broker: Broker;
  blobs: BlobStore;
  /** Reaches the auth service (over HTTP, or in-process in the all-in-one mode). */
  authFetch: ServiceFetch;
  /** Where its metrics go; by default a registry of its own. */
  metrics?: ServiceMetrics;
  /** Tests only: shorter intervals than the defaults. */
  timing?: { revocationRecheckMs?: number; eventsRecheckMs?: number; http?: Partial<HttpTimeouts> };
}

export interface GatewayService {
  app: FastifyInstance;
  /** Starts the jobs' lifecycle: job events, re-queueing, the sweep of stale jobs (see job-lifecycle.ts). */
  start(): Promise<void>;
  close(): Promise<void>;
}

export async function createGatewayService(
  config: GatewayConfig,
  deps: GatewayDeps,
): Promise<GatewayService> {
  const { logger, broker, blobs, authFetch } = deps;
  await prepareSchema(deps.db, gatewayMigrations, {
    table: GATEWAY_MIGRATION_TABLE,
    service: "gateway",
    migrate: config.migrateOnStart,
  });
  const jobs = createJobsRepository(deps.db, { retentionHours: config.retentionHours });
  // HS256 asks auth about every token anyway; EdDSA verifies locally and asks auth about revocation now and then.
  const verifier = config.jwt.secret
    ? { ...createValidateVerifier(authFetch), forgetUser: () => {} }
    : withRevocationCheck(createJwksVerifier(authFetch), authFetch, {
        logger,
        recheckMs: deps.timing?.revocationRecheckMs,
      });

  const serviceMetrics = deps.metrics ?? createServiceMetrics("gateway");
  const metrics = createGatewayMetrics(serviceMetrics);
  const lifecycle = createJobLifecycle({
    jobs,
    blobs,
    broker,
    logger,
    metrics,
    queues: config.queues,
    retry: config.retry,
    sweep: config.jobSweep,
  });
  const app = await createHttpServer(logger, {
    metrics: serviceMetrics,
    metricsToken: config.metricsToken,
    openapi: { title: "vid2mp3", version: "1", description: "Upload a video, get its MP3." },
    unboundedBody: (request) => request.routeOptions.url === "/upload",
    trustProxy: config.trustProxy,
    timeouts: deps.timing?.http,
  });
  for (const schema of componentSchemas("Job", "User", "IssuedToken")) app.addSchema(schema);
  authenticateRequests(app, verifier);
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
  registerAuthProxyRoutes(app, authFetch, (userId) => verifier.forgetUser(userId));
  registerUploadRoute(app, {
    lifecycle,
    jobs,
    blobs,
    maxUploadBytes: config.maxUploadBytes,
    limits: createUploadLimits({
      jobs,
      maxActiveJobsPerUser: config.limits.maxActiveJobsPerUser,
      userQuotaBytes: config.limits.userQuotaBytes,
      maxUploadBytes: config.maxUploadBytes,
    }),
    metrics,
  });
  const downloads = {
    jobs,
    blobs,
    links: createDownloadLinks(await loadDownloadLinkKey(deps.db)),
  };
  registerDownloadRoute(app, downloads);
  registerDownloadLinkRoute(app, downloads);
  registerJobRoutes(app, { jobs, blobs });
  registerEventsRoute(app, {
    feed: lifecycle.feed,
    // An open stream checks its token again now and then: it must not outlive it.
    verifyAgain: (request) => verifier.verify(bearerToken(request)),
    metrics,
    recheckMs: deps.timing?.eventsRecheckMs,
  });
  registerWebRoutes(app, { registrationOpen: config.registrationOpen });

  const retention = createRetention({ jobs, blobs, logger, retentionHours: config.retentionHours });

  const uploadSweep = createUploadSweep({ blobs, logger, maxAgeMs: config.incompleteUploadMaxAgeMs });

  return {
    app,
    async start() {
      await lifecycle.start();
      retention.start();
      uploadSweep.start();
    },
    async close() {
      retention.stop();
      await app.close();
      await uploadSweep.stop();
      await lifecycle.close();
    },
  };
}
