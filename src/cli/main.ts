#!/usr/bin/env node
import { Command, type CommanderError, InvalidArgumentError } from "commander";
import packageJson from "../../package.json" with { type: "json" };
import { ConfigError, loadConfig } from "../platform/config.ts";
import { createLogger } from "../platform/logger.ts";
import type { ConvertOptions, ServerOption } from "./commands.ts";
import { addConversionFlags } from "./convert-options.ts";
import {
  type MigratableService,
  migratableServiceNames,
  type ServiceName,
  serviceNames,
} from "./service-names.ts";

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
  .argument("[service]", `which service to run: ${serviceNames.join(", ")}`, oneOf(serviceNames), "all")
  .addHelpText(
    "after",
    `
Configuration is read from environment variables (see docs/architecture.md), e.g.
  PORT=8080 DATA_DIR=./data ADMIN_EMAIL=me@example.com ADMIN_PASSWORD=... vid2mp3 serve all`,
  )
  .action(async (service: ServiceName) => {
    const config = loadConfig();
    const logger = createLogger(config.logLevel, service === "all" ? "vid2mp3" : service);
    // Loaded here, not at the top: client commands should not pay for every service and SDK.
    const { serve } = await import("./serve.ts");
    const system = await serve(service, config, logger);
    logger.info({ url: system.url, dataDir: config.dataDir }, `vid2mp3 ${service} is ready on ${system.url}`);
    // The converter's drain comes on top of the usual shutdown bound.
    stopOnSignal(() => system.close(), logger, 25_000 + config.converterDrainSeconds * 1000);
  });

program
  .command("migrate")
  .description(
    "Migrate one service's database to the latest schema, then exit: run it with a user allowed to change tables " +
      "(a Kubernetes Job), and the service with MIGRATE_ON_START=false and a user that is not.",
  )
  .argument(
    "<service>",
    `whose database: ${migratableServiceNames.join(", ")}`,
    oneOf(migratableServiceNames),
  )
  .action(async (service: MigratableService) => {
    const config = loadConfig();
    const logger = createLogger(config.logLevel, service);
    const { migrate } = await import("./migrate.ts");
    await migrate(service, config, logger);
  });

program
  .command("keygen")
  .description(
    "Print a new Ed25519 signing key (a private JWK with its kid) for JWT_PRIVATE_KEY: every auth replica must sign with the same key.",
  )
  .action(async () => {
    const { generateSigningKey } = await import("../auth/tokens.ts");
    process.stdout.write(`${await generateSigningKey()}\n`);
  });

// Administrators: RabbitMQ's dead-letter queues, reached with AMQP_URL (see dead-letters.ts).
const deadLetters = program
  .command("dead-letters")
  .description(
    "Administrators: the messages that failed for good, in RabbitMQ's dead-letter queues <queue>.dead. " +
      "Talks to RabbitMQ itself: needs AMQP_URL (and VIDEO_QUEUE, MP3_QUEUE, JOB_EVENTS_QUEUE if renamed).",
  );
const queueOption = [
  "--queue <name...>",
  "only these work queues (default: video, mp3, job-events)",
] as const;
type DeadLetterCli = typeof import("./dead-letters.ts");
const deadLetterAction =
  <Args extends unknown[]>(pick: (cli: DeadLetterCli) => (...args: Args) => Promise<void>) =>
  async (...args: Args): Promise<void> => {
    const cli = await import("./dead-letters.ts");
    try {
      await pick(cli)(...args);
    } catch (error) {
      process.stderr.write(`vid2mp3: ${(error as Error).message}\n`);
      process.exit(error instanceof ConfigError ? 2 : 1);
    }
  };
deadLetters
  .command("list")
  .description("List the dead letters: id, queue, when, attempts, reason.")
  .option(...queueOption)
  .option("--json", "as JSON, bodies included")
  .action(deadLetterAction((cli) => cli.listDeadLetters));
deadLetters
  .command("show <id>")
  .description("One dead letter in full: its reason and the original message.")
  .option(...queueOption)
  .action(deadLetterAction((cli) => cli.showDeadLetter));
deadLetters
  .command("replay [ids...]")
  .description("Publish dead letters to their queue again, as first deliveries, and remove them.")
  .option(...queueOption)
  .option("--all", "every dead letter (of the chosen queues)")
  .action(deadLetterAction((cli) => cli.replayDeadLetters));
deadLetters
  .command("purge")
  .description("Delete the dead letters for good.")
  .option(...queueOption)
  .option("--yes", "really")
  .action(deadLetterAction((cli) => cli.purgeDeadLetters));

// The client commands: they talk to a vid2mp3 server (its gateway) over HTTP. Their code is
// loaded only when one of them runs, so `serve` does not pay for it.

type Client = typeof import("./commands.ts");

/** The action of a client command: errors become one line on stderr and exit code 1 (2 for usage). */
function run<Args extends unknown[]>(pick: (client: Client) => (...args: Args) => Promise<void>) {
  return async (...args: Args): Promise<void> => {
    const client = await import("./commands.ts");
    await client.action(pick(client))(...args);
  };
}

/** A client command: `--server`, a short hint after a usage error, and exit code 2 for usage errors. */
function clientCommand(parent: Command, nameAndArgs: string, description: string): Command {
  const name = nameAndArgs.split(" ")[0] ?? nameAndArgs;
  const path = parent === program ? name : `${parent.name()} ${name}`;
  return parent
    .command(nameAndArgs)
    .description(description)
    .option("--server <url>", "the vid2mp3 server (default: $VID2MP3_URL, else http://localhost:8080)")
    .showHelpAfterError(`(see \`vid2mp3 ${path} --help\`)`)
    .exitOverride((error: CommanderError) => process.exit(error.exitCode === 0 ? 0 : 2));
}

clientCommand(program, "login", "Log in to a vid2mp3 server and keep the token for the other commands.")
  .option("--email <email>", "your e-mail (asked for when missing)")
  .option("--password-stdin", "read the password from standard input (for scripts)")
  .addHelpText(
    "after",
    `
The password is asked for on the terminal without echo, or read from $VID2MP3_PASSWORD or, with
--password-stdin, from standard input. The token is kept per server in
$XDG_CONFIG_HOME/vid2mp3/credentials.json (default ~/.config/vid2mp3/, readable only by you).

Examples:
  vid2mp3 login --email me@example.com
  echo "$PASSWORD" | vid2mp3 login --server https://vid2mp3.example.com --email me@example.com --password-stdin`,
  )
  .action(run((client) => client.login));

clientCommand(program, "logout", "Forget the token kept for a server.").action(
  run((client) => client.logout),
);

addConversionFlags(
  clientCommand(program, "convert <file...>", "Upload videos, follow their conversion and download the MP3s.")
    .option("-o, --output <dir>", "where to save the MP3s (default: next to each video)")
    .option("--no-wait", "only upload; follow the jobs later with `vid2mp3 jobs`")
    .option("-f, --force", "overwrite an MP3 that already exists")
    .option("-q, --quiet", "no progress, only the MP3 paths (or job ids)"),
)
  .addHelpText(
    "after",
    `
Each file is uploaded, converted and downloaded in turn, with progress bars on a terminal and
plain progress lines otherwise; the path of each MP3 is printed on a line of its own. A file
that fails is reported and the others still go; the command then exits 1.

The conversion options apply to every file given; without them the MP3 is VBR V2 with the
video's tags, a frame of the video as its cover and the video's chapters.

Examples:
  vid2mp3 convert holiday.mp4
  vid2mp3 convert *.mkv --output ~/Music
  vid2mp3 convert talk.mkv --quality 320k --start 1:00 --end 2:30 --normalize --mono --track eng \\
    --title "The talk" --artist Me --no-cover --no-chapters`,
  )
  .action(run((client) => (files: string[], options: ConvertOptions) => client.convert(files, options)));

clientCommand(program, "jobs", "List your conversion jobs, newest first.")
  .option("--limit <n>", "how many jobs to show (1-100)", parseLimit, 20)
  .option("--json", "print the API's JSON")
  .action(run((client) => client.jobs));

clientCommand(program, "download <fid>", "Download an MP3 by its fid (from `vid2mp3 jobs` or the e-mail).")
  .option("-o, --output <dir>", "where to save it (default: the current directory)")
  .option("-f, --force", "overwrite a file that already exists")
  .option("-q, --quiet", "no progress, only the path")
  .action(run((client) => client.downloadMp3));

clientCommand(program, "delete <jobId>", "Delete a job and its files.").action(
  run((client) => client.deleteJob),
);

const users = program
  .command("users")
  .description("Manage user accounts (administrators only).")
  .showHelpAfterError("(see `vid2mp3 users --help`)")
  .exitOverride((error: CommanderError) => process.exit(error.exitCode === 0 ? 0 : 2));

clientCommand(users, "list", "List the accounts.")
  .option("--json", "print the API's JSON")
  .action(run((client) => client.listUsers));

clientCommand(users, "add <email>", "Create an account.")
  .option("--admin", "make it an administrator")
  .option("--password-stdin", "read its password from standard input (else asked for twice)")
  .action(run((client) => client.addUser));

clientCommand(users, "disable <id>", "Disable an account (by id or e-mail): it can no longer log in.").action(
  run((client) => (id: string, options: ServerOption) => client.setUserDisabled(id, true, options)),
);

clientCommand(users, "enable <id>", "Enable a disabled account again (by id or e-mail).").action(
  run((client) => (id: string, options: ServerOption) => client.setUserDisabled(id, false, options)),
);

function parseLimit(value: string): number {
  const limit = Number(value);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
    throw new InvalidArgumentError("expected a whole number from 1 to 100");
  }
  return limit;
}

/** A commander argument parser that accepts one of `names`. */
function oneOf<T extends string>(names: readonly T[]): (value: string) => T {
  return (value) => {
    if (!(names as readonly string[]).includes(value)) {
      throw new InvalidArgumentError(`expected one of: ${names.join(", ")}`);
    }
    return value as T;
  };
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
