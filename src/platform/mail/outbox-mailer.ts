import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Readable } from "node:stream";
import { createTransport } from "nodemailer";
import { errorMessage } from "../error-message.ts";
import type { Logger } from "../logger.ts";
import type { Mailer } from "./mailer.ts";
import { assertSafeMailId, buildMessage } from "./message.ts";

/**
 * The embedded mail backend: instead of talking SMTP, every mail is rendered to a complete
 * RFC 5322 message and stored as `<dir>/<mail.id>.eml`, which any mail client opens.
 *
 * Writes are atomic (temp file + rename), so a reader never sees half a mail, and keyed by the mail
 * id, so a redelivered queue message overwrites its mail instead of adding a second one.
 */
export function createOutboxMailer(options: { dir: string; from: string; logger: Logger }): Mailer {
  const { dir, from, logger } = options;
  // Rendering only: the stream transport hands back the finished message instead of sending it.
  const renderer = createTransport({ streamTransport: true, buffer: true });

  return {
    async send(mail) {
      const info = await renderer.sendMail(buildMessage(mail, from));
      const file = path.join(dir, `${mail.id}.eml`);
      try {
        await writeAtomically(file, info.message);
      } catch (error) {
        throw new Error(`could not write mail ${mail.id} to the outbox ${dir}: ${errorMessage(error)}`, {
          cause: error,
        });
      }
      logger.info({ to: mail.to, subject: mail.subject, file }, "mail written to outbox");
    },

    async check() {
      await mkdir(dir, { recursive: true });
      await access(dir, constants.W_OK);
    },

    async close() {
      renderer.close();
    },
  };
}

export { assertSafeMailId };

async function writeAtomically(file: string, content: Buffer | Readable): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  // A dot name that does not end in `.eml`, so nothing reading the outbox takes it for a mail.
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    await writeFile(temp, content, { flush: true });
    await rename(temp, file);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** A mail read back from the outbox: decoded headers and both bodies. */
export interface OutboxMail {
  /** Header names in lower case, values unfolded and decoded (RFC 2047). */
  headers: Map<string, string>;
  text: string | undefined;
  html: string | undefined;
}

/**
 * Reads back an `.eml` this outbox wrote (tests, the end-to-end suite, someone debugging): enough
 * MIME for what nodemailer produces here — one level of multipart, quoted-printable or base64.
 */
export async function readOutboxMail(file: string): Promise<OutboxMail> {
  const raw = (await readFile(file)).toString("latin1");
  const { headers, body } = splitEntity(raw);
  const mail: OutboxMail = { headers, text: undefined, html: undefined };
  const type = headers.get("content-type") ?? "text/plain";
  const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1];
  const parts = boundary ? multipartBodies(body, boundary).map(splitEntity) : [{ headers, body }];
  for (const part of parts) {
    const partType = (part.headers.get("content-type") ?? "text/plain").toLowerCase();
    const content = decodeBody(part.body, part.headers.get("content-transfer-encoding"));
    if (partType.startsWith("text/plain")) mail.text = content;
    else if (partType.startsWith("text/html")) mail.html = content;
  }
  return mail;
}

function splitEntity(raw: string): { headers: Map<string, string>; body: string } {
  const end = /\r?\n\r?\n/.exec(raw);
  const head = end ? raw.slice(0, end.index) : raw;
  const body = end ? raw.slice(end.index + end[0].length) : "";
  const headers = new Map<string, string>();
  for (const line of head.replace(/\r?\n[ \t]+/g, " ").split(/\r?\n/)) {
    const colon = line.indexOf(":");
    if (colon > 0)
      headers.set(line.slice(0, colon).trim().toLowerCase(), decodeWords(line.slice(colon + 1).trim()));
  }
  return { headers, body };
}

function multipartBodies(body: string, boundary: string): string[] {
  const delimiter = `--${boundary}`;
  return body
    .split(new RegExp(`\\r?\\n?${escapeRegExp(delimiter)}(?:--)?[ \\t]*\\r?\\n?`))
    .slice(1, -1)
    .filter((part) => part.trim() !== "");
}

function decodeBody(body: string, encoding: string | undefined): string {
  switch (encoding?.toLowerCase()) {
    case "base64":
      return Buffer.from(body.replace(/\s+/g, ""), "base64").toString("utf8");
    case "quoted-printable":
      return decodeQuotedPrintable(body);
    default:
      return Buffer.from(body, "latin1").toString("utf8");
  }
}

function decodeQuotedPrintable(body: string): string {
  const softBreaksRemoved = body.replace(/=\r?\n/g, "");
  const bytes: number[] = [];
  for (let i = 0; i < softBreaksRemoved.length; i++) {
    const hex = softBreaksRemoved.slice(i + 1, i + 3);
    if (softBreaksRemoved[i] === "=" && /^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(Number.parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(softBreaksRemoved.charCodeAt(i));
    }
  }
  return Buffer.from(bytes).toString("utf8");
}

/** RFC 2047 encoded words (`=?UTF-8?Q?...?=`); whitespace between adjacent words is dropped. */
function decodeWords(value: string): string {
  return value
    .replace(/(=\?[^?]+\?[QqBb]\?[^?]*\?=)\s+(?==\?)/g, "$1")
    .replace(/=\?([^?]+)\?([QqBb])\?([^?]*)\?=/g, (_, _charset: string, kind: string, text: string) =>
      kind.toUpperCase() === "B"
        ? Buffer.from(text, "base64").toString("utf8")
        : decodeQuotedPrintable(text.replaceAll("_", " ")),
    );
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
