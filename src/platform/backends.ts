import path from "node:path";
import type { Kysely } from "kysely";
import type { BlobStore } from "./blobs/blob-store.ts";
import { createFolderBlobStore } from "./blobs/folder-blob-store.ts";
import type { Broker } from "./broker/broker.ts";
import { createMemoryBroker } from "./broker/memory-broker.ts";
import type { Config } from "./config.ts";
import { openDatabase } from "./database.ts";
import type { Logger } from "./logger.ts";
import type { Mailer } from "./mail/mailer.ts";
import { createOutboxMailer } from "./mail/outbox-mailer.ts";

/**
 * The one place that picks each backend from the configuration: the distributed one when its
 * variable is set, else the embedded default under DATA_DIR. Distributed adapters are imported
 * only when chosen, so the embedded mode never loads the AWS SDK or amqplib.
 */

export function describeBackends(config: Config): Record<string, string> {
  return {
    database: config.databaseUrl ? "mysql" : "sqlite",
    broker: config.amqpUrl ? "rabbitmq" : "in-process",
    blobs: config.s3 ? `s3 bucket ${config.s3.bucket}` : "folder",
    mail: config.smtpUrl ? "smtp" : "outbox folder",
  };
}

/** A service's own database: MySQL/MariaDB when configured, else `<DATA_DIR>/<service>.sqlite`. */
export function openServiceDatabase<DB>(config: Config, service: string): Kysely<DB> {
  return openDatabase<DB>({
    url: config.databaseUrl,
    sqliteFile: path.join(config.dataDir, `${service}.sqlite`),
  });
}

export async function openBroker(config: Config, logger: Logger): Promise<Broker> {
  const brokerLogger = logger.child({ component: "broker" });
  if (!config.amqpUrl) return createMemoryBroker({ logger: brokerLogger });
  const { createRabbitMqBroker } = await import("./broker/rabbitmq-broker.ts");
  return createRabbitMqBroker({ url: config.amqpUrl, logger: brokerLogger });
}

/** The blob store, ready to use (an S3 bucket is created if missing), with what closes it. */
export async function openBlobStore(
  config: Config,
  logger: Logger,
): Promise<{ blobs: BlobStore; close(): Promise<void> }> {
  if (!config.s3)
    return { blobs: createFolderBlobStore(path.join(config.dataDir, "blobs")), close: async () => {} };
  const { createS3BlobStore } = await import("./blobs/s3-blob-store.ts");
  const store = createS3BlobStore({ ...config.s3, logger: logger.child({ component: "blobs" }) });
  await store.ensureBucket();
  return { blobs: store, close: async () => store.close() };
}

export async function openMailer(config: Config, logger: Logger): Promise<Mailer> {
  const mailLogger = logger.child({ component: "mailer" });
  if (!config.smtpUrl) {
    return createOutboxMailer({
      dir: path.join(config.dataDir, "outbox"),
      from: config.mailFrom,
      logger: mailLogger,
    });
  }
  const { createSmtpMailer } = await import("./mail/smtp-mailer.ts");
  return createSmtpMailer({ url: config.smtpUrl, from: config.mailFrom, logger: mailLogger });
}
