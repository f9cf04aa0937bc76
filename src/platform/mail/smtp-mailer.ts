import { createTransport } from "nodemailer";
import { errorMessage } from "../error-message.ts";
import type { Logger } from "../logger.ts";
import { UnavailableError } from "../unavailable.ts";
import type { Mailer } from "./mailer.ts";
import { buildMessage } from "./message.ts";

/**
 * The distributed mail backend: SMTP through nodemailer, over a small pool of kept-open
 * connections. The URL carries everything about the server:
 * `smtp://user:pass@host:587` (STARTTLS when the server offers it), `smtps://…:465` (TLS from the
 * first byte), credentials percent-encoded, nodemailer options as query parameters
 * (`?tls.rejectUnauthorized=false` for a self-signed test server).
 *
 * A failed send throws: retrying is the broker's job (the notification's message is redelivered
 * with a delay), so one mail is never retried in two places at once. A server that cannot be
 * reached (or says it is shutting down, 421) throws an `UnavailableError`: waited out, not counted
 * against the message.
 */
export function createSmtpMailer(options: { url: string; from: string; logger: Logger }): Mailer {
  const { from, logger } = options;
  const server = describeServer(options.url);
  const transporter = createTransport({
    pool: true,
    url: options.url,
    // Mails are few (one per conversion): two connections are plenty, and a server restarted by
    // its operator gets fresh ones after at most 100 mails or 4 idle minutes.
    maxConnections: 2,
    maxMessages: 100,
    // Reaching the server, its greeting, and silence on an open connection.
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 60_000,
    dnsTimeout: 10_000,
  });

  return {
    async send(mail) {
      const message = buildMessage(mail, from);
      try {
        const info = await transporter.sendMail(message);
        logger.info(
          { to: mail.to, subject: mail.subject, messageId: info.messageId, response: info.response },
          "mail sent",
        );
      } catch (error) {
        const message = `could not send mail ${mail.id} to ${mail.to} through ${server}: ${errorMessage(error)}`;
        if (isUnreachable(error)) throw new UnavailableError("mail", message, { cause: error });
        throw new Error(message, { cause: error });
      }
    },

    async check() {
      try {
        await transporter.verify();
      } catch (error) {
        throw new Error(`SMTP server ${server} is not usable: ${errorMessage(error)}`, { cause: error });
      }
    },

    async close() {
      transporter.close();
    },
  };
}

/** nodemailer's codes for a server that could not be reached or went away mid-conversation. */
const unreachableCodes = new Set([
  "ECONNECTION",
  "ETIMEDOUT",
  "ESOCKET",
  "EDNS",
  "ECONNREFUSED",
  "ECONNRESET",
]);

function isUnreachable(error: unknown): boolean {
  const { code, responseCode } = (error ?? {}) as { code?: unknown; responseCode?: unknown };
  return (typeof code === "string" && unreachableCodes.has(code)) || responseCode === 421;
}

/** `smtp://host:port` without the credentials, for messages and logs. */
function describeServer(url: string): string {
  const parsed = new URL(url);
  const port = parsed.port || (parsed.protocol === "smtps:" ? "465" : "587");
  return `${parsed.protocol}//${parsed.hostname}:${port}`;
}
