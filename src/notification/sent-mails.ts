import type { Kysely, Migration } from "kysely";
import { isUniqueViolation } from "../platform/database.ts";

/**
 * The notification service's own memory of the mails it sent, keyed by the mail's id
 * (`<jobId>-ready|failed`), so a job's mail goes out once however often its `mp3` message is
 * delivered (a redelivery after a lost acknowledgement, two converters both reporting the job).
 * A row is first a claim (`sending`), then the record (`sent`): of two deliveries at once only one
 * sends, and a claim left by a process that died mid-send is taken over after `CLAIM_TTL_MS`.
 * In its own database: MySQL/MariaDB in the distributed mode, `notification.sqlite` embedded.
 */

export const NOTIFICATION_MIGRATION_TABLE = "notification_migrations";

interface SentMailsTable {
  id: string;
  status: "sending" | "sent";
  claimed_at: string;
  sent_at: string | null;
}

export interface NotificationDatabase {
  sent_mails: SentMailsTable;
}

export const notificationMigrations: Record<string, Migration> = {
  "2026-12-01-001-sent-mails": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("sent_mails")
        .addColumn("id", "varchar(80)", (c) => c.primaryKey())
        .addColumn("status", "varchar(16)", (c) => c.notNull())
        .addColumn("claimed_at", "varchar(30)", (c) => c.notNull())
        .addColumn("sent_at", "varchar(30)")
        .execute();
    },
  },
};

/** Longer than any send takes (nodemailer's timeouts are 10–60 s): a claim this old was abandoned. */
const CLAIM_TTL_MS = 5 * 60_000;

/** What `claim` found. */
export type Claim = "claimed" | "already sent" | "being sent elsewhere";

export function createSentMails(db: Kysely<NotificationDatabase>) {
  return {
    /** Claims the mail for sending by this caller, unless it went out already or is being sent. */
    async claim(id: string, now = new Date()): Promise<Claim> {
      const claimedAt = now.toISOString();
      try {
        await db
          .insertInto("sent_mails")
          .values({ id, status: "sending", claimed_at: claimedAt, sent_at: null })
          .execute();
        return "claimed";
      } catch (error) {
        if (!isUniqueViolation(error)) throw error;
      }
      const row = await db.selectFrom("sent_mails").selectAll().where("id", "=", id).executeTakeFirst();
      if (!row) return this.claim(id, now); // released meanwhile
      if (row.status === "sent") return "already sent";
      if (now.getTime() - Date.parse(row.claimed_at) < CLAIM_TTL_MS) return "being sent elsewhere";
      // Abandoned: take it over, unless another caller just did.
      const taken = await db
        .updateTable("sent_mails")
        .set({ claimed_at: claimedAt })
        .where("id", "=", id)
        .where("status", "=", "sending")
        .where("claimed_at", "=", row.claimed_at)
        .executeTakeFirst();
      return Number(taken.numUpdatedRows) > 0 ? "claimed" : "being sent elsewhere";
    },

    /** The mail went out: remembered for good. */
    async markSent(id: string): Promise<void> {
      await db
        .updateTable("sent_mails")
        .set({ status: "sent", sent_at: new Date().toISOString() })
        .where("id", "=", id)
        .execute();
    },

    /** Sending failed: the claim is given up so that the retry may claim it again. */
    async release(id: string): Promise<void> {
      await db.deleteFrom("sent_mails").where("id", "=", id).where("status", "=", "sending").execute();
    },
  };
}

export type SentMails = ReturnType<typeof createSentMails>;
