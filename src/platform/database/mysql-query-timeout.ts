import type { MysqlPool, MysqlPoolConnection } from "kysely";
import { errorMessage } from "../error-message.ts";
import { UnavailableError } from "../unavailable.ts";
import { isDatabaseUnavailable } from "./errors.ts";

/**
 * Gives every statement an inactivity limit. mysql2 reports the timeout but keeps the connection,
 * whose next command would queue behind the unanswered one: such a connection is destroyed
 * (which removes it from the pool) so the pool only hands out working ones. Failures that mean
 * "the database cannot be reached" become an `UnavailableError` here, at the adapter.
 */
export function withQueryTimeout(pool: MysqlPool, timeoutMs: number): MysqlPool {
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
