import type { PoolOptions } from "mysql2";

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
