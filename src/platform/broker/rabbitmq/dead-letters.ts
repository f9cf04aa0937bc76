import { randomUUID } from "node:crypto";
import { type ConfirmChannel, connect, type GetMessage } from "amqplib";
import { type DeadLetter, deadLetterQueue } from "../broker.ts";
import { ATTEMPT_HEADER } from "./topology.ts";

/**
 * The operator's hands on the dead-letter queues `<q>.dead` of RabbitMQ (what
 * `vid2mp3 dead-letters list|show|replay|purge` runs), straight over AMQP with the broker's own
 * credentials: whoever holds AMQP_URL is the administrator here, as for `rabbitmqctl`.
 *
 * Reading takes every message of a dead-letter queue without acknowledging it and then closes the
 * channel, which puts them all back in their order: a look changes nothing. A replay publishes the
 * original body to its queue again as a first delivery (confirmed) and only then acknowledges the
 * dead letter, so a crash in between at worst replays it twice (handlers are idempotent).
 */

export interface DeadLetterEntry {
  /** The dead letter's message id: what `show` and `replay` take. */
  id: string;
  /** The dead-letter queue it sits in. */
  deadQueue: string;
  letter: DeadLetter;
}

export interface DeadLetterAdmin {
  list(queues: string[]): Promise<DeadLetterEntry[]>;
  /** Publishes the bodies of the chosen dead letters (by id; all with `ids` undefined) to their queues again and removes them; returns those replayed. */
  replay(queues: string[], ids: string[] | undefined): Promise<DeadLetterEntry[]>;
  /** Empties the dead-letter queues; returns how many messages went. */
  purge(queues: string[]): Promise<number>;
  close(): Promise<void>;
}

export async function openDeadLetterAdmin(url: string): Promise<DeadLetterAdmin> {
  const connection = await connect(url, { clientProperties: { connection_name: "vid2mp3 dead-letters" } });
  connection.on("error", () => {}); // reported to the pending operation

  /** Every message of the dead-letter queues, taken (unacknowledged) on `channel`. */
  async function take(channel: ConfirmChannel, queues: string[]) {
    const taken: { entry: DeadLetterEntry; message: GetMessage }[] = [];
    for (const queue of queues) {
      const deadQueue = deadLetterQueue(queue);
      // Passive: a queue nobody declared yet has no dead letters (and is not created by looking).
      const exists = await checkQueue(deadQueue);
      if (!exists) continue;
      for (;;) {
        const message = await channel.get(deadQueue, { noAck: false });
        if (message === false) break;
        taken.push({ entry: entryOf(deadQueue, message), message });
      }
    }
    return taken;
  }

  async function checkQueue(queue: string): Promise<boolean> {
    const probe = await connection.createChannel();
    probe.on("error", () => {});
    try {
      await probe.checkQueue(queue);
      await probe.close();
      return true;
    } catch {
      return false; // 404 closes the probe channel
    }
  }

  async function withChannel<T>(work: (channel: ConfirmChannel) => Promise<T>): Promise<T> {
    const channel = await connection.createConfirmChannel();
    try {
      return await work(channel);
    } finally {
      // Whatever was taken and not acknowledged goes back to its queue, in order.
      await channel.close().catch(() => {});
    }
  }

  return {
    list: (queues) => withChannel(async (channel) => (await take(channel, queues)).map((t) => t.entry)),

    replay: (queues, ids) =>
      withChannel(async (channel) => {
        const replayed: DeadLetterEntry[] = [];
        for (const { entry, message } of await take(channel, queues)) {
          if (ids !== undefined && !ids.includes(entry.id)) continue;
          const target = entry.letter.queue;
          const body =
            typeof entry.letter.body === "string" ? entry.letter.body : JSON.stringify(entry.letter.body);
          await new Promise<void>((resolve, reject) => {
            channel.sendToQueue(
              target,
              Buffer.from(body),
              {
                persistent: true,
                contentType: "application/json",
                messageId: randomUUID(),
                timestamp: Math.floor(Date.now() / 1000),
                headers: { [ATTEMPT_HEADER]: 1 },
              },
              (error) =>
                error ? reject(error instanceof Error ? error : new Error(String(error))) : resolve(),
            );
          });
          channel.ack(message);
          replayed.push(entry);
        }
        return replayed;
      }),

    async purge(queues) {
      let purged = 0;
      for (const queue of queues) {
        if (!(await checkQueue(deadLetterQueue(queue)))) continue;
        const channel = await connection.createChannel();
        const { messageCount } = await channel.purgeQueue(deadLetterQueue(queue));
        await channel.close();
        purged += messageCount;
      }
      return purged;
    },

    async close() {
      await connection.close().catch(() => {});
    },
  };
}

function entryOf(deadQueue: string, message: GetMessage): DeadLetterEntry {
  const id = String(message.properties.messageId ?? `${deadQueue}#${message.fields.deliveryTag}`);
  const text = message.content.toString("utf8");
  let letter: DeadLetter;
  try {
    letter = JSON.parse(text) as DeadLetter;
    if (typeof letter !== "object" || letter === null || typeof letter.queue !== "string") throw new Error();
  } catch {
    // Not one of ours: shown as it is, replayed nowhere but its own queue's source.
    letter = {
      queue: deadQueue.replace(/\.dead$/, ""),
      reason: "not a dead letter written by vid2mp3",
      attempts: 0,
      body: text,
      deadAt: "",
    };
  }
  return { id, deadQueue, letter };
}
