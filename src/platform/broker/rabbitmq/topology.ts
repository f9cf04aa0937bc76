import type { Channel, Options } from "amqplib";
import { deadLetterQueue } from "../broker.ts";
import type { Session } from "./session.ts";

/**
 * The topology, its names and its declarations. Declared in code on every connection, each thing
 * once per connection (and again after something suggests it went away), for each work queue `<q>`:
 * - `<q>`: durable, the messages (persistent, JSON, the delivery count in the `x-attempt` header);
 * - `<q>.retry.<ms>`: durable, one per backoff step, no consumers: a failed message waits there
 *   for `x-message-ttl` ms, then RabbitMQ dead-letters it back to `<q>` (through the default
 *   exchange). One queue per delay keeps every message's wait exact (a single queue with
 *   per-message expiry would hold a short delay behind a long one);
 * - `<q>.dead`: durable, `DeadLetter` JSON bodies (the reason travels in the body).
 * Broadcasts go through a fanout exchange named like the topic; each subscriber binds an
 * exclusive, auto-deleted queue of its own, so only the subscribers present get them.
 */

/** Header that carries the delivery count (1 on the first delivery). */
export const ATTEMPT_HEADER = "x-attempt";

/** The queue where a message that failed waits `delayMs` before it goes back to `queue`. */
export const retryQueue = (queue: string, delayMs: number): string => `${queue}.retry.${delayMs}`;

/** A subscriber's own queue on `topic`'s exchange. */
export const listenerQueue = (topic: string, id: string): string => `${topic}.listener.${id}`;

export async function declareWorkQueue(s: Session, queue: string): Promise<void> {
  // A dead-letter queue's own dead-letter queue is declared only when something goes there.
  const declarations = [declareQueue(s, queue, { durable: true })];
  if (!queue.endsWith(".dead")) declarations.push(declareDeadQueue(s, queue));
  await Promise.all(declarations);
}

export function declareDeadQueue(s: Session, queue: string): Promise<void> {
  return declareQueue(s, deadLetterQueue(queue), { durable: true });
}

export function declareRetryQueue(s: Session, queue: string, delayMs: number): Promise<void> {
  return declareQueue(s, retryQueue(queue, delayMs), {
    durable: true,
    arguments: {
      "x-message-ttl": delayMs,
      "x-dead-letter-exchange": "",
      "x-dead-letter-routing-key": queue,
    },
  });
}

export function declareTopic(s: Session, topic: string): Promise<void> {
  return declare(s, `exchange ${topic}`, (channel) =>
    channel.assertExchange(topic, "fanout", { durable: true }),
  );
}

/** The queue went away since it was declared on this connection: declare it before its next use. */
export function forgetQueue(s: Session, queue: string): void {
  s.declared.delete(queueKey(queue));
}

/** Something on this connection may have been deleted: declare everything again before use. */
export function forgetTopology(s: Session): void {
  s.declared.clear();
}

function declareQueue(s: Session, name: string, queueOptions: Options.AssertQueue): Promise<void> {
  return declare(s, queueKey(name), (channel) => channel.assertQueue(name, queueOptions));
}

const queueKey = (name: string): string => `queue ${name}`;

/** Asserts once per connection; a failed declaration is forgotten, so the next use tries again. */
function declare(s: Session, key: string, assert: (channel: Channel) => Promise<unknown>): Promise<void> {
  let declared = s.declared.get(key);
  if (!declared) {
    const declaring = s
      .topology()
      .then(assert)
      .then(() => {});
    declaring.catch(() => {
      if (s.declared.get(key) === declaring) s.declared.delete(key);
    });
    s.declared.set(key, declaring);
    declared = declaring;
  }
  return declared;
}
