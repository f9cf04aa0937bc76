import type { Migration } from "kysely";
import { AUTH_MIGRATION_TABLE, authMigrations } from "../auth/migrations.ts";
import { GATEWAY_MIGRATION_TABLE, gatewayMigrations } from "../gateway/migrations.ts";
import { openServiceDatabase } from "../platform/backends.ts";
import type { Config } from "../platform/config.ts";
import { migrateToLatest } from "../platform/database.ts";
import type { Logger } from "../platform/logger.ts";
import type { MigratableService } from "./service-names.ts";

/** The services that own a database, with their migrations and bookkeeping table. */
const migratableServices: Record<
  MigratableService,
  { migrations: Record<string, Migration>; table: string }
> = {
  auth: { migrations: authMigrations, table: AUTH_MIGRATION_TABLE },
  gateway: { migrations: gatewayMigrations, table: GATEWAY_MIGRATION_TABLE },
};

/**
 * Migrates one service's database to the latest schema and returns: the step a Kubernetes Job or
 * an init container runs with a user allowed DDL, so the service itself can run with one that is
 * not (MIGRATE_ON_START=false).
 */
export async function migrate(service: MigratableService, config: Config, logger: Logger): Promise<void> {
  const { migrations, table } = migratableServices[service];
  const db = openServiceDatabase(config, service);
  try {
    await migrateToLatest(db, migrations, { table });
    logger.info(
      { service, migrations: Object.keys(migrations).length },
      `${service} database schema is up to date`,
    );
  } finally {
    await db.destroy();
  }
}
