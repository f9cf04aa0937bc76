import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, type TestContext, test } from "node:test";
import { testDatabaseBackends } from "../../test/support/mariadb.ts";
import { migrateToLatest } from "../platform/database.ts";
import {
  createSentMails,
  NOTIFICATION_MIGRATION_TABLE,
  type NotificationDatabase,
  notificationMigrations,
} from "./sent-mails.ts";

/**
 * The record of sent mails is what makes a job's mail go out once, in both modes (SQLite embedded,
 * MariaDB distributed): these are its rules on each database, the concurrent cases included,
 * which the notifier's own tests (one delivery at a time) do not reach.
 */
for (const backend of testDatabaseBackends) {
  describe(`record of sent mails on ${backend.name}`, () => {
    async function open(t: TestContext) {
      const { db, cleanup } = await backend.open<NotificationDatabase>();
      t.after(cleanup);
      await migrateToLatest(db, notificationMigrations, { table: NOTIFICATION_MIGRATION_TABLE });
      return createSentMails(db);
    }

    test("of several deliveries claiming one mail at once, exactly one may send it", async (t) => {
      const sentMails = await open(t);
      const id = `${randomUUID()}-ready`;
      const claims = await Promise.all(Array.from({ length: 6 }, () => sentMails.claim(id)));
      assert.equal(claims.filter((c) => c === "claimed").length, 1, claims.join(", "));
      assert.equal(claims.filter((c) => c === "being sent elsewhere").length, 5, claims.join(", "));
    });

    test("a sent mail is never claimed again, not even long after", async (t) => {
      const sentMails = await open(t);
      const id = `${randomUUID()}-failed`;
      assert.equal(await sentMails.claim(id), "claimed");
      await sentMails.markSent(id);
      assert.equal(await sentMails.claim(id), "already sent");
      const nextYear = new Date(Date.now() + 365 * 24 * 3_600_000);
      assert.equal(await sentMails.claim(id, nextYear), "already sent");
      // Releasing (a failed send elsewhere) does not undo a record.
      await sentMails.release(id);
      assert.equal(await sentMails.claim(id), "already sent");
    });

    test("a released claim (the send failed) may be claimed again by the retry", async (t) => {
      const sentMails = await open(t);
      const id = `${randomUUID()}-ready`;
      assert.equal(await sentMails.claim(id), "claimed");
      await sentMails.release(id);
      assert.equal(await sentMails.claim(id), "claimed");
    });

    test("a claim abandoned by a process that died mid-send is taken over after 5 minutes, by one taker", async (t) => {
      const sentMails = await open(t);
      const id = `${randomUUID()}-ready`;
      const claimedAt = new Date();
      assert.equal(await sentMails.claim(id, claimedAt), "claimed");
      const soon = new Date(claimedAt.getTime() + 4 * 60_000);
      assert.equal(await sentMails.claim(id, soon), "being sent elsewhere");
      const later = new Date(claimedAt.getTime() + 5 * 60_000 + 1000);
      const takers = await Promise.all(Array.from({ length: 4 }, () => sentMails.claim(id, later)));
      assert.equal(takers.filter((c) => c === "claimed").length, 1, takers.join(", "));
      // The new claim is fresh: nobody takes it over from the new sender right away.
      assert.equal(await sentMails.claim(id, new Date(later.getTime() + 1000)), "being sent elsewhere");
      await sentMails.markSent(id);
      assert.equal(await sentMails.claim(id, later), "already sent");
    });
  });
}
