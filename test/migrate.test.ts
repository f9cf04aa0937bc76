import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { sql } from "kysely";
import { authMigrations } from "../src/auth/migrations.ts";
import { createAuthService } from "../src/auth/service.ts";
import { openServiceDatabase } from "../src/platform/backends.ts";
import { loadConfig } from "../src/platform/config.ts";
import { openDatabase, prepareSchema } from "../src/platform/database.ts";
import { createLogger } from "../src/platform/logger.ts";
import { createTestDatabase, type TestDatabase } from "./support/mariadb.ts";

const run = promisify(execFile);
const main = path.join(import.meta.dirname, "..", "src", "cli", "main.ts");

/** `vid2mp3 migrate <service>` as a separate process, the way a Kubernetes Job runs it. */
function migrateCommand(service: string, databaseUrl: string) {
  return run(process.execPath, [main, "migrate", service], {
    env: { PATH: process.env.PATH, DATABASE_URL: databaseUrl, LOG_LEVEL: "info" },
    timeout: 60_000,
  });
}

describe("migrations run apart (a DDL-capable Job) while the services run with a user that may not change tables", () => {
  let database: TestDatabase;
  let restrictedUrl: string;
  let dataDir: string;
  const restrictedUser = `vid2mp3_rt_${randomBytes(4).toString("hex")}`;
  const password = randomBytes(12).toString("hex");
  const root = () => openDatabase({ url: database.url, sqliteFile: "/nonexistent/unused.sqlite" });

  before(async () => {
    database = await createTestDatabase();
    dataDir = await mkdtemp(path.join(tmpdir(), "vid2mp3-migrate-"));
    const dbName = new URL(database.url).pathname.slice(1);
    const db = root();
    try {
      await sql`create user ${sql.lit(restrictedUser)}@'%' identified by ${sql.lit(password)}`.execute(db);
      // Reading and writing rows only: no CREATE, ALTER, DROP or INDEX.
      await sql`grant select, insert, update, delete on ${sql.id(dbName)}.* to ${sql.lit(restrictedUser)}@'%'`.execute(
        db,
      );
    } finally {
      await db.destroy();
    }
    const url = new URL(database.url);
    url.username = restrictedUser;
    url.password = password;
    restrictedUrl = url.toString();
  });
  after(async () => {
    const db = root();
    await sql`drop user if exists ${sql.lit(restrictedUser)}@'%'`.execute(db).finally(() => db.destroy());
    await database.drop();
    await rm(dataDir, { recursive: true, force: true });
  });

  const restrictedConfig = () =>
    loadConfig({
      DATA_DIR: dataDir,
      DATABASE_URL: restrictedUrl,
      MIGRATE_ON_START: "false",
      ADMIN_EMAIL: "admin@example.com",
      ADMIN_PASSWORD: "admin-password",
    });

  test("the restricted user really cannot migrate", async () => {
    const db = openServiceDatabase(restrictedConfig(), "auth");
    try {
      await assert.rejects(
        prepareSchema(db, authMigrations, { table: "auth_migrations", service: "auth", migrate: true }),
        /denied/i,
      );
    } finally {
      await db.destroy();
    }
  });

  test("before the migration, auth with MIGRATE_ON_START=false refuses to start and says what to run", async () => {
    const config = restrictedConfig();
    const db = openServiceDatabase(config, "auth");
    try {
      await assert.rejects(
        createAuthService(config, { logger: createLogger("silent", "auth"), db }),
        /auth database schema is behind .*vid2mp3 migrate auth/,
      );
    } finally {
      await db.destroy();
    }
  });

  test("`vid2mp3 migrate auth` migrates (twice is harmless); auth then starts and serves on the restricted user", async () => {
    for (let i = 0; i < 2; i++) {
      const { stdout } = await migrateCommand("auth", database.url);
      assert.match(stdout, /auth database schema is up to date/);
    }
    const config = restrictedConfig();
    const db = openServiceDatabase(config, "auth");
    const service = await createAuthService(config, { logger: createLogger("silent", "auth"), db });
    try {
      const login = await service.app.inject({
        method: "POST",
        url: "/login",
        headers: {
          authorization: `Basic ${Buffer.from("admin@example.com:admin-password").toString("base64")}`,
        },
      });
      assert.equal(login.statusCode, 200, login.body);
    } finally {
      await service.close();
      await db.destroy();
    }
  });

  test("`vid2mp3 migrate gateway` creates the jobs table; an unknown service is a usage error", async () => {
    await migrateCommand("gateway", database.url);
    const db = openServiceDatabase(restrictedConfig(), "gateway");
    try {
      const { rows } = await sql<{ n: number }>`select count(*) as n from jobs`.execute(db);
      assert.equal(Number(rows[0]?.n), 0);
    } finally {
      await db.destroy();
    }
    await assert.rejects(
      migrateCommand("converter", database.url),
      (error: { code?: number; stderr?: string }) => {
        assert.equal(error.code, 2, "a usage error");
        assert.match(error.stderr ?? "", /expected one of: auth, gateway/);
        return true;
      },
    );
  });
});
