import { Kysely, MysqlDialect, type MysqlPool } from "kysely";
import { createPool, type PoolOptions } from "mysql2";
import { createMysqlDatabaseIfMissing } from "./mysql-databases.ts";
import { withQueryTimeout } from "./mysql-query-timeout.ts";
import { parseMysqlUrl } from "./mysql-url.ts";

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

/** A Kysely over a mysql2 pool for a `mysql://` or `mariadb://` URL, creating its database on first use. */
export function openMysql<DB>(url: string, tuning: MysqlTuning): Kysely<DB> {
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
