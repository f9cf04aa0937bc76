import type { Kysely } from "kysely";
import { Mp3Message, parseWith } from "../contracts/messages.ts";
import type { Broker, Consumer } from "../platform/broker/broker.ts";
import type { Config } from "../platform/config.ts";
import { migrateToLatest } from "../platform/database.ts";
import type { Logger } from "../platform/logger.ts";
import type { Mailer } from "../platform/mail/mailer.ts";
import { createServiceMetrics, type ServiceMetrics } from "../platform/metrics.ts";
import { createNotifierMetrics } from "./metrics.ts";
import {
  createSentMails,
  NOTIFICATION_MIGRATION_TABLE,
  type NotificationDatabase,
  notificationMigrations,
} from "./sent-mails.ts";
import { renderMail } from "./templates.ts";

export interface Notifier {
  start(): Promise<void>;
  /** Stops taking messages and waits for the mails in hand; the mailer stays open (the caller owns it). */
  close(): Promise<void>;
}

/** Mails handled at once: sending is I/O-bound, a few in flight keep a slow SMTP server from piling up work. */
const concurrency = 4;

/** The notification reads only these settings of the configuration: all it can depend on. */
export type NotifierConfig = Pick<Config, "port" | "publicUrl" | "queues" | "retry">;

/**
 * The notification service: consumes the converter's `MP3_QUEUE` and mails the owner how the
 * conversion ended, once: a mail's id is fixed by its job (`<jobId>-ready` / `<jobId>-failed`) and
 * its own database remembers the ids it sent (sent-mails.ts). A mailer failure throws, so the
 * broker redelivers after a delay (an unreachable mail server is waited out without using up
 * attempts; other failures are tried `MAIL_MAX_ATTEMPTS` times, over hours with the defaults).
 */
export function createNotifier(
  config: NotifierConfig,
  deps: {
    logger: Logger;
    broker: Broker;
    mailer: Mailer;
    /** Its own database, for the record of sent mails (migrated at start). */
    db: Kysely<NotificationDatabase>;
    /** Where its metrics go (the worker's `/metrics`); by default a registry nobody reads. */
    metrics?: ServiceMetrics;
  },
): Notifier {
  const { broker, mailer } = deps;
  const metrics = createNotifierMetrics(
    deps.metrics ?? createServiceMetrics("notification", { processMetrics: false }),
  );
  const logger = deps.logger.child({ component: "notifier" });
  // Links in mails need an address the user's browser reaches; without PUBLIC_URL, the local gateway.
  const publicUrl = config.publicUrl ?? `http://localhost:${config.port ?? 8080}`;
  const sentMails = createSentMails(deps.db);
  let consumer: Consumer | undefined;

  async function notify(body: Mp3Message, attempt: number): Promise<void> {
    const mail = renderMail(body, publicUrl);
    const log = logger.child({ jobId: body.jobId, mailId: mail.id });
    const claim = await sentMails.claim(mail.id);
    if (claim === "already sent") {
      log.info("mail already sent for this job; not sending it again");
      return;
    }
    if (claim === "being sent elsewhere") {
      // Another delivery of the same outcome is sending it right now: look again later.
      throw new Error(`mail ${mail.id} is being sent by another delivery`);
    }
    try {
      await mailer.send(mail);
    } catch (error) {
      log.warn({ err: error, attempt }, "sending mail failed");
      metrics.mailFailed();
      await sentMails.release(mail.id).catch((releaseError: unknown) => {
        log.warn({ err: releaseError }, "could not release the mail's claim; it expires by itself");
      });
      throw error;
    }
    await sentMails.markSent(mail.id);
    metrics.mailSent(body.outcome === "done" ? "ready" : "failed");
    log.info({ outcome: body.outcome }, "owner notified");
  }

  return {
    async start() {
      if (consumer) return;
      await migrateToLatest(deps.db, notificationMigrations, { table: NOTIFICATION_MIGRATION_TABLE });
      consumer = await broker.consume<Mp3Message>(
        config.queues.mp3,
        ({ body, attempt }) => notify(body, attempt),
        {
          parse: parseWith(Mp3Message),
          concurrency,
          maxAttempts: config.retry.mailMaxAttempts,
          retryDelayMs: config.retry.delayMs,
          maxRetryDelayMs: config.retry.maxDelayMs,
        },
      );
      logger.info({ queue: config.queues.mp3, publicUrl }, "notifier consuming");
    },

    async close() {
      const current = consumer;
      consumer = undefined;
      await current?.close();
    },
  };
}
