import type { ServiceMetrics } from "../platform/metrics.ts";

export interface NotifierMetrics {
  /** `kind`: the mail's template, `ready` or `failed` (the conversion failed). */
  mailSent(kind: "ready" | "failed"): void;
  /** Sending failed; the message is redelivered later. */
  mailFailed(): void;
}

export function createNotifierMetrics(metrics: ServiceMetrics): NotifierMetrics {
  const sent = metrics.counter<"kind">({
    name: "vid2mp3_mails_sent_total",
    help: "Mails handed to the mailer (SMTP or outbox), by kind: ready (MP3 ready), failed (conversion failed).",
    labelNames: ["kind"],
    initial: [{ kind: "ready" }, { kind: "failed" }],
  });
  const failed = metrics.counter({
    name: "vid2mp3_mail_failures_total",
    help: "Attempts to send a mail that failed (each is retried later, up to MAX_ATTEMPTS).",
  });
  return {
    mailSent: (kind) => sent.inc({ kind }),
    mailFailed: () => failed.inc(),
  };
}
