import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, it } from "node:test";
import type { AddressObject, ParsedMail } from "mailparser";
import type { Mail, Mailer } from "../../../src/platform/mail/mailer.ts";

export interface MailerFixture {
  mailer: Mailer;
  /** The sender the mailer was made with. */
  from: string;
  /** Every mail that arrived at the backend so far, parsed with mailparser. */
  received(): Promise<ParsedMail[]>;
  /** Takes the backend away: the SMTP server stops, the outbox folder cannot be written. */
  breakBackend(): Promise<void>;
  cleanup(): Promise<void>;
}

/**
 * The behaviour every `Mailer` must show, as node:test suites: the outbox and the SMTP mailer are
 * held to the very same tests, and what arrives is read back with a real MIME parser (mailparser).
 */
export function mailerContract(name: string, open: () => Promise<MailerFixture>): void {
  describe(`${name}: Mailer contract`, { timeout: 20_000 }, () => {
    let fixture: MailerFixture;
    beforeEach(async () => {
      fixture = await open();
    });
    afterEach(async () => {
      await fixture.mailer.close();
      await fixture.cleanup();
    });

    it("is reachable", async () => {
      await fixture.mailer.check();
    });

    it("delivers a multipart mail with every header a client needs", async () => {
      const mail = sample();
      await fixture.mailer.send(mail);

      const [parsed, ...others] = await arrived(fixture, mail.id);
      assert.ok(parsed, "the mail arrived");
      assert.equal(others.length, 0);
      assert.deepEqual(addresses(parsed.to), ["ada@example.com"]);
      assert.deepEqual(addresses(parsed.from), [addressOf(fixture.from)]);
      assert.equal(parsed.subject, "Your MP3 is ready: Vidéo été.mp4");
      assert.equal(parsed.messageId, `<${mail.id}@${domainOf(fixture.from)}>`);
      assert.equal(parsed.headers.get("auto-submitted"), "auto-generated");
      assert.ok(parsed.date && Math.abs(Date.now() - parsed.date.getTime()) < 60_000, "Date is now");
      assert.equal(parsed.text?.trimEnd(), mail.text.trimEnd());
      assert.equal(typeof parsed.html === "string" ? parsed.html.trimEnd() : parsed.html, mail.html);
    });

    it("keeps a CR/LF in the subject from injecting headers", async () => {
      const mail = sample({ subject: "hi\r\nBcc: evil@example.com" });
      await fixture.mailer.send(mail);
      const [parsed] = await arrived(fixture, mail.id);
      assert.ok(parsed);
      assert.equal(parsed.bcc, undefined);
      assert.equal(parsed.headers.get("bcc"), undefined);
      assert.deepEqual(addresses(parsed.to), ["ada@example.com"]);
    });

    it("gives a mail sent twice the same Message-ID", async () => {
      const mail = sample();
      await fixture.mailer.send(mail);
      await fixture.mailer.send({ ...mail, subject: "again" });
      const copies = await arrived(fixture, mail.id);
      assert.ok(copies.length >= 1);
      assert.ok(copies.every((copy) => copy.messageId === `<${mail.id}@${domainOf(fixture.from)}>`));
    });

    it("rejects an invalid recipient address clearly and sends nothing", async () => {
      for (const to of [
        "not-an-address",
        "ada@",
        "ada@example.com, eve@example.com",
        "@example.com",
        "ada@-example.com",
        "x\r\nBcc: eve@example.com",
        "",
      ]) {
        await assert.rejects(
          fixture.mailer.send(sample({ to })),
          /invalid recipient address/,
          `to ${JSON.stringify(to)}`,
        );
      }
      assert.deepEqual(await fixture.received(), []);
    });

    it("rejects an unsafe mail id", async () => {
      for (const id of ["../escape", "a>b", "x\r\ny", "", ".hidden", "a b"]) {
        await assert.rejects(
          fixture.mailer.send(sample({ id })),
          /unsafe mail id/,
          `id ${JSON.stringify(id)}`,
        );
      }
      assert.deepEqual(await fixture.received(), []);
    });

    it("rejects within seconds, and fails its check, when the backend is down", async () => {
      await fixture.breakBackend();
      const mail = sample();
      const started = Date.now();
      await assert.rejects(fixture.mailer.send(mail), (error: Error) => {
        assert.match(error.message, new RegExp(`^could not (send|write) mail ${mail.id} `));
        return true;
      });
      assert.ok(Date.now() - started < 5_000, `rejected after ${Date.now() - started} ms`);
      await assert.rejects(fixture.mailer.check());
    });
  });
}

function sample(overrides: Partial<Mail> = {}): Mail {
  const fid = randomUUID();
  return {
    id: `${randomUUID()}-ready`,
    to: "ada@example.com",
    subject: "Your MP3 is ready: Vidéo été.mp4",
    text: `Download it: https://mp3.example/download?fid=${fid}\n${"long line ".repeat(20)}`,
    html: `<p><a href="https://mp3.example/download?fid=${fid}">Download</a> été</p>`,
    ...overrides,
  };
}

/** The received mails carrying this mail id. */
async function arrived(fixture: MailerFixture, id: string): Promise<ParsedMail[]> {
  return (await fixture.received()).filter((mail) => mail.messageId?.startsWith(`<${id}@`));
}

function addresses(field: AddressObject | AddressObject[] | undefined): string[] {
  const objects = field === undefined ? [] : Array.isArray(field) ? field : [field];
  return objects.flatMap((object) => object.value.map((address) => address.address ?? ""));
}

function addressOf(from: string): string {
  return /<([^>]+)>/.exec(from)?.[1] ?? from;
}

function domainOf(from: string): string {
  return addressOf(from).split("@")[1] ?? "";
}
