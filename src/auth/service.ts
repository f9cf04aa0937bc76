import type { FastifyInstance } from "fastify";
import { type Kysely, sql } from "kysely";
import { componentSchemas } from "../contracts/api-components.ts";
import type { Config } from "../platform/config.ts";
import { prepareSchema } from "../platform/database.ts";
import { createHttpServer, registerHealthRoutes } from "../platform/http.ts";
import type { Logger } from "../platform/logger.ts";
import { createServiceMetrics, type ServiceMetrics } from "../platform/metrics.ts";
import { type BootstrapOptions, ensureFirstAdmin } from "./bootstrap.ts";
import type { LoginThrottleOptions } from "./login-throttle.ts";
import { AUTH_MIGRATION_TABLE, type AuthDatabase, authMigrations } from "./migrations.ts";
import { createPasswordAttempts } from "./password-attempts.ts";
import { prepareLoginTiming } from "./passwords.ts";
import { registerAuthRoutes } from "./routes.ts";
import { createTokenService, type TokenServiceOptions } from "./tokens.ts";
import { createUsersRepository } from "./users.ts";

/** Auth reads only these settings of the configuration (`dataDir` and `jwt` for its token service). */
export type AuthConfig = Pick<
  Config,
  "admin" | "dataDir" | "jwt" | "metricsToken" | "migrateOnStart" | "registrationOpen" | "trustProxy"
>;

export type { AuthDatabase } from "./migrations.ts";
export { TOKEN_AUDIENCE, TOKEN_ISSUER } from "./tokens.ts";

/** The port the auth service listens on when PORT is not set (the Python original's). */
export const AUTH_DEFAULT_PORT = 5000;

export interface AuthServiceDeps {
  logger: Logger;
  /** Owned by the caller: the service migrates it but does not close it. */
  db: Kysely<AuthDatabase>;
  /** Tests only: where the generated admin password is printed, and the token clock. */
  bootstrap?: BootstrapOptions;
  tokens?: TokenServiceOptions;
  /** Tests only: the failed-login limits and their clock. */
  loginThrottle?: LoginThrottleOptions;
  addressThrottle?: LoginThrottleOptions;
  /** Where its metrics go; by default a registry of its own. */
  metrics?: ServiceMetrics;
}

export interface AuthService {
  app: FastifyInstance;
  close(): Promise<void>;
}

/**
 * The auth service: users, login (Basic → JWT), token validation and the JWKS. Ready to
 * `app.listen` (or `app.inject`) when the promise resolves: schema migrated, signing key loaded,
 * first administrator created.
 */
export async function createAuthService(config: AuthConfig, deps: AuthServiceDeps): Promise<AuthService> {
  const { logger, db } = deps;
  await prepareSchema(db, authMigrations, {
    table: AUTH_MIGRATION_TABLE,
    service: "auth",
    migrate: config.migrateOnStart,
  });
  const users = createUsersRepository(db);
  const tokens = await createTokenService(config, deps.tokens);
  await Promise.all([ensureFirstAdmin(users, config, logger, deps.bootstrap), prepareLoginTiming()]);
  logger.info({ algorithm: tokens.algorithm }, "auth service ready");

  const app = await createHttpServer(logger, {
    // The gateway passes the client's address on; believed only from TRUST_PROXY, or by default
    // from loopback and private networks, where the gateway calls from (auth is never public).
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : ["loopback", "uniquelocal"],
    metrics: deps.metrics ?? createServiceMetrics("auth"),
    metricsToken: config.metricsToken,
    openapi: { title: "vid2mp3 auth", version: "1", description: "Users, login and token validation." },
  });
  for (const schema of componentSchemas("User", "IssuedToken")) app.addSchema(schema);
  registerHealthRoutes(app, [
    { name: "database", check: async () => void (await sql`select 1`.execute(db)) },
  ]);
  registerAuthRoutes(app, {
    config,
    users,
    tokens,
    attempts: createPasswordAttempts({ perAccount: deps.loginThrottle, perAddress: deps.addressThrottle }),
  });

  return { app, close: () => app.close() };
}
