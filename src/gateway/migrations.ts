import type { Kysely, Migration } from "kysely";
import { DOWNLOAD_LINK_SECRET, newSecret } from "./download-links.ts";

/** The gateway's migration bookkeeping table: services can share one database. */
export const GATEWAY_MIGRATION_TABLE = "gateway_migrations";

/** The gateway's own database: one row per conversion job. Portable SQL only (SQLite and MySQL). */
export const gatewayMigrations: Record<string, Migration> = {
  "2026-11-26-001-jobs": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("jobs")
        .addColumn("id", "varchar(36)", (c) => c.primaryKey())
        .addColumn("owner_id", "varchar(64)", (c) => c.notNull())
        .addColumn("owner_email", "varchar(254)", (c) => c.notNull())
        .addColumn("file_name", "varchar(255)", (c) => c.notNull())
        .addColumn("format", "varchar(32)", (c) => c.notNull())
        .addColumn("size", "bigint", (c) => c.notNull())
        .addColumn("status", "varchar(16)", (c) => c.notNull())
        .addColumn("progress", "double precision", (c) => c.notNull().defaultTo(0))
        .addColumn("duration_seconds", "double precision")
        .addColumn("mp3_id", "varchar(36)", (c) => c.notNull().unique())
        .addColumn("mp3_size", "bigint")
        .addColumn("error", "varchar(1000)")
        .addColumn("created_at", "varchar(30)", (c) => c.notNull())
        .addColumn("updated_at", "varchar(30)", (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex("jobs_owner_created")
        .on("jobs")
        .columns(["owner_id", "created_at"])
        .execute();
      await db.schema.createIndex("jobs_status").on("jobs").column("status").execute();
    },
  },
  "2026-12-01-001-job-options": {
    async up(db: Kysely<unknown>) {
      // The upload's conversion options as JSON (only what the user chose); null: all defaults.
      await db.schema.alterTable("jobs").addColumn("options", "text").execute();
    },
  },
  "2026-12-01-002-gateway-secrets": {
    async up(db: Kysely<unknown>) {
      // Keys every gateway replica must share, made once here so no setting is needed for them.
      await db.schema
        .createTable("gateway_secrets")
        .addColumn("name", "varchar(64)", (c) => c.primaryKey())
        .addColumn("value", "varchar(128)", (c) => c.notNull())
        .execute();
      await (db as Kysely<{ gateway_secrets: { name: string; value: string } }>)
        .insertInto("gateway_secrets")
        .values({ name: DOWNLOAD_LINK_SECRET, value: newSecret() })
        .execute();
    },
  },
};
