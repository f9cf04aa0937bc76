import { chmod, mkdir } from "node:fs/promises";
import type { FastifyInstance } from "fastify";
import { AUTH_DEFAULT_PORT, type AuthDatabase, createAuthService } from "../auth/service.ts";
import { locateFfmpeg } from "../converter/ffmpeg-locator.ts";
import { createConverter } from "../converter/service.ts";
import type { GatewayDatabase } from "../gateway/jobs.ts";
import { createGatewayService } from "../gateway/service.ts";
import type { NotificationDatabase } from "../notification/sent-mails.ts";
import { createNotifier } from "../notification/service.ts";
import {
  describeBackends,
  openBlobStore,
  openBroker,
  openMailer,
  openServiceDatabase,
} from "../platform/backends.ts";
import type { BlobStore } from "../platform/blobs/blob-store.ts";
import type { Broker } from "../platform/broker/broker.ts";
import type { Config } from "../platform/config.ts";
import { ConfigError } from "../platform/config.ts";
import { createHttpServer, type ReadinessCheck, registerHealthRoutes } from "../platform/http.ts";
import type { Logger } from "../platform/logger.ts";
import { createServiceMetrics, type ServiceMetrics } from "../platform/metrics.ts";
import { httpServiceFetch, injectServiceFetch, type ServiceFetch } from "../platform/service-fetch.ts";
import type { ServiceName } from "./service-names.ts";

/** Ports when PORT is unset: the original's for auth and gateway; the workers' serve health checks only. */
const defaultPorts: Record<ServiceName, number> = {
  all: 8080,
  gateway: 8080,
  auth: AUTH_DEFAULT_PORT,
  converter: 8081,
  notification: 8082,
};

/**
 * Where a service listens when HOST is unset: everything in one process is a laptop install, seen
 * from this machine only; a single service is a container, reached through its network.
 */
export function defaultHost(name: ServiceName): string {
  return name === "all" ? "127.0.0.1" : "0.0.0.0";
}

/**
 * The data dir holds password hashes, the signing key, uploads and MP3s: only this account may
 * read it. Everything this process creates from now on is 0600 (files) and 0700 (folders), and
 * the data dir itself is 0700, which also shuts out files an earlier version made more open.
 */
export async function keepDataPrivate(dataDir: string): Promise<void> {
  process.umask(0o077);
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    await chmod(dataDir, 0o700);
  } catch (error) {
    // A container with a read-only root whose service keeps nothing under DATA_DIR (the gateway on
    // MySQL and S3): nothing will be written there, so there is nothing to keep private.
    if ((error as NodeJS.ErrnoException).code !== "EROFS") throw error;
  }
}

export interface RunningService {
  url: string;
  /** Stops taking work, lets the work in hand end, then closes the backends. */
  close(): Promise<void>;
}

/** Starts one service (or `all` of them in this process) on the backends the configuration selects. */
export async function serve(name: ServiceName, config: Config, logger: Logger): Promise<RunningService> {
  logger.info({ service: name, backends: describeBackends(config) }, "starting");
  await keepDataPrivate(config.dataDir);
  const closers: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    // In reverse order of opening: what depends on a backend stops before the backend.
    for (const close of closers.reverse()) await close();
  };
  try {
    const app = await startService(name, config, logger, (close) => closers.push(close));
    const url = await app.listen({
      host: config.host ?? defaultHost(name),
      port: config.port ?? defaultPorts[name],
    });
    return { url, close: closeAll };
  } catch (error) {
    await closeAll();
    throw error;
  }
}

/** Builds the services and returns the one HTTP app to listen with; `onClose` collects the shutdown steps. */
async function startService(
  name: ServiceName,
  config: Config,
  logger: Logger,
  onClose: (close: () => Promise<void>) => void,
): Promise<FastifyInstance> {
  const withBroker = async () => {
    const broker = await openBroker(config, logger);
    onClose(() => broker.close());
    return broker;
  };
  const withBlobs = async () => {
    const { blobs, close } = await openBlobStore(config, logger);
    onClose(close);
    return blobs;
  };
  const withMailer = async () => {
    const mailer = await openMailer(config, logger);
    onClose(() => mailer.close());
    return mailer;
  };
  // One metrics registry per service; `serve all` has the process metrics once (service="all").
  const registries: ServiceMetrics[] = [];
  const metricsFor = (service: string) => {
    const metrics = createServiceMetrics(service, { processMetrics: name !== "all" });
    registries.push(metrics);
    return metrics;
  };
  const withDatabase = <DB>(service: string) => {
    const db = openServiceDatabase<DB>(config, service);
    onClose(() => db.destroy());
    return db;
  };
  const auth = async () => {
    // In one process auth listens on no port: only the gateway reaches it (in-process, from
    // loopback), so the client address it forwards is believed.
    const authConfig = name === "all" ? { ...config, trustProxy: ["127.0.0.1"] } : config;
    const service = await createAuthService(authConfig, {
      logger: logger.child({ service: "auth" }),
      db: withDatabase<AuthDatabase>("auth"),
      metrics: metricsFor("auth"),
    });
    onClose(() => service.close());
    return service.app;
  };
  const converter = async (broker: Broker, blobs: BlobStore, metrics: ServiceMetrics) => {
    const ffmpeg = await locateFfmpeg(config.ffmpeg.path);
    logger.info({ path: ffmpeg.path, source: ffmpeg.source, version: ffmpeg.version }, "using ffmpeg");
    const worker = createConverter(config, {
      logger: logger.child({ service: "converter" }),
      broker,
      blobs,
      ffmpegPath: ffmpeg.path,
      metrics,
    });
    await worker.start();
    onClose(() => worker.close());
  };
  const notifier = async (broker: Broker, metrics: ServiceMetrics) => {
    const mailer = await withMailer();
    const worker = createNotifier(config, {
      logger: logger.child({ service: "notification" }),
      broker,
      mailer,
      db: withDatabase<NotificationDatabase>("notification"),
      metrics,
    });
    await worker.start();
    onClose(() => worker.close());
    return mailer;
  };
  const gateway = async (broker: Broker, blobs: BlobStore, authFetch: ServiceFetch) => {
    const metrics = metricsFor("gateway");
    // `serve all`: the gateway's /metrics is the whole process's.
    if (name === "all") {
      for (const other of [createServiceMetrics("all"), ...registries]) metrics.include(other);
    }
    const service = await createGatewayService(config, {
      logger: logger.child({ service: "gateway" }),
      db: withDatabase<GatewayDatabase>("gateway"),
      broker,
      blobs,
      authFetch,
      metrics,
    });
    await service.start();
    onClose(() => service.close());
    return service.app;
  };

  switch (name) {
    case "auth":
      return auth();
    case "gateway": {
      if (!config.authServiceAddress) {
        throw new ConfigError(
          "Missing environment variable AUTH_SVC_ADDRESS: `serve gateway` needs the auth service's address",
        );
      }
      const broker = await withBroker();
      return gateway(broker, await withBlobs(), httpServiceFetch(config.authServiceAddress));
    }
    case "converter": {
      const broker = await withBroker();
      const blobs = await withBlobs();
      const metrics = metricsFor("converter");
      await converter(broker, blobs, metrics);
      return workerHttp(logger, metrics, config.metricsToken, onClose, [
        { name: "broker", check: () => broker.check() },
        { name: "blobs", check: () => blobs.check() },
      ]);
    }
    case "notification": {
      const broker = await withBroker();
      const metrics = metricsFor("notification");
      const mailer = await notifier(broker, metrics);
      return workerHttp(logger, metrics, config.metricsToken, onClose, [
        { name: "broker", check: () => broker.check() },
        { name: "mail", check: () => mailer.check() },
      ]);
    }
    case "all": {
      // One process: the gateway reaches auth by inject(), the workers share the broker.
      const broker = await withBroker();
      const blobs = await withBlobs();
      const authApp = await auth();
      await authApp.ready();
      await notifier(broker, metricsFor("notification"));
      await converter(broker, blobs, metricsFor("converter"));
      return gateway(broker, blobs, injectServiceFetch(authApp));
    }
  }
}

/** Workers answer health checks (Kubernetes probes) and metrics over HTTP, nothing else. */
async function workerHttp(
  logger: Logger,
  metrics: ServiceMetrics,
  metricsToken: string | undefined,
  onClose: (close: () => Promise<void>) => void,
  checks: ReadinessCheck[],
): Promise<FastifyInstance> {
  const app = await createHttpServer(logger, { metrics, metricsToken });
  registerHealthRoutes(app, checks);
  onClose(() => app.close());
  return app;
}
