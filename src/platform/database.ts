import { mkdirSync } from "node:fs";
import path from "node:path";
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import {
  Kysely,
  type Migration,
  type MigrationProvider,
  Migrator,
  type SqliteDatabase,
  SqliteDialect,
  type SqliteStatement,
} from "kysely";

/**
 * The one place that knows which SQL dialect is in use. Services write portable Kysely queries
 * and migrations: ids are strings made in code, times are ISO-8601 strings (they sort as text),
 * booleans are 0/1 integers.
 */
export interface DatabaseOptions {
  /** Embedded default: a SQLite file (created with its folder if missing). */
  sqliteFile: string;
}

export function openDatabase<DB>(options: DatabaseOptions): Kysely<DB> {
  mkdirSync(path.dirname(options.sqliteFile), { recursive: true });
  const sqlite = new DatabaseSync(options.sqliteFile);
  // WAL lets readers proceed during a write; busy_timeout rides out the short write locks.
  sqlite.exec("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;");
  return new Kysely<DB>({ dialect: new SqliteDialect({ database: adaptNodeSqlite(sqlite) }) });
}

/** Runs the service's migrations (named so they sort in order) up to the latest. */
export async function migrateToLatest<DB>(
  db: Kysely<DB>,
  migrations: Record<string, Migration>,
): Promise<void> {
  const provider: MigrationProvider = { getMigrations: async () => migrations };
  const { error, results } = await new Migrator({ db: db as Kysely<unknown>, provider }).migrateToLatest();
  const failed = results?.find((r) => r.status === "Error");
  if (error || failed) {
    throw new Error(`database migration ${failed?.migrationName ?? ""} failed: ${String(error)}`, {
      cause: error,
    });
  }
}

/** Kysely's SqliteDialect speaks the better-sqlite3 interface; node:sqlite needs a thin adapter. */
function adaptNodeSqlite(db: DatabaseSync): SqliteDatabase {
  return {
    close: () => db.close(),
    prepare(sql: string): SqliteStatement {
      const statement = db.prepare(sql);
      return {
        reader: statement.columns().length > 0,
        all: (parameters) => statement.all(...toSqlite(parameters)),
        run: (parameters) => statement.run(...toSqlite(parameters)),
        iterate: (parameters) => statement.iterate(...toSqlite(parameters)),
      };
    },
  };
}

function toSqlite(parameters: ReadonlyArray<unknown>): SQLInputValue[] {
  return parameters.map((p) => {
    if (typeof p === "boolean") return p ? 1 : 0;
    if (p instanceof Date) return p.toISOString();
    if (p === undefined) return null;
    return p as SQLInputValue;
  });
}
