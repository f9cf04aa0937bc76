import type { TestContext } from "node:test";
import { createJobsRepository, type GatewayDatabase } from "../../src/gateway/jobs.ts";
import { GATEWAY_MIGRATION_TABLE, gatewayMigrations } from "../../src/gateway/migrations.ts";
import { migrateToLatest } from "../../src/platform/database.ts";
import { type TestDatabaseBackend, testDatabaseBackends } from "./mariadb.ts";

/**
 * The gateway's jobs table on a fresh database of `backend` (SQLite unless told), migrated as the
 * gateway does, and its repository; the database is removed when the test ends.
 */
export async function gatewayJobs(t: TestContext, backend: TestDatabaseBackend = sqlite()) {
  const { db, cleanup } = await backend.open<GatewayDatabase>();
  t.after(cleanup);
  await migrateToLatest(db, gatewayMigrations, { table: GATEWAY_MIGRATION_TABLE });
  return { db, jobs: createJobsRepository(db) };
}

function sqlite(): TestDatabaseBackend {
  const backend = testDatabaseBackends.find((b) => b.name === "SQLite");
  if (!backend) throw new Error("no SQLite test backend");
  return backend;
}
