#!/usr/bin/env node
import { Command, InvalidArgumentError } from "commander";
import packageJson from "../../package.json" with { type: "json" };
import { generateSigningKey } from "../auth/tokens.ts";
import { ConfigError, loadConfig } from "../platform/config.ts";
import { createLogger } from "../platform/logger.ts";
import { type ServiceName, serve, serviceNames } from "./serve.ts";

const program = new Command()
  .name("vid2mp3")
  .description("Upload a video, get its MP3: a self-hosted conversion service.")
  .version(packageJson.version)
  .showHelpAfterError();

program
  .command("serve")
  .description(
    "Run one service, or `all` of them in this process. Backends come from the environment: MySQL/MariaDB " +
      "(DATABASE_URL or MYSQL_*), RabbitMQ (AMQP_URL), S3 (S3_BUCKET), SMTP (SMTP_URL); each one unset is " +
      "its embedded default under DATA_DIR.",
  )
  .argument("[service]", `which service to run: ${serviceNames.join(", ")}`, parseService, "all")
  .addHelpText(
    "after",
    `
Configuration is read from environment variables (see docs/architecture.md), e.g.
  PORT=8080 DATA_DIR=./data ADMIN_EMAIL=me@example.com ADMIN_PASSWORD=... vid2mp3 serve all`,
  )
  .action(async (service: ServiceName) => {
    const config = loadConfig();
    const logger = createLogger(config.logLevel, service === "all" ? "vid2mp3" : service);
    const system = await serve(service, config, logger);
    logger.info({ url: system.url, dataDir: config.dataDir }, `vid2mp3 ${service} is ready on ${system.url}`);
    stopOnSignal(() => system.close(), logger);
  });

program
  .command("keygen")
  .description(
    "Print a new Ed25519 signing key (a private JWK with its kid) for JWT_PRIVATE_KEY: every auth replica must sign with the same key.",
  )
  .action(async () => {
    process.stdout.write(`${await generateSigningKey()}\n`);
  });

function parseService(value: string): ServiceName {
  if (!(serviceNames as readonly string[]).includes(value)) {
    throw new InvalidArgumentError(`expected one of: ${serviceNames.join(", ")}`);
  }
  return value as ServiceName;
}

/** SIGTERM/SIGINT: a graceful stop, bounded in time; a second signal stops at once. */
function stopOnSignal(
  close: () => Promise<void>,
  logger: ReturnType<typeof createLogger>,
  graceMs = 25_000,
): void {
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

try {
  await program.parseAsync();
} catch (error) {
  if (error instanceof ConfigError) {
    process.stderr.write(`vid2mp3: ${error.message}\n`);
    process.exit(2);
  }
  throw error;
}
