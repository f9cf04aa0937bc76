import { setTimeout as sleep } from "node:timers/promises";
import type { Options } from "amqplib";
import { errorMessage } from "../../error-message.ts";
import type { Logger } from "../../logger.ts";
import type { Connection } from "./connection.ts";
import type { Session } from "./session.ts";
import { ATTEMPT_HEADER, declareTopic, forgetQueue } from "./topology.ts";

/**
 * Publishing with publisher confirms: a message counts as sent only once RabbitMQ confirmed it
 * (and, for queues, routed it: `mandatory`), all through the session's one confirm channel.
 */

export interface Outgoing {
  exchange: string;
  routingKey: string;
  content: Buffer;
  options: Options.Publish & { messageId: string };
  /** Declares what the message goes to, once per connection. */
  prepare(s: Session): Promise<void>;
}

export interface Publisher {
  /**
   * Publishes and waits for the confirm. `waitForConnection`: wait (until the deadline) for a
   * lost connection to come back and publish again after a failure that a new connection or
   * channel fixes; without it, fail at once when not connected.
   */
  send(message: Outgoing, waitForConnection: boolean): Promise<void>;
}

/** A persistent message for a queue (through the default exchange), its attempt in a header. */
export function queueMessage(
  queue: string,
  content: Buffer,
  attempt: number,
  messageId: string,
  prepare: (s: Session) => Promise<void>,
): Outgoing {
  return {
    exchange: "",
    routingKey: queue,
    content,
    options: {
      persistent: true,
      mandatory: true,
      contentType: "application/json",
      messageId,
      timestamp: Math.floor(Date.now() / 1000),
      headers: { [ATTEMPT_HEADER]: attempt },
    },
    prepare,
  };
}

/** A transient message for the subscribers of `topic` now (a fanout exchange). */
export function topicMessage(topic: string, content: Buffer, messageId: string): Outgoing {
  return {
    exchange: topic,
    routingKey: "",
    content,
    options: { persistent: false, contentType: "application/json", messageId },
    prepare: (s) => declareTopic(s, topic),
  };
}

export function createPublisher(connection: Connection, logger: Logger): Publisher {
  return {
    async send(message, waitForConnection) {
      const deadline = connection.deadline();
      for (let attempt = 1; ; attempt++) {
        const s = waitForConnection ? await connection.sessionBefore(deadline) : connection.connected();
        try {
          await connection.beforeDeadline(
            deadline,
            "did not confirm the message",
            (async () => {
              await message.prepare(s);
              await confirmedPublish(s, message);
            })(),
          );
          return;
        } catch (error) {
          if (error instanceof UnroutableError) {
            // The queue went away since it was declared on this connection: declare it again.
            forgetQueue(s, message.routingKey);
          } else if (!waitForConnection || !isTransient(error) || connection.stopped) {
            throw error;
          }
          if (attempt >= 5 || Date.now() >= deadline) throw error;
          logger.debug({ err: errorMessage(error), attempt }, "publish failed; trying again");
          await sleep(Math.min(50 * 2 ** attempt, Math.max(0, deadline - Date.now())));
        }
      }
    },
  };
}

async function confirmedPublish(s: Session, message: Outgoing): Promise<void> {
  const channel = await s.publisher();
  await new Promise<void>((resolve, reject) => {
    try {
      channel.publish(message.exchange, message.routingKey, message.content, message.options, (error) => {
        if (error) reject(error instanceof Error ? error : new Error(String(error)));
        else if (s.returned.delete(message.options.messageId)) {
          reject(new UnroutableError(`no queue ${message.routingKey} to take the message`));
        } else resolve();
      });
    } catch (error) {
      reject(error); // the channel is closed
    }
  });
}

class UnroutableError extends Error {
  override name = "UnroutableError";
}

/**
 * Failures a new connection or channel may fix. AMQP channel exceptions (403 access refused,
 * 404 not found, 406 precondition failed, …) are configuration problems and are not retried.
 */
function isTransient(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return !(typeof code === "number" && code >= 400 && code < 500);
}
