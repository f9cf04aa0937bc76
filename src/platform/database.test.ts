import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { describe, test } from "node:test";
import { sql } from "kysely";
import { databaseContract } from "../../test/support/contracts/database.ts";
import { createTestDatabase, testDatabaseBackends, testDatabaseUrl } from "../../test/support/mariadb.ts";
import { startTcpProxy } from "../../test/support/tcp-proxy.ts";
import { dropMysqlDatabase, isDatabaseUnavailable, openDatabase, parseMysqlUrl } from "./database.ts";

for (const backend of testDatabaseBackends) databaseContract(backend.name, () => backend.open());

/** A local port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("MySQL/MariaDB connections", () => {
  test("the database named in the URL is created when it does not exist", async (t) => {
    const url = testDatabaseUrl();
    t.after(() => dropMysqlDatabase(url));
    const db = openDatabase({ url, sqliteFile: "/nonexistent/unused.sqlite" });
    t.after(() => db.destroy());
    const { rows } = await sql<{ name: string; collation: string }>`
      select database() as name, @@collation_database as collation`.execute(db);
    assert.deepEqual(rows, [{ name: new URL(url).pathname.slice(1), collation: "utf8mb4_bin" }]);
  });

  test("mariadb:// URLs and the original's defaults parse; a URL without a database is refused", () => {
    const parsed = parseMysqlUrl("mariadb://app:p%40ss@db.internal:3307/users?ssl=true");
    assert.deepEqual(parsed, {
      database: "users",
      connection: { host: "db.internal", port: 3307, user: "app", password: "p@ss", ssl: {} },
    });
    assert.equal(parseMysqlUrl("mysql://h/x").connection.port, 3306);
    assert.throws(() => parseMysqlUrl("mysql://root@localhost:3306"), /must name a database/);
    assert.throws(() => parseMysqlUrl("mysql://root@localhost/x?pool=3"), /unsupported parameter pool/);
  });

  test("an unreachable server fails fast with an error isDatabaseUnavailable recognises", async (t) => {
    const url = `mysql://root@127.0.0.1:${await closedPort()}/vid2mp3_nowhere`;
    const db = openDatabase({ url, sqliteFile: "/nonexistent/unused.sqlite" });
    t.after(() => db.destroy().catch(() => {}));
    const started = Date.now();
    const error = await sql`select 1`.execute(db).catch((e: unknown) => e);
    assert.ok(error instanceof Error, "the query fails");
    assert.equal(isDatabaseUnavailable(error), true, String(error));
    assert.ok(Date.now() - started < 2000);
  });

  test("a server that goes silent times out (connect and query) and the pool recovers when it is back", async (t) => {
    const database = await createTestDatabase();
    t.after(() => database.drop());
    const proxy = await startTcpProxy(Number(new URL(database.url).port || 3306));
    t.after(() => proxy.close());
    const url = new URL(database.url);
    url.port = String(proxy.port);
    const db = openDatabase({
      url: url.toString(),
      sqliteFile: "/nonexistent/unused.sqlite",
      mysql: { connectTimeoutMs: 700, queryTimeoutMs: 700, connectionLimit: 2 },
    });
    t.after(() => db.destroy());
    await Promise.all([sql`select 1`.execute(db), sql`select 1`.execute(db)]);

    await proxy.pause("hang");
    for (let i = 0; i < 3; i++) {
      const started = Date.now();
      const error = await sql`select 1`.execute(db).catch((e: unknown) => e);
      assert.equal(isDatabaseUnavailable(error), true, String(error));
      assert.ok(Date.now() - started < 1500, `failed after ${Date.now() - started} ms`);
    }

    await proxy.resume();
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(db);
    assert.deepEqual(rows, [{ one: 1 }]);
  });
});

test("SQLite: a database locked by another writer counts as unavailable, not as a bug", async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-db-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, "locked.sqlite");
  const db = openDatabase({ sqliteFile: file });
  await sql`create table t (x integer)`.execute(db);
  await db.destroy();
  const holder = new DatabaseSync(file);
  const other = new DatabaseSync(file, { timeout: 0 });
  t.after(() => {
    holder.close();
    other.close();
  });
  holder.exec("begin immediate; insert into t values (1);");
  let error: unknown;
  try {
    other.exec("insert into t values (2)");
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof Error, "the second writer is refused");
  assert.equal(isDatabaseUnavailable(error), true, String(error));
  holder.exec("rollback");
});

test("errors of other backends with network codes are not database errors", () => {
  const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9000"), { code: "ECONNREFUSED" });
  assert.equal(isDatabaseUnavailable(refused), false);
  assert.equal(isDatabaseUnavailable(new TypeError("fetch failed", { cause: refused })), false);
  assert.equal(isDatabaseUnavailable(undefined), false);
});
