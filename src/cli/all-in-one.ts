import path from "node:path";
import { type AuthDatabase, createAuthService } from "../auth/service.ts";
import { createConverter } from "../converter/service.ts";
import type { GatewayDatabase } from "../gateway/jobs.ts";
import { createGatewayService } from "../gateway/service.ts";
import { createNotifier } from "../notification/service.ts";
import { createFolderBlobStore } from "../platform/blobs/folder-blob-store.ts";
import { createMemoryBroker } from "../platform/broker/memory-broker.ts";
import type { Config } from "../platform/config.ts";
import { openDatabase } from "../platform/database.ts";
import { locateFfmpeg } from "../platform/ffmpeg.ts";
import type { Logger } from "../platform/logger.ts";
import { createOutboxMailer } from "../platform/mail/outbox-mailer.ts";
import { injectServiceFetch } from "../platform/service-fetch.ts";

export interface RunningSystem {
  url: string;
  close(): Promise<void>;
}

/**
 * The embedded mode: the four services in one process on the embedded backends (SQLite files,
 * a blob folder, the in-process broker, an outbox folder), all under DATA_DIR. Only the gateway
 * listens; it reaches auth through `inject()` and the workers through the in-process broker.
 */
export async function startAllInOne(config: Config, logger: Logger): Promise<RunningSystem> {
  const dataFile = (...parts: string[]) => path.join(config.dataDir, ...parts);
  const ffmpeg = await locateFfmpeg(config.ffmpeg.path);
  logger.info({ path: ffmpeg.path, source: ffmpeg.source, version: ffmpeg.version }, "using ffmpeg");

  const broker = createMemoryBroker({ logger: logger.child({ component: "broker" }) });
  const blobs = createFolderBlobStore(dataFile("blobs"));
  const mailer = createOutboxMailer({
    dir: dataFile("outbox"),
    from: config.mailFrom,
    logger: logger.child({ service: "notification" }),
  });
  const authDb = openDatabase<AuthDatabase>({ sqliteFile: dataFile("auth.sqlite") });
  const gatewayDb = openDatabase<GatewayDatabase>({ sqliteFile: dataFile("gateway.sqlite") });

  const auth = await createAuthService(config, {
    logger: logger.child({ service: "auth" }),
    db: authDb,
  });
  await auth.app.ready();
  const gateway = await createGatewayService(config, {
    logger: logger.child({ service: "gateway" }),
    db: gatewayDb,
    broker,
    blobs,
    authFetch: injectServiceFetch(auth.app),
  });
  const converter = createConverter(config, {
    logger: logger.child({ service: "converter" }),
    broker,
    blobs,
    ffmpegPath: ffmpeg.path,
  });
  const notifier = createNotifier(config, {
    logger: logger.child({ service: "notification" }),
    broker,
    mailer,
  });

  await notifier.start();
  await converter.start();
  await gateway.start();
  const url = await gateway.app.listen({ host: config.host, port: config.port ?? 8080 });

  return {
    url,
    async close() {
      // Stop taking requests, then let the workers finish what they hold, then the backends.
      await gateway.close();
      await converter.close();
      await notifier.close();
      await auth.close();
      await broker.close();
      await mailer.close();
      await Promise.all([authDb.destroy(), gatewayDb.destroy()]);
    },
  };
}
