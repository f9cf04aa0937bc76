import { createConnection, type PoolOptions } from "mysql2";
import { type MysqlTarget, parseMysqlUrl } from "./mysql-url.ts";

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
