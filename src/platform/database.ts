import { mkdirSync } from "node:fs";
import path from "node:path";
import { DatabaseSync, type SQLInputValue } from "node:sqlite";
import {
  Kysely,
  type Migration,
  type MigrationProvider,
  Migrator,
  MysqlDialect,
  type MysqlPool,
  type MysqlPoolConnection,
  type SqliteDatabase,
  SqliteDialect,
  type SqliteStatement,
  sql,
} from "kysely";
import { createConnection, createPool, type PoolOptions } from "mysql2";
import { errorMessage } from "./error-message.ts";
import { UnavailableError, unavailableCause } from "./unavailable.ts";

/**
 * The one place that knows which SQL dialect is in use. Services write portable Kysely queries
 * and migrations that run unchanged on SQLite and MySQL/MariaDB:
 * - ids are strings made in code, `varchar(n)` with n ≤ 254 for indexed columns (a utf8mb4
 *   unique index must stay under InnoDB's 3072-byte key limit);
 * - times are ISO-8601 strings in `varchar` (they sort as text; no time zone handling anywhere);
 * - booleans are 0/1 `integer`s; sizes `bigint` and fractions `double precision`, read back as
 *   JS numbers by both drivers (convert with `Number()` anyway: MySQL sends huge values as strings);
 * - counts of updated/deleted rows are bigints: compare with `Number(result.numUpdatedRows)`;
 * - a unique violation is recognised with `isUniqueViolation`; an unreachable database raises an
 *   `UnavailableError` (backend `database`, recognised by `isDatabaseUnavailable` too), answered
 *   `503 database_unavailable` by every service's HTTP server and waited out by consumers.
 */
export interface DatabaseOptions {
  /** `mysql://user:pass@host:port/database` (or `mariadb://`): MySQL/MariaDB. Unset: SQLite. */
  url?: string | undefined;
  /** Embedded default: a SQLite file (created with its folder if missing). */
  sqliteFile: string;
  /** MySQL/MariaDB pool tuning; the defaults suit one service replica. */
  mysql?: MysqlTuning;
}

export interface MysqlTuning {
  /** Connections per process (default 10). */
  connectionLimit?: number;
  /** Longest wait for a new connection, TCP and handshake (default 2 s: the server is next to us). */
  connectTimeoutMs?: number;
  /**
   * Longest a statement may go without an answer before its connection is dropped (default 1.5 s;
   * every statement of the services is a small indexed one; schema changes get a minute): a server
   * that vanished without closing the TCP connection (packets dropped) answers 503 within about
   * 2 s instead of hanging.
   */
  queryTimeoutMs?: number;
}

export function openDatabase<DB>(options: DatabaseOptions): Kysely<DB> {
  if (options.url !== undefined) return openMysql<DB>(options.url, options.mysql ?? {});
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
  options: {
    /** The service's own bookkeeping table (e.g. `auth_migrations`), so services can share one database. */
    table: string;
  },
): Promise<void> {
  const kysely = db as Kysely<unknown>;
  const migrationTableName = options.table;
  const migrationLockTableName = `${options.table}_lock`;
  await adoptLegacyMigrationTable(kysely, migrations, migrationTableName);
  const provider: MigrationProvider = { getMigrations: async () => migrations };
  const { error, results } = await new Migrator({
    db: kysely,
    provider,
    migrationTableName,
    migrationLockTableName,
  }).migrateToLatest();
  const failed = results?.find((r) => r.status === "Error");
  if (error || failed) {
    throw new Error(`database migration ${failed?.migrationName ?? ""} failed: ${errorMessage(error)}`, {
      cause: error,
    });
  }
}

/**
 * The schema a service needs at start: migrated to the latest (the default), or, when a separate
 * step migrates (`vid2mp3 migrate <service>` in a Kubernetes Job, with a user allowed DDL) and the
 * service runs with a user that may not change tables (MIGRATE_ON_START=false), checked only: a
 * pending migration stops the start with a sentence that says what to run.
 */
export async function prepareSchema<DB>(
  db: Kysely<DB>,
  migrations: Record<string, Migration>,
  options: { table: string; service: string; migrate: boolean },
): Promise<void> {
  if (options.migrate) return migrateToLatest(db, migrations, options);
  const provider: MigrationProvider = { getMigrations: async () => migrations };
  const known = await new Migrator({
    db: db as Kysely<unknown>,
    provider,
    migrationTableName: options.table,
    migrationLockTableName: `${options.table}_lock`,
  }).getMigrations();
  const pending = known.filter((m) => m.executedAt === undefined).map((m) => m.name);
  if (pending.length > 0) {
    throw new Error(
      `the ${options.service} database schema is behind (${pending.length} migration(s) pending: ${pending.join(", ")}); ` +
        `run \`vid2mp3 migrate ${options.service}\` with a database user allowed to change tables, or set MIGRATE_ON_START=true`,
    );
  }
}

/**
 * Databases made before migration tables were per service kept their history in Kysely's default
 * `kysely_migration`; it is renamed to the service's table (when every migration it lists is one of
 * this service's), so those migrations are not run a second time.
 */
async function adoptLegacyMigrationTable(
  db: Kysely<unknown>,
  migrations: Record<string, Migration>,
  table: string,
): Promise<void> {
  const legacy = "kysely_migration";
  const tables = new Set(
    (await db.introspection.getTables({ withInternalKyselyTables: true })).map((t) => t.name),
  );
  if (!tables.has(legacy) || tables.has(table)) return;
  const { rows } = await sql<{ name: string }>`select name from ${sql.table(legacy)}`.execute(db);
  if (!rows.every((row) => row.name in migrations)) return;
  await db.schema.alterTable(legacy).renameTo(table).execute();
  if (tables.has(`${legacy}_lock`)) await db.schema.dropTable(`${legacy}_lock`).execute();
}

// ——— errors ———

/**
 * mysql2's own codes for a connection that cannot be made or was lost, and the server's for "not
 * now". Operating-system codes (ECONNREFUSED, ETIMEDOUT, EPIPE, ECONNRESET, …) count only on errors
 * mysql2 marks `fatal` (the connection is gone): the same codes from another backend (S3, the
 * broker, the auth service) must not be reported as a database problem.
 */
const mysqlUnavailableCodes = new Set([
  "PROTOCOL_CONNECTION_LOST",
  "PROTOCOL_SEQUENCE_TIMEOUT",
  "ER_CON_COUNT_ERROR",
  "ER_TOO_MANY_USER_CONNECTIONS",
  "ER_SERVER_SHUTDOWN",
  "ER_SERVER_GONE_ERROR",
  "ER_SERVER_LOST",
  "ER_QUERY_INTERRUPTED",
]);
const networkCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "ENOTFOUND",
  "EAI_AGAIN",
]);
/** SQLite's "try again": SQLITE_BUSY (5), SQLITE_LOCKED (6), with any extended code. */
const sqliteBusyCodes = new Set([5, 6]);
const sqliteUniqueCodes = new Set([1555 /* PRIMARYKEY */, 2067 /* UNIQUE */]);

/**
 * True when an error (or one it wraps) says the database cannot be reached right now: answered
 * as 503 `database_unavailable` rather than 500, and worth retrying shortly.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  if (unavailableCause(error)?.backend === "database") return true;
  return someCause(error, (e) => {
    const code = typeof e.code === "string" ? e.code : undefined;
    if (code !== undefined && mysqlUnavailableCodes.has(code)) return true;
    if (e.fatal === true) {
      // A network failure of a MySQL connection, or a command on a connection that already died.
      if (code === undefined || networkCodes.has(code)) return true;
    }
    if (code === "ERR_SQLITE_ERROR" && typeof e.errcode === "number") {
      return sqliteBusyCodes.has(e.errcode & 0xff);
    }
    return false;
  });
}

/** True when an insert or update broke a primary key or unique index, in either dialect. */
export function isUniqueViolation(error: unknown): boolean {
  return someCause(error, (e) => {
    if (e.code === "ER_DUP_ENTRY" || e.errno === 1062) return true;
    return e.code === "ERR_SQLITE_ERROR" && typeof e.errcode === "number" && sqliteUniqueCodes.has(e.errcode);
  });
}

type ErrorFields = { code?: unknown; errno?: unknown; errcode?: unknown; fatal?: unknown };

function someCause(error: unknown, test: (e: ErrorFields) => boolean, depth = 0): boolean {
  if (typeof error !== "object" || error === null || depth > 8) return false;
  if (test(error as ErrorFields)) return true;
  if (error instanceof AggregateError && error.errors.some((e) => someCause(e, test, depth + 1))) return true;
  return "cause" in error && someCause(error.cause, test, depth + 1);
}

// ——— MySQL/MariaDB ———

export interface MysqlTarget {
  database: string;
  connection: PoolOptions;
}

/** The connection settings in a `mysql://` or `mariadb://` URL. */
export function parseMysqlUrl(url: string): MysqlTarget {
  const u = new URL(url);
  if (u.protocol !== "mysql:" && u.protocol !== "mariadb:") {
    throw new Error(`database URL must start with mysql:// or mariadb://, not ${u.protocol}//`);
  }
  const database = decodeURIComponent(u.pathname.replace(/^\/+/, ""));
  if (!/^[A-Za-z0-9_$-]{1,64}$/.test(database)) {
    throw new Error(
      `database URL must name a database (letters, digits, _ $ -), as in mysql://user:pass@host:3306/vid2mp3; got "${database}"`,
    );
  }
  const connection: PoolOptions = {
    host: u.hostname.replace(/^\[(.*)\]$/, "$1") || "localhost",
    port: u.port ? Number(u.port) : 3306,
    user: decodeURIComponent(u.username) || "root",
    password: decodeURIComponent(u.password),
  };
  for (const [name, value] of u.searchParams) {
    if (name === "ssl" && (value === "true" || value === "1")) connection.ssl = {};
    else if (name === "ssl" && (value === "false" || value === "0")) connection.ssl = undefined;
    else throw new Error(`database URL: unsupported parameter ${name}=${value} (only ssl=true)`);
  }
  return { database, connection };
}

function openMysql<DB>(url: string, tuning: MysqlTuning): Kysely<DB> {
  const target = parseMysqlUrl(url);
  const connectionLimit = tuning.connectionLimit ?? 10;
  const common: PoolOptions = {
    ...target.connection,
    connectTimeout: tuning.connectTimeoutMs ?? 2000,
    // Idle pooled connections to a host that vanished are found dead by TCP itself.
    enableKeepAlive: true,
    keepAliveInitialDelay: 5_000,
    // Numbers as JS numbers (bigints beyond 2^53 as strings rather than silently rounded).
    supportBigNumbers: true,
    bigNumberStrings: false,
    decimalNumbers: true,
    // Times are ISO strings in varchar; never let the driver turn anything into a Date.
    dateStrings: true,
    timezone: "Z",
    charset: "UTF8MB4_BIN",
  };
  return new Kysely<DB>({
    dialect: new MysqlDialect({
      // Called on first use, and again after a failure (Kysely retries a failed init).
      pool: async () => {
        // At start, where a busy server may take its time: the usual connect timeout of that helper.
        await createMysqlDatabaseIfMissing(target, {
          ...common,
          connectTimeout: Math.max(5000, common.connectTimeout ?? 0),
        });
        const pool = createPool({
          ...common,
          database: target.database,
          connectionLimit,
          maxIdle: connectionLimit,
          idleTimeout: 60_000,
          waitForConnections: true,
          queueLimit: 0,
        });
        return withQueryTimeout(pool as unknown as MysqlPool, tuning.queryTimeoutMs ?? 1500);
      },
    }),
  });
}

/**
 * Creates the URL's database when it does not exist yet (utf8mb4 with binary collation, so
 * comparisons and ordering are byte-wise, like SQLite's). Needs no privilege when it exists.
 */
export async function createMysqlDatabaseIfMissing(
  target: MysqlTarget | string,
  options: PoolOptions = {},
): Promise<void> {
  const { database, connection } = typeof target === "string" ? parseMysqlUrl(target) : target;
  const conn = createConnection({ connectTimeout: 5000, ...connection, ...options, database: undefined });
  conn.on("error", () => {}); // also reported to the pending query, which rejects
  const db = conn.promise();
  try {
    const [rows] = await db.query(
      "select schema_name from information_schema.schemata where schema_name = ?",
      [database],
    );
    if ((rows as unknown[]).length > 0) return;
    await db.query(`create database if not exists \`${database}\` character set utf8mb4 collate utf8mb4_bin`);
  } finally {
    conn.destroy();
  }
}

/** Drops a MySQL/MariaDB database named in a URL if it exists (tests clean up with it). */
export async function dropMysqlDatabase(url: string): Promise<void> {
  const { database, connection } = parseMysqlUrl(url);
  const conn = createConnection({ connectTimeout: 5000, ...connection });
  conn.on("error", () => {}); // also reported to the pending query, which rejects
  try {
    await conn.promise().query(`drop database if exists \`${database}\``);
  } finally {
    conn.destroy();
  }
}

/**
 * Gives every statement an inactivity limit. mysql2 reports the timeout but keeps the connection,
 * whose next command would queue behind the unanswered one: such a connection is destroyed
 * (which removes it from the pool) so the pool only hands out working ones. Failures that mean
 * "the database cannot be reached" become an `UnavailableError` here, at the adapter.
 */
function withQueryTimeout(pool: MysqlPool, timeoutMs: number): MysqlPool {
  type RawQuery = (
    options: { sql: string; timeout: number },
    values: unknown[],
    callback?: Callback,
  ) => unknown;
  type Callback = (error: unknown, result: unknown) => void;
  const wrapped = new WeakSet<object>();
  return {
    getConnection(callback) {
      pool.getConnection((error, connection) => {
        if (error) {
          callback(asUnavailable(error), connection as MysqlPoolConnection);
          return;
        }
        if (connection && !wrapped.has(connection)) {
          wrapped.add(connection);
          const raw = connection as unknown as { query: RawQuery; destroy(): void };
          const query = raw.query.bind(connection);
          raw.query = (sql, values, cb?: Callback) =>
            query(
              {
                sql: sql as unknown as string,
                timeout: isSchemaChange(sql) ? SCHEMA_CHANGE_TIMEOUT_MS : timeoutMs,
              },
              values,
              cb && timeoutGuard(cb),
            );
          function timeoutGuard(cb: Callback): Callback {
            return (err, result) => {
              if ((err as { code?: unknown } | null)?.code === "PROTOCOL_SEQUENCE_TIMEOUT") raw.destroy();
              cb(err ? asUnavailable(err) : err, result);
            };
          }
        }
        callback(error, connection as MysqlPoolConnection);
      });
    },
    end: (callback) => pool.end(callback),
  };
}

/** Migrations' statements (and their look-ups of the schema) may take long: no user waits for them. */
const SCHEMA_CHANGE_TIMEOUT_MS = 60_000;

function isSchemaChange(sql: unknown): boolean {
  return typeof sql === "string" && /^\s*(create|alter|drop|rename)\b|information_schema/i.test(sql);
}

/** The database's own error, or an UnavailableError wrapping it when it means "cannot be reached now". */
function asUnavailable(error: unknown): unknown {
  if (error instanceof UnavailableError || !isDatabaseUnavailable(error)) return error;
  return new UnavailableError("database", `the database is not reachable: ${errorMessage(error)}`, {
    cause: error,
  });
}

// ——— SQLite ———

/** Kysely's SqliteDialect speaks the better-sqlite3 interface; node:sqlite needs a thin adapter. */
/** Distinct SQL texts kept compiled; a service has a few dozen query shapes. */
const STATEMENT_CACHE_SIZE = 500;

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
