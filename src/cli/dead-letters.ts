import type { DeadLetterEntry } from "../platform/broker/rabbitmq/dead-letters.ts";
import { ConfigError, loadConfig } from "../platform/config.ts";

/**
 * `vid2mp3 dead-letters list|show|replay|purge`: for administrators, against RabbitMQ itself
 * (AMQP_URL, the broker's credentials), not through the gateway: dead letters are an operator's
 * matter, and the command works while the gateway is down. Run it where the broker is reachable
 * (`kubectl exec deploy/converter -- vid2mp3 dead-letters list`, or a port-forward).
 */

export interface DeadLetterOptions {
  queue?: string[];
  json?: boolean;
}

async function withAdmin<T>(
  options: DeadLetterOptions,
  work: (
    admin: import("../platform/broker/rabbitmq/dead-letters.ts").DeadLetterAdmin,
    queues: string[],
  ) => Promise<T>,
): Promise<T> {
  const config = loadConfig();
  if (!config.amqpUrl) {
    throw new ConfigError(
      "Missing environment variable AMQP_URL: dead letters live in RabbitMQ (the embedded broker keeps none across a restart)",
    );
  }
  const queues = options.queue?.length
    ? options.queue
    : [config.queues.video, config.queues.mp3, config.queues.jobEvents];
  const { openDeadLetterAdmin } = await import("../platform/broker/rabbitmq/dead-letters.ts");
  const admin = await openDeadLetterAdmin(config.amqpUrl);
  try {
    return await work(admin, queues);
  } finally {
    await admin.close();
  }
}

const line = (text: string) => process.stdout.write(`${text}\n`);

function summary({ id, letter }: DeadLetterEntry): string {
  const reason = letter.reason.length > 100 ? `${letter.reason.slice(0, 99)}…` : letter.reason;
  return `${id}  ${letter.queue}  ${letter.deadAt || "-"}  attempts ${letter.attempts}  ${reason}`;
}

export async function listDeadLetters(options: DeadLetterOptions): Promise<void> {
  const entries = await withAdmin(options, (admin, queues) => admin.list(queues));
  if (options.json) line(JSON.stringify(entries, null, 2));
  else if (entries.length === 0) line("No dead letters.");
  else for (const entry of entries) line(summary(entry));
}

export async function showDeadLetter(id: string, options: DeadLetterOptions): Promise<void> {
  const entries = await withAdmin(options, (admin, queues) => admin.list(queues));
  const entry = entries.find((e) => e.id === id);
  if (!entry) throw new Error(`no dead letter with id ${id} (see: vid2mp3 dead-letters list)`);
  line(JSON.stringify(entry, null, 2));
}

export async function replayDeadLetters(
  ids: string[],
  options: DeadLetterOptions & { all?: boolean },
): Promise<void> {
  if (ids.length === 0 && !options.all) {
    throw new ConfigError("Say which dead letters to replay: their ids, or --all");
  }
  const replayed = await withAdmin(options, (admin, queues) =>
    admin.replay(queues, options.all ? undefined : ids),
  );
  const missing = ids.filter((id) => !replayed.some((e) => e.id === id));
  for (const entry of replayed) line(`replayed ${entry.id} to ${entry.letter.queue}`);
  if (missing.length > 0) throw new Error(`no dead letter with id ${missing.join(", ")}`);
  if (replayed.length === 0) line("No dead letters.");
}

export async function purgeDeadLetters(options: DeadLetterOptions & { yes?: boolean }): Promise<void> {
  if (!options.yes) throw new ConfigError("Purging deletes the dead letters for good: add --yes");
  const purged = await withAdmin(options, (admin, queues) => admin.purge(queues));
  line(`purged ${purged} dead letter${purged === 1 ? "" : "s"}`);
}
