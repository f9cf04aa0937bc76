import { randomUUID } from "node:crypto";
import { errorMessage } from "../../error-message.ts";
import type { Logger } from "../../logger.ts";
import type { Consumer } from "../broker.ts";
import { type Attachment, type Attachments, createAttachments } from "./attachments.ts";
import type { Connection } from "./connection.ts";
import { type Publisher, topicMessage } from "./publisher.ts";
import { declareTopic, listenerQueue } from "./topology.ts";

/**
 * Live notifications: a broadcast goes to a fanout exchange named like its topic; each
 * subscription consumes (without acknowledgements) from an exclusive, auto-deleted queue of its
 * own bound to it, so only the subscribers present get it, and nothing is kept for the others.
 * Closing a subscription's channel deletes its queue.
 */

export interface Broadcasts {
  broadcast(topic: string, content: Buffer): Promise<void>;
  subscribe(topic: string, listener: (body: unknown) => void): Promise<Consumer>;
  readonly attachments: Attachments<Attachment>;
}

export function createBroadcasts(connection: Connection, publisher: Publisher, logger: Logger): Broadcasts {
  const attachments = createAttachments<Attachment>(connection, logger);

  function deliver(topic: string, listener: (body: unknown) => void, content: Buffer): void {
    let body: unknown;
    try {
      body = JSON.parse(content.toString("utf8"));
    } catch (error) {
      logger.warn({ topic, err: errorMessage(error) }, "ignored a broadcast that is not JSON");
      return;
    }
    try {
      listener(body);
    } catch (error) {
      logger.warn({ topic, err: error }, "broadcast listener failed");
    }
  }

  return {
    attachments,

    broadcast: (topic, content) => publisher.send(topicMessage(topic, content, randomUUID()), true),

    subscribe(topic, listener) {
      const subscription: Attachment = {
        description: `subscription to ${topic}`,
        closed: false,
        declare: (s) => declareTopic(s, topic),
        async start(channel) {
          const { queue } = await channel.assertQueue(listenerQueue(topic, randomUUID()), {
            exclusive: true,
            autoDelete: true,
            durable: false,
          });
          await channel.bindQueue(queue, topic, "");
          await channel.consume(
            queue,
            (message) => {
              if (message === null) channel.close().catch(() => {});
              else deliver(topic, listener, message.content);
            },
            { noAck: true },
          );
          subscription.channel = channel;
          if (subscription.closed) await channel.close();
        },
      };
      return attachments.add(subscription);
    },
  };
}
