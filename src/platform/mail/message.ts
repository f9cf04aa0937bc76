import type { SendMailOptions } from "nodemailer";
import addressparser from "nodemailer/lib/addressparser";
import type { Mail } from "./mailer.ts";

/**
 * What every mailer sends for a `Mail`, whatever carries it (an outbox file, SMTP): the same
 * headers, so a mail looks the same in a test's outbox and in a user's inbox.
 */
export function buildMessage(mail: Mail, from: string): SendMailOptions {
  assertSafeMailId(mail.id);
  assertRecipient(mail.to);
  return {
    from,
    to: mail.to,
    subject: mail.subject,
    text: mail.text,
    html: mail.html,
    // Derived from the mail id so that the copies of a re-sent mail are recognisably one mail
    // (clients and list software drop duplicates by Message-ID).
    messageId: messageIdFor(mail.id, from),
    date: new Date(),
    // RFC 3834: an automatic notification, so auto-responders stay quiet.
    headers: { "Auto-Submitted": "auto-generated" },
  };
}

/** `<mail id@domain of the sender>`. */
export function messageIdFor(id: string, from: string): string {
  return `<${id}@${domainOf(from)}>`;
}

/**
 * Mail ids become file names (outbox) and Message-IDs (SMTP): a strict alphabet keeps them from
 * leaving the folder, hiding, or breaking out of the header.
 */
const safeMailId = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

export function assertSafeMailId(id: string): void {
  if (!safeMailId.test(id) || id.includes("..")) {
    throw new Error(`unsafe mail id ${JSON.stringify(id)}: use letters, digits, '.', '_' and '-' only`);
  }
}

/**
 * Exactly one plain address (`local@domain`), optionally with a display name. Anything else
 * (several addresses, a group, no domain, control characters) is refused before sending, the same
 * way by every mailer, instead of being mangled or bounced later.
 */
export function assertRecipient(to: string): void {
  const parsed = /[\r\n\0]/.test(to) ? [] : addressparser(to);
  const address = parsed.length === 1 && !parsed[0]?.group ? parsed[0]?.address : undefined;
  if (
    !address ||
    !/^[^\s@"<>(),;:\\[\]]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$/.test(
      address,
    )
  ) {
    throw new Error(
      `invalid recipient address ${JSON.stringify(to)}: expected one address like name@example.com`,
    );
  }
}

function domainOf(from: string): string {
  const first = addressparser(from, { flatten: true })[0];
  const domain = first?.address?.split("@")[1];
  return domain && /^[A-Za-z0-9.-]+$/.test(domain) ? domain : "vid2mp3.localhost";
}
