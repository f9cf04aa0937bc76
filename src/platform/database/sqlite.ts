import { mkdirSync } from "node:fs";
import path from "node:path";
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import { Kysely, type SqliteDatabase, SqliteDialect, type SqliteStatement } from "kysely";

/** A Kysely over a SQLite file (created with its folder if missing), through Node's own node:sqlite. */
export function openSqlite<DB>(file: string): Kysely<DB> {
  mkdirSync(path.dirname(file), { recursive: true });
  const sqlite = new DatabaseSync(file);
  // WAL lets readers proceed during a write; busy_timeout rides out the short write locks.
  sqlite.exec("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;");
  return new Kysely<DB>({ dialect: new SqliteDialect({ database: adaptNodeSqlite(sqlite) }) });
}

/** Distinct SQL texts kept compiled; a service has a few dozen query shapes. */
const STATEMENT_CACHE_SIZE = 500;

/** Kysely's SqliteDialect speaks the better-sqlite3 interface; node:sqlite needs a thin adapter. */
function adaptNodeSqlite(db: DatabaseSync): SqliteDatabase {
  // Kysely asks to prepare on every query; compiling the SQL was a third of a cached read's cost
  // (bench/), so compiled statements are kept by their text (SQLite recompiles them itself after a
  // schema change). The oldest is dropped first when the cache is full.
  const statements = new Map<string, SqliteStatement>();
  return {
    close: () => db.close(),
    prepare(sql: string): SqliteStatement {
      const cached = statements.get(sql);
      if (cached) return cached;
      const statement = db.prepare(sql);
      const adapted: SqliteStatement = {
        reader: statement.columns().length > 0,
        all: (parameters) => statement.all(...toSqlite(parameters)),
        run: (parameters) => statement.run(...toSqlite(parameters)),
        iterate: (parameters) => statement.iterate(...toSqlite(parameters)),
      };
      if (statements.size >= STATEMENT_CACHE_SIZE)
        statements.delete(statements.keys().next().value as string);
      statements.set(sql, adapted);
      return adapted;
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
