import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { pino } from "pino";
import { mailerContract } from "../../../test/support/contracts/mailer.ts";
import { type RunningSmtpServer, startSmtpServer } from "../../../test/support/smtp-server.ts";
import { UnavailableError } from "../unavailable.ts";
import type { Mail } from "./mailer.ts";
import { createSmtpMailer } from "./smtp-mailer.ts";

const from = "vid2mp3 <no-reply@vid2mp3.example>";
const silent = pino({ level: "silent" });

mailerContract("SMTP mailer (smtp-server)", async () => {
  const server = await startSmtpServer();
  return {
    mailer: createSmtpMailer({ url: server.url, from, logger: silent }),
    from,
    received: () => server.messages(),
    breakBackend: () => server.down(),
    cleanup: () => server.stop(),
  };
});

const mail = (overrides: Partial<Mail> = {}): Mail => ({
  id: `${randomUUID()}-ready`,
  to: "ada@example.com",
  subject: "Your MP3 is ready",
  text: "Download it: https://mp3.example/download?fid=1",
  html: '<p><a href="https://mp3.example/download?fid=1">Download</a></p>',
  ...overrides,
});

describe("SMTP mailer", { timeout: 30_000 }, () => {
  describe("with a server that demands AUTH", () => {
    let server: RunningSmtpServer;
    before(async () => {
      server = await startSmtpServer({ auth: { user: "mailer@vid2mp3", password: "s3cret:p@ss/word" } });
    });
    after(async () => {
      await server.stop();
    });

    it("logs in with the credentials of the URL (percent-encoded)", async () => {
      assert.match(server.url, /^smtp:\/\/mailer%40vid2mp3:s3cret%3Ap%40ss%2Fword@127\.0\.0\.1:\d+$/);
      const mailer = createSmtpMailer({ url: server.url, from, logger: silent });
      try {
        await mailer.check();
        const sent = mail();
        await mailer.send(sent);
        const got = await server.waitForMessage((m) => m.messageId === `<${sent.id}@vid2mp3.example>`);
        assert.equal(got.subject, "Your MP3 is ready");
      } finally {
        await mailer.close();
      }
    });

    it("rejects wrong credentials clearly, without printing the password", async () => {
      const url = new URL(server.url);
      url.password = "wrong-password";
      const mailer = createSmtpMailer({ url: url.toString(), from, logger: silent });
      try {
        await assert.rejects(mailer.check(), (error: Error) => {
          assert.match(error.message, /^SMTP server smtp:\/\/127\.0\.0\.1:\d+ is not usable: .*535/);
          assert.doesNotMatch(error.message, /wrong-password|mailer%40/);
          return true;
        });
        await assert.rejects(mailer.send(mail()), /could not send mail .* 535/);
      } finally {
        await mailer.close();
      }
    });
  });

  describe("with a plain server", () => {
    let server: RunningSmtpServer;
    before(async () => {
      server = await startSmtpServer();
    });
    after(async () => {
      await server.stop();
    });

    it("passes on the server's refusal of a recipient (550)", async () => {
      const mailer = createSmtpMailer({ url: server.url, from, logger: silent });
      try {
        const refused = mail({ to: "nobody@rejected.invalid" });
        await assert.rejects(mailer.send(refused), (error: Error) => {
          assert.match(
            error.message,
            new RegExp(
              `^could not send mail ${refused.id} to nobody@rejected\\.invalid through smtp://127\\.0\\.0\\.1:\\d+: .*550`,
            ),
          );
          return true;
        });
        // The pooled connection is still good for the next mail.
        const next = mail();
        await mailer.send(next);
        await server.waitForMessage((m) => m.messageId === `<${next.id}@vid2mp3.example>`);
      } finally {
        await mailer.close();
      }
    });

    it("rejects within seconds while the server is down, and sends again once it is back", async () => {
      const mailer = createSmtpMailer({ url: server.url, from, logger: silent });
      try {
        // A pooled connection is open when the server dies.
        await mailer.send(mail());
        await server.down();

        const lost = mail();
        const started = Date.now();
        // An outage, told apart from a refused mail: the notification waits for the server.
        await assert.rejects(
          mailer.send(lost),
          (error: unknown) =>
            error instanceof UnavailableError &&
            error.backend === "mail" &&
            /could not send mail/.test(error.message),
        );
        assert.ok(Date.now() - started < 5_000, `rejected after ${Date.now() - started} ms`);
        await assert.rejects(mailer.check(), /is not usable/);

        await server.up();
        const next = mail();
        await mailer.send(next);
        await mailer.check();
        await server.waitForMessage((m) => m.messageId === `<${next.id}@vid2mp3.example>`);
        assert.equal(
          (await server.messages()).filter((m) => m.messageId?.startsWith(`<${lost.id}@`)).length,
          0,
        );
      } finally {
        await mailer.close();
      }
    });
  });
});
