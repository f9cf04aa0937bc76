import type { Kysely } from "kysely";
import { type MysqlTuning, openMysql } from "./database/mysql.ts";
import { openSqlite } from "./database/sqlite.ts";

export { isDatabaseUnavailable, isUniqueViolation } from "./database/errors.ts";
export { migrateToLatest, prepareSchema } from "./database/migrations.ts";
export type { MysqlTuning } from "./database/mysql.ts";
export { createMysqlDatabaseIfMissing, dropMysqlDatabase } from "./database/mysql-databases.ts";
export { type MysqlTarget, parseMysqlUrl } from "./database/mysql-url.ts";

/**
 * The one place that knows which SQL dialect is in use (the modules in `database/` each hold one
 * part: opening SQLite, opening MySQL with its timeouts, recognising errors, migrating). Services
 * write portable Kysely queries and migrations that run unchanged on SQLite and MySQL/MariaDB:
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

export function openDatabase<DB>(options: DatabaseOptions): Kysely<DB> {
  if (options.url !== undefined) return openMysql<DB>(options.url, options.mysql ?? {});
  return openSqlite<DB>(options.sqliteFile);
}
