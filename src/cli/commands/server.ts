import { type Command, InvalidArgumentError } from "commander";
import type { Logger } from "../../platform/logger.ts";
import {
  type MigratableService,
  migratableServiceNames,
  type ServiceName,
  serviceNames,
} from "../service-names.ts";

/** The oldest Node.js the services run on (node:sqlite, and the TypeScript sources in a checkout). */
export const SERVER_NODE_MAJOR = 24;

/**
 * The client commands run on Node.js 20 and newer; the services need 24. Said in one line, with
 * the way out, rather than a crash deep inside a module.
 */
export function requireServerRuntime(command: string, version = process.versions.node): void {
  const major = Number(version.split(".")[0]);
  if (major >= SERVER_NODE_MAJOR) return;
  process.stderr.write(
    `vid2mp3: \`${command}\` needs Node.js ${SERVER_NODE_MAJOR} or newer; this is Node.js ${version} (the client commands work here).\n`,
  );
  process.exit(1);
}

/** `vid2mp3 serve`, `migrate` and `keygen`. */
export function registerServerCommands(program: Command): void {
  program
    .command("serve")
    .description("Run one service, or `all` of them in this process (needs Node.js 24).")
    .argument("[service]", `which service to run: ${serviceNames.join(", ")}`, parseService, "all")
    .addHelpText(
      "after",
      `
Backends come from the environment: MySQL/MariaDB (DATABASE_URL or MYSQL_*), RabbitMQ
(AMQP_URL), S3 (S3_BUCKET), SMTP (SMTP_URL); each one unset is its embedded default under
DATA_DIR. Configuration is read from environment variables (see docs/architecture.md), e.g.
  PORT=8080 DATA_DIR=./data ADMIN_EMAIL=me@example.com ADMIN_PASSWORD=... vid2mp3 serve all`,
    )
    .action(async (service: ServiceName) => {
      requireServerRuntime("vid2mp3 serve");
      // Every upload and download streams through the gateway (see stream-gc.ts for the trade).
      if (service === "gateway" || service === "all") {
        const { collectStreamedBuffersWithTheHeap } = await import("../../platform/stream-gc.ts");
        collectStreamedBuffersWithTheHeap();
      }
      // Loaded here, not at the top: client commands should not pay for every service and SDK.
      const [config, { createLogger }, { serve }] = await Promise.all([
        loadServerConfig(),
        import("../../platform/logger.ts"),
        import("../serve.ts"),
      ]);
      const logger = createLogger(config.logLevel, service === "all" ? "vid2mp3" : service);
      const system = await serve(service, config, logger);
      logger.info(
        { url: system.url, dataDir: config.dataDir },
        `vid2mp3 ${service} is ready on ${system.url}`,
      );
      // The converter's drain comes on top of the usual shutdown bound.
      stopOnSignal(() => system.close(), logger, 25_000 + config.converterDrainSeconds * 1000);
    });

  program
    .command("migrate")
    .description("Migrate one service's database to the latest schema, then exit (needs Node.js 24).")
    .argument("<service>", `whose database: ${migratableServiceNames.join(", ")}`, parseMigratable)
    .addHelpText(
      "after",
      "\nRun it with a database user allowed to change tables (a Kubernetes Job), and the service with\nMIGRATE_ON_START=false and a user that is not.",
    )
    .action(async (service: MigratableService) => {
      requireServerRuntime("vid2mp3 migrate");
      const [config, { createLogger }, { migrate }] = await Promise.all([
        loadServerConfig(),
        import("../../platform/logger.ts"),
        import("../migrate.ts"),
      ]);
      await migrate(service, config, createLogger(config.logLevel, service));
    });

  program
    .command("keygen")
    .description("Print a new signing key for JWT_PRIVATE_KEY (needs Node.js 24).")
    .addHelpText(
      "after",
      "\nThe key is an Ed25519 private JWK with its kid: every auth replica must sign with the same key.",
    )
    .action(async () => {
      requireServerRuntime("vid2mp3 keygen");
      const { generateSigningKey } = await import("../../auth/tokens.ts");
      process.stdout.write(`${await generateSigningKey()}\n`);
    });
}

/** The configuration from the environment; a wrong value is one line naming the variable, exit 2. */
async function loadServerConfig() {
  const { ConfigError, loadConfig } = await import("../../platform/config.ts");
  try {
    return loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`vid2mp3: ${error.message}\n`);
    process.exit(2);
  }
}

function parseMigratable(value: string): MigratableService {
  if (!(migratableServiceNames as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`expected one of: ${migratableServiceNames.join(", ")}`);
  }
  return value as MigratableService;
}

function parseService(value: string): ServiceName {
  if (!(serviceNames as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`expected one of: ${serviceNames.join(", ")}`);
  }
  return value as ServiceName;
}

/** SIGTERM/SIGINT: a graceful stop, bounded in time; a second signal stops at once. */
function stopOnSignal(close: () => Promise<void>, logger: Logger, graceMs = 25_000): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    logger.info({ signal }, "shutting down");
    setTimeout(() => {
      logger.error("shutdown took too long; exiting");
      process.exit(1);
    }, graceMs).unref();
    close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
