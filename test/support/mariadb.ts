import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Kysely } from "kysely";
import {
  createMysqlDatabaseIfMissing,
  type DatabaseOptions,
  dropMysqlDatabase,
  openDatabase,
} from "../../src/platform/database.ts";

/**
 * The MariaDB/MySQL server the tests use: `TEST_MYSQL_URL` (a URL without a database, e.g.
 * `mysql://root:secret@db.example:3306`), else the local server as root without a password.
 */
export const TEST_MYSQL_SERVER = process.env.TEST_MYSQL_URL ?? "mysql://root@127.0.0.1:3306";

export interface TestDatabase {
  /** `mysql://…/vid2mp3_test_<random>`: a fresh, empty database of its own. */
  url: string;
  /** Drops the database (safe to call twice). */
  drop(): Promise<void>;
}

/** A fresh database `vid2mp3_test_<random>` on the test server; the caller drops it when done. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const url = testDatabaseUrl();
  try {
    await createMysqlDatabaseIfMissing(url);
  } catch (error) {
    throw new Error(
      `MariaDB/MySQL is not reachable at ${redact(TEST_MYSQL_SERVER)} (set TEST_MYSQL_URL): ${(error as Error).message}`,
      { cause: error },
    );
  }
  return { url, drop: () => dropMysqlDatabase(url) };
}

/** A URL for a database name nobody uses yet, not created (for tests of creating it). */
export function testDatabaseUrl(): string {
  const url = new URL(TEST_MYSQL_SERVER);
  url.pathname = `/vid2mp3_test_${randomBytes(6).toString("hex")}`;
  return url.toString();
}

function redact(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.toString();
}

export interface TestDatabaseBackend {
  name: "SQLite" | "MariaDB";
  /** A fresh, empty database through `openDatabase`; `cleanup` closes and removes it. */
  open<DB>(mysql?: DatabaseOptions["mysql"]): Promise<{ db: Kysely<DB>; cleanup(): Promise<void> }>;
}

/** Both dialects, for tests that must pass on each: `for (const backend of testDatabaseBackends) describe(…)`. */
export const testDatabaseBackends: TestDatabaseBackend[] = [
  {
    name: "SQLite",
    async open<DB>() {
      const dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-db-"));
      const db = openDatabase<DB>({ sqliteFile: path.join(dir, "test.sqlite") });
      return {
        db,
        async cleanup() {
          await db.destroy();
          await rm(dir, { recursive: true, force: true });
        },
      };
    },
  },
  {
    name: "MariaDB",
    async open<DB>(mysql?: DatabaseOptions["mysql"]) {
      const database = await createTestDatabase();
      const db = openDatabase<DB>({ url: database.url, sqliteFile: "/nonexistent/unused.sqlite", mysql });
      return {
        db,
        async cleanup() {
          await db.destroy();
          await database.drop();
        },
      };
    },
  },
];
