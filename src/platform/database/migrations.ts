import { type Kysely, type Migration, type MigrationProvider, Migrator, sql } from "kysely";
import { errorMessage } from "../error-message.ts";

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
  await adoptLegacyMigrationTable(kysely, migrations, options.table);
  const { error, results } = await migrator(kysely, migrations, options.table).migrateToLatest();
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
  const known = await migrator(db as Kysely<unknown>, migrations, options.table).getMigrations();
  const pending = known.filter((m) => m.executedAt === undefined).map((m) => m.name);
  if (pending.length > 0) {
    throw new Error(
      `the ${options.service} database schema is behind (${pending.length} migration(s) pending: ${pending.join(", ")}); ` +
        `run \`vid2mp3 migrate ${options.service}\` with a database user allowed to change tables, or set MIGRATE_ON_START=true`,
    );
  }
}

/** Kysely's migrator over the service's own bookkeeping table and its `_lock` companion. */
function migrator(db: Kysely<unknown>, migrations: Record<string, Migration>, table: string): Migrator {
  const provider: MigrationProvider = { getMigrations: async () => migrations };
  return new Migrator({ db, provider, migrationTableName: table, migrationLockTableName: `${table}_lock` });
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
