import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { pino } from "pino";
import { failedMessage, jobId, mp3Id, readyMessage } from "../../test/support/mp3-messages.ts";
import type { Broker, DeadLetter } from "../platform/broker/broker.ts";
import { createMemoryBroker } from "../platform/broker/memory-broker.ts";
import { loadConfig } from "../platform/config.ts";
import { openDatabase } from "../platform/database.ts";
import type { Mailer } from "../platform/mail/mailer.ts";
import { createOutboxMailer, readOutboxMail } from "../platform/mail/outbox-mailer.ts";
import { UnavailableError } from "../platform/unavailable.ts";
import type { NotificationDatabase } from "./sent-mails.ts";
import { createNotifier, type Notifier } from "./service.ts";

const logger = pino({ level: "silent" });
const done = readyMessage();
const failed = failedMessage();

async function eventually<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 3000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

describe("notifier", () => {
  let dir: string;
  let broker: Broker;
  let notifier: Notifier | undefined;

  const config = () =>
    loadConfig({
      DATA_DIR: dir,
      PUBLIC_URL: "https://mp3.example/",
      RETRY_DELAY_MS: "5",
      MAX_ATTEMPTS: "3",
      MAIL_MAX_ATTEMPTS: "2",
    });

  const database = () => {
    const db = openDatabase<NotificationDatabase>({ sqliteFile: path.join(dir, "notification.sqlite") });
    databases.push(db);
    return db;
  };
  const databases: { destroy(): Promise<void> }[] = [];

  async function startWith(mailer: Mailer): Promise<void> {
    notifier = createNotifier(config(), { logger, broker, mailer, db: database() });
    await notifier.start();
  }

  const outbox = () => path.join(dir, "outbox");
  const outboxMailer = () => createOutboxMailer({ dir: outbox(), from: "vid2mp3 <no@vid2mp3.test>", logger });
  /** The finished mails (a mail being written is a hidden temp file until it is renamed into place). */
  const mailFiles = async () =>
    (await readdir(outbox()).catch(() => []))
      .filter((name) => name.endsWith(".eml") && !name.startsWith("."))
      .sort();

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "notifier-"));
    broker = createMemoryBroker({ logger });
  });
  afterEach(async () => {
    await notifier?.close();
    notifier = undefined;
    await broker.close();
    for (const db of databases.splice(0)) await db.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  it("mails the owner a link to the finished MP3", async () => {
    await startWith(outboxMailer());
    await broker.publish("mp3", done);

    const file = path.join(outbox(), `${jobId}-ready.eml`);
    const mail = await eventually(() => readOutboxMail(file).catch(() => undefined));
    assert.equal(mail.headers.get("to"), "ada@example.com");
    assert.equal(mail.headers.get("subject"), "Your MP3 is ready: holiday.mp4");
    assert.ok(mail.text?.includes(`https://mp3.example/?fid=${mp3Id}`), mail.text);
    assert.ok(mail.text?.includes(`/download?fid=${mp3Id}`), mail.text);
    assert.ok(mail.html?.includes(`href="https://mp3.example/?fid=${mp3Id}"`), mail.html);
  });

  it("mails the owner why a conversion failed", async () => {
    await startWith(outboxMailer());
    await broker.publish("mp3", failed);

    const file = path.join(outbox(), `${jobId}-failed.eml`);
    const mail = await eventually(() => readOutboxMail(file).catch(() => undefined));
    assert.equal(mail.headers.get("subject"), "Your conversion failed: holiday.mp4");
    assert.match(mail.text ?? "", /The file has no audio track\./);
  });

  it("links to the local gateway when PUBLIC_URL is unset", async () => {
    notifier = createNotifier(loadConfig({ DATA_DIR: dir, PORT: "9123" }), {
      logger,
      broker,
      mailer: outboxMailer(),
      db: database(),
    });
    await notifier.start();
    await broker.publish("mp3", done);
    const mail = await eventually(() =>
      readOutboxMail(path.join(outbox(), `${jobId}-ready.eml`)).catch(() => undefined),
    );
    assert.ok(mail.text?.includes(`http://localhost:9123/?fid=${mp3Id}`), mail.text);
  });

  it("dead-letters a malformed message and keeps working", async () => {
    const dead: DeadLetter[] = [];
    await broker.consume<DeadLetter>(
      "mp3.dead",
      async ({ body }) => {
        dead.push(body);
      },
      { parse: (body) => body as DeadLetter, concurrency: 1 },
    );
    await startWith(outboxMailer());

    await broker.publish("mp3", { version: 1, outcome: "done", jobId: "not-a-uuid" });
    await broker.publish("mp3", failed);

    await eventually(async () => ((await mailFiles()).length > 0 ? true : undefined));
    const letter = await eventually(() => dead[0]);
    assert.equal(letter.queue, "mp3");
    assert.match(letter.reason, /invalid message/);
    assert.deepEqual(await mailFiles(), [`${jobId}-failed.eml`]);
  });

  it("retries a failed send, and a redelivered message leaves one mail", async () => {
    const real = outboxMailer();
    let calls = 0;
    // The mail is written but the send "fails" afterwards, as when a crash loses the ack.
    const flaky: Mailer = {
      ...real,
      async send(mail) {
        await real.send(mail);
        calls++;
        if (calls === 1) throw new Error("connection reset");
      },
    };
    await startWith(flaky);

    await broker.publish("mp3", done);
    await eventually(() => (calls >= 2 ? true : undefined));
    assert.deepEqual(await mailFiles(), [`${jobId}-ready.eml`]);
  });

  it("sends a job's mail once however often its message comes, also after a restart", async () => {
    const real = outboxMailer();
    const sent: string[] = [];
    const counting: Mailer = {
      ...real,
      async send(mail) {
        await real.send(mail);
        sent.push(mail.id);
      },
    };
    await startWith(counting);
    await broker.publish("mp3", done);
    await eventually(() => (sent.length >= 1 ? true : undefined));
    // The same outcome again, as at-least-once delivery allows (two converters reporting it, a lost ack).
    await broker.publish("mp3", done);
    await broker.publish("mp3", done);
    await notifier?.close();
    // A new process on the same store remembers it too.
    await startWith(counting);
    await broker.publish("mp3", done);
    await broker.publish("mp3", failed);
    await eventually(() => (sent.length >= 2 ? true : undefined));
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(sent, [`${jobId}-ready`, `${jobId}-failed`]);
  });

  it("waits out an unreachable mail server without using up the message's attempts", async () => {
    const real = outboxMailer();
    let outages = 0;
    const down: Mailer = {
      ...real,
      async send(mail) {
        // More failures than MAIL_MAX_ATTEMPTS (2): an outage must not dead-letter the mail.
        if (outages < 3) {
          outages++;
          throw new UnavailableError("mail", "SMTP server not reachable");
        }
        await real.send(mail);
      },
    };
    await startWith(down);
    await broker.publish("mp3", done);
    await eventually(async () => ((await mailFiles()).length > 0 ? true : undefined), 20_000);
    assert.equal(outages, 3);
    assert.deepEqual(await mailFiles(), [`${jobId}-ready.eml`]);
  });
});
