import { unavailableCause } from "../unavailable.ts";

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
