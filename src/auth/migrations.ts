import type { Kysely, Migration } from "kysely";

/**
 * The auth service's tables. Portable across SQLite and MySQL/MariaDB: string ids made in code,
 * ISO-8601 time strings (they sort as text), 0/1 integers for booleans.
 */
export interface UsersTable {
  id: string;
  email: string;
  password_hash: string;
  admin: number;
  disabled: number;
  /** Bumped when the password changes or the account is disabled: tokens of an older generation are refused. */
  token_generation: number;
  created_at: string;
  updated_at: string;
}

export interface AuthDatabase {
  users: UsersTable;
}

/** The auth service's migration bookkeeping table: services can share one database. */
export const AUTH_MIGRATION_TABLE = "auth_migrations";

/** Named so they sort in the order they must run; never edit one that has shipped, add a new one. */
export const authMigrations: Record<string, Migration> = {
  "0001_create_users": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable("users")
        .addColumn("id", "varchar(36)", (c) => c.primaryKey())
        // 254 is the longest deliverable address (RFC 5321); short enough for a MySQL unique index.
        .addColumn("email", "varchar(254)", (c) => c.notNull().unique())
        .addColumn("password_hash", "varchar(255)", (c) => c.notNull())
        .addColumn("admin", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("disabled", "integer", (c) => c.notNull().defaultTo(0))
        .addColumn("created_at", "varchar(32)", (c) => c.notNull())
        .addColumn("updated_at", "varchar(32)", (c) => c.notNull())
        .execute();
      // The admin list pages newest first.
      await db.schema.createIndex("users_created_at").on("users").column("created_at").execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.dropTable("users").execute();
    },
  },
  "0002_users_token_generation": {
    async up(db: Kysely<unknown>) {
      await db.schema
        .alterTable("users")
        .addColumn("token_generation", "integer", (c) => c.notNull().defaultTo(0))
        .execute();
    },
    async down(db: Kysely<unknown>) {
      await db.schema.alterTable("users").dropColumn("token_generation").execute();
    },
  },
};
