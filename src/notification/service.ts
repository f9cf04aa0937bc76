import { Mp3Message, parseWith } from "../contracts/messages.ts";
import type { Broker, Consumer } from "../platform/broker/broker.ts";
import type { Config } from "../platform/config.ts";
import type { Logger } from "../platform/logger.ts";
import type { Mailer } from "../platform/mail/mailer.ts";
import { createServiceMetrics, type ServiceMetrics } from "../platform/metrics.ts";
import { createNotifierMetrics } from "./metrics.ts";
import { renderMail } from "./templates.ts";

export interface Notifier {
  start(): Promise<void>;
  /** Stops taking messages and waits for the mails in hand; the mailer stays open (the caller owns it). */
  close(): Promise<void>;
}

/** Mails handled at once: sending is I/O-bound, a few in flight keep a slow SMTP server from piling up work. */
const concurrency = 4;

/**
 * The notification service: consumes the converter's `MP3_QUEUE` and mails the owner how the
 * conversion ended. A mailer failure throws, so the broker redelivers after a delay; redelivery is
 * harmless because a mail's id is fixed by its job (`<jobId>-ready` / `<jobId>-failed`).
 */
export function createNotifier(
  config: Config,
  deps: {
    logger: Logger;
    broker: Broker;
    mailer: Mailer;
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
  let consumer: Consumer | undefined;

  return {
    async start() {
      if (consumer) return;
      consumer = await broker.consume<Mp3Message>(
        config.queues.mp3,
        async ({ body, attempt }) => {
          const mail = renderMail(body, publicUrl);
          try {
            await mailer.send(mail);
          } catch (error) {
            logger.warn({ err: error, jobId: body.jobId, mailId: mail.id, attempt }, "sending mail failed");
            metrics.mailFailed();
            throw error;
          }
          metrics.mailSent(body.outcome === "done" ? "ready" : "failed");
          logger.info({ jobId: body.jobId, mailId: mail.id, outcome: body.outcome }, "owner notified");
        },
        {
          parse: parseWith(Mp3Message),
          concurrency,
          maxAttempts: config.retry.maxAttempts,
          retryDelayMs: config.retry.delayMs,
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
