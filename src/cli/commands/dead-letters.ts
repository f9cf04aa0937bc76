import type { Command } from "commander";
import { errorMessage } from "../../platform/error-message.ts";

/** `vid2mp3 dead-letters list|show|replay|purge`: administrators, against RabbitMQ (see ../dead-letters.ts). */
export function registerDeadLetterCommands(program: Command): void {
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
}

type DeadLetterCli = typeof import("../dead-letters.ts");

/** Loads the RabbitMQ code only when a dead-letter command runs; a configuration error exits 2. */
function deadLetterAction<Args extends unknown[]>(
  pick: (cli: DeadLetterCli) => (...args: Args) => Promise<void>,
) {
  return async (...args: Args): Promise<void> => {
    const [cli, { ConfigError }] = await Promise.all([
      import("../dead-letters.ts"),
      import("../../platform/config.ts"),
    ]);
    try {
      await pick(cli)(...args);
    } catch (error) {
      process.stderr.write(`vid2mp3: ${errorMessage(error)}\n`);
      process.exit(error instanceof ConfigError ? 2 : 1);
    }
  };
}
