import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, it } from "node:test";
import { simpleParser } from "mailparser";
import { pino } from "pino";
import { mailerContract } from "../../../test/support/contracts/mailer.ts";
import type { Mail } from "./mailer.ts";
import { createOutboxMailer, readOutboxMail } from "./outbox-mailer.ts";

const from = "vid2mp3 <no-reply@vid2mp3.example>";

mailerContract("outbox mailer", async () => {
  const root = await mkdtemp(path.join(tmpdir(), "outbox-contract-"));
  const dir = path.join(root, "outbox");
  return {
    mailer: createOutboxMailer({ dir, from, logger: pino({ level: "silent" }) }),
    from,
    async received() {
      const files = await readdir(dir).catch(() => []);
      const mails = files.filter((name) => name.endsWith(".eml"));
      return Promise.all(mails.map(async (name) => simpleParser(await readFile(path.join(dir, name)))));
    },
    async breakBackend() {
      // A file where the folder should be: nothing can be written there.
      await rm(dir, { recursive: true, force: true });
      await writeFile(dir, "");
    },
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

function capturingLogger(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { logger, lines };
}

const mail = (overrides: Partial<Mail> = {}): Mail => ({
  id: "3f0c4c1e-8d2a-4a57-9a41-2b7d0d1c9e11-ready",
  to: "ada@example.com",
  subject: "Your MP3 is ready: Vidéo été.mp4",
  text: `Download it: https://mp3.example/?fid=0b9f1c1e-1111-4a57-9a41-2b7d0d1c9e11\n${"long line ".repeat(20)}`,
  html: '<p><a href="https://mp3.example/?fid=0b9f1c1e-1111-4a57-9a41-2b7d0d1c9e11">Download</a> été</p>',
  ...overrides,
});

describe("outbox mailer", () => {
  let root: string;
  let dir: string;

  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), "outbox-"));
    // Not created yet: the mailer makes it.
    dir = path.join(root, "nested", "outbox");
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("writes a complete multipart message that parses back", async () => {
    const { logger, lines } = capturingLogger();
    const mailer = createOutboxMailer({ dir, from, logger });
    const sent = mail();
    await mailer.send(sent);

    const file = path.join(dir, `${sent.id}.eml`);
    const raw = await readFile(file, "latin1");
    assert.match(raw, /\r\n\r\n/, "CRLF line ends as RFC 5322 wants");
    assert.match(raw, /^Content-Type: multipart\/alternative;/m);

    const parsed = await readOutboxMail(file);
    assert.equal(parsed.headers.get("to"), "ada@example.com");
    assert.equal(parsed.headers.get("from"), from);
    assert.equal(parsed.headers.get("subject"), "Your MP3 is ready: Vidéo été.mp4");
    assert.equal(parsed.headers.get("message-id"), `<${sent.id}@vid2mp3.example>`);
    assert.equal(parsed.headers.get("auto-submitted"), "auto-generated");
    const date = Date.parse(parsed.headers.get("date") ?? "");
    assert.ok(Math.abs(Date.now() - date) < 60_000, "Date header is now");
    assert.equal(parsed.text?.trimEnd(), sent.text.trimEnd());
    assert.equal(parsed.html?.trimEnd(), sent.html);
    assert.match(parsed.text ?? "", /https:\/\/mp3\.example\/\?fid=0b9f1c1e-1111-4a57-9a41-2b7d0d1c9e11/);

    assert.deepEqual(
      lines.map(({ to, subject, file }) => ({ to, subject, file })),
      [{ to: sent.to, subject: sent.subject, file }],
    );
  });

  it("overwrites the mail when the same id is sent again", async () => {
    const mailer = createOutboxMailer({ dir, from, logger: pino({ level: "silent" }) });
    await mailer.send(mail({ subject: "first" }));
    await mailer.send(mail({ subject: "second" }));

    const files = await readdir(dir);
    assert.deepEqual(files, [`${mail().id}.eml`], "one file, no temp files left behind");
    const parsed = await readOutboxMail(path.join(dir, files[0] ?? ""));
    assert.equal(parsed.headers.get("subject"), "second");
  });

  it("rejects ids that are not safe file names and writes nothing", async () => {
    const mailer = createOutboxMailer({ dir, from, logger: pino({ level: "silent" }) });
    for (const id of ["../escape", "a/b", "", ".hidden", "..", "a..b", "x\r\ny", "a b", "a".repeat(201)]) {
      await assert.rejects(mailer.send(mail({ id })), /unsafe mail id/, `id ${JSON.stringify(id)}`);
    }
    await assert.rejects(readdir(dir), { code: "ENOENT" });
  });

  it("keeps CR/LF in a subject from injecting headers", async () => {
    const mailer = createOutboxMailer({ dir, from, logger: pino({ level: "silent" }) });
    await mailer.send(mail({ subject: "hi\r\nBcc: evil@example.com" }));
    const raw = await readFile(path.join(dir, `${mail().id}.eml`), "latin1");
    assert.doesNotMatch(raw, /^Bcc:/im);
  });

  it("check() creates the folder and fails when it cannot be written", async () => {
    const mailer = createOutboxMailer({ dir, from, logger: pino({ level: "silent" }) });
    await mailer.check();
    assert.deepEqual(await readdir(dir), []);

    // A file where the folder should be cannot hold mails.
    const blocked = path.join(root, "blocked");
    await writeFile(blocked, "");
    const broken = createOutboxMailer({ dir: blocked, from, logger: pino({ level: "silent" }) });
    await assert.rejects(broken.check());
    await mailer.close();
  });
});
