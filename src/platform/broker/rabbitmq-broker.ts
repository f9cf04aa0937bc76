import { randomUUID } from "node:crypto";
import type { Logger } from "../logger.ts";
import { type Broker, BrokerUnavailableError, type ConsumeOptions, type Handler } from "./broker.ts";
import { consumeSettings, encodeBody } from "./delivery.ts";
import { createBroadcasts } from "./rabbitmq/broadcasts.ts";
import { createConnection } from "./rabbitmq/connection.ts";
import { createQueueConsumers } from "./rabbitmq/consumer.ts";
import { createPublisher, queueMessage } from "./rabbitmq/publisher.ts";
import type { Session } from "./rabbitmq/session.ts";
import { ATTEMPT_HEADER, declareWorkQueue, retryQueue } from "./rabbitmq/topology.ts";

/**
 * The distributed broker: RabbitMQ through amqplib, at-least-once from publisher to handler.
 * The parts, in ./rabbitmq/: the connection (reconnects with backoff and restores what was set
 * up on it), the topology (names and declarations), the confirm publisher, the consumers (ack,
 * retry, dead letter, and the outcomes whose acknowledgement was lost), and the broadcasts.
 */

export { ATTEMPT_HEADER, BrokerUnavailableError, retryQueue };

export interface RabbitMqBrokerOptions {
  /** amqp:// or amqps:// URL; the path is the vhost (`/%2F` or none for `/`). */
  url: string;
  logger: Logger;
  /** Heartbeat asked of the server (default 15 s); a dead peer is noticed after two silent beats. */
  heartbeatSeconds?: number;
  /**
   * How long publish, broadcast, consume and subscribe wait for a lost connection to come back
   * (and for the confirm) before they reject with `BrokerUnavailableError` (default 10 s).
   */
  unavailableTimeoutMs?: number;
  /** How long the first connection may take, retries included (default 30 s). */
  connectTimeoutMs?: number;
  /** Reconnect backoff: the first delay and the cap, doubling with jitter between (default 100 ms, 10 s). */
  reconnectDelayMs?: { initial: number; max: number };
  /** Queues whose topology is declared as soon as the connection is up, before any use. */
  queues?: string[];
  /** Shown by `rabbitmqctl list_connections client_properties` and the management UI. */
  connectionName?: string;
}

export async function createRabbitMqBroker(options: RabbitMqBrokerOptions): Promise<Broker> {
  const { logger } = options;
  /** Declared on every connection: the queues published to or consumed from so far. */
  const knownQueues = new Set<string>(options.queues ?? []);
  const connection = createConnection({
    url: options.url,
    logger,
    heartbeatSeconds: options.heartbeatSeconds ?? 15,
    unavailableTimeoutMs: options.unavailableTimeoutMs ?? 10_000,
    connectTimeoutMs: options.connectTimeoutMs ?? 30_000,
    reconnectDelayMs: options.reconnectDelayMs ?? { initial: 100, max: 10_000 },
    connectionName: options.connectionName ?? `vid2mp3 pid ${process.pid}`,
    setup,
    restored: () => ({
      consumers: consumers.attachments.size,
      subscriptions: broadcasts.attachments.size,
    }),
  });
  const publisher = createPublisher(connection, logger);
  const consumers = createQueueConsumers(connection, publisher, logger);
  const broadcasts = createBroadcasts(connection, publisher, logger);

  function* setup(s: Session) {
    for (const queue of knownQueues) {
      yield { what: `declare queue ${queue}`, run: () => declareWorkQueue(s, queue) };
    }
    yield* consumers.attachments.restore(s);
    yield* broadcasts.attachments.restore(s);
  }

  await connection.open();

  /** Set by close(): the public methods refuse work, handlers in hand still finish. */
  let closing: Promise<void> | undefined;

  function assertOpen(): void {
    if (closing) throw new Error("the broker is closed");
  }

  return {
    durable: true,

    async publish(queue, body) {
      assertOpen();
      const content = Buffer.from(encodeBody(queue, body));
      knownQueues.add(queue);
      const message = queueMessage(queue, content, 1, randomUUID(), (s) => declareWorkQueue(s, queue));
      await publisher.send(message, true);
    },

    async consume<T>(queue: string, handler: Handler<T>, consumeOptions: ConsumeOptions<T>) {
      assertOpen();
      const settings = consumeSettings(consumeOptions);
      knownQueues.add(queue);
      return consumers.consume(queue, handler, settings);
    },

    async broadcast(topic, body) {
      assertOpen();
      await broadcasts.broadcast(topic, Buffer.from(encodeBody(topic, body)));
    },

    async subscribe(topic, listener) {
      assertOpen();
      return broadcasts.subscribe(topic, listener);
    },

    async waiting(queue) {
      assertOpen();
      knownQueues.add(queue);
      const deadline = connection.deadline();
      const s = await connection.sessionBefore(deadline);
      // Asserted as it is always declared (so never refused), which answers its ready messages.
      const { messageCount } = await connection.beforeDeadline(
        deadline,
        "did not count the queue's messages",
        s.topology().then((channel) => channel.assertQueue(queue, { durable: true })),
      );
      return messageCount;
    },

    async check() {
      assertOpen();
      await connection.check();
    },

    close() {
      closing ??= (async () => {
        await consumers.attachments.closeAll();
        await broadcasts.attachments.closeAll();
        await connection.close();
      })();
      return closing;
    },
  };
}
