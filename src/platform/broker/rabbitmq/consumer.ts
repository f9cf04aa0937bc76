import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { Channel, ConsumeMessage } from "amqplib";
import { errorMessage } from "../../error-message.ts";
import type { Logger } from "../../logger.ts";
import { type Consumer, deadLetterQueue, type Handler, retryDelay } from "../broker.ts";
import { type ConsumeSettings, createOutageGate, deadLetter, decide, type Outcome } from "../delivery.ts";
import { type Attachment, type Attachments, createAttachments } from "./attachments.ts";
import type { Connection } from "./connection.ts";
import { createLimiter, type Limiter } from "./limiter.ts";
import { type Publisher, queueMessage } from "./publisher.ts";
import { isOpen } from "./session.ts";
import {
  ATTEMPT_HEADER,
  declareDeadQueue,
  declareRetryQueue,
  declareWorkQueue,
  retryQueue,
} from "./topology.ts";
import { createUnacknowledgedOutcomes } from "./unacknowledged-outcomes.ts";

/**
 * Consumers of work queues. Each has its own channel with `prefetch = concurrency` and
 * acknowledges a message only after its handler resolved, or after its retry (to a retry queue)
 * or dead letter was confirmed. A message whose channel closed before that is redelivered by
 * RabbitMQ; if its handler finished here meanwhile, the redelivery is settled without running
 * the handler again.
 */

export interface QueueConsumers {
  consume<T>(queue: string, handler: Handler<T>, settings: ConsumeSettings<T>): Promise<Consumer>;
  readonly attachments: Attachments<QueueConsumer>;
}

interface QueueConsumer extends Attachment {
  readonly queue: string;
  /** Runs the parser and the handler on a decoded body; never rejects. */
  run(raw: unknown, attempt: number, signal: AbortSignal): Promise<Outcome>;
  /** Keeps at most `concurrency` handlers running, also across a reconnection. */
  readonly slots: Limiter;
  readonly inFlight: Set<Promise<void>>;
  /** The consumer tag on `channel`. */
  tag?: string | undefined;
  /** Aborted by close() (after its grace): handlers waiting for a backend give their message back. */
  readonly closing: AbortController;
  /** Set by close(): how long the handlers in hand may go on before `closing` aborts. */
  graceMs: number;
}

/** Per channel: aborted when it closes, since RabbitMQ then puts its unacknowledged deliveries back. */
const channelLost = new WeakMap<Channel, AbortSignal>();

function lostSignal(channel: Channel): AbortSignal {
  let signal = channelLost.get(channel);
  if (!signal) {
    const controller = new AbortController();
    if (!isOpen(channel)) controller.abort();
    else channel.once("close", () => controller.abort(new Error("the channel closed")));
    signal = controller.signal;
    channelLost.set(channel, signal);
  }
  return signal;
}

export function createQueueConsumers(
  connection: Connection,
  publisher: Publisher,
  logger: Logger,
): QueueConsumers {
  const attachments = createAttachments<QueueConsumer>(connection, logger);
  /** Handlers running, by queue, message id and attempt (for every consumer of this broker). */
  const running = new Map<string, Promise<void>>();
  const unacknowledged = createUnacknowledgedOutcomes();

  function consume<T>(queue: string, handler: Handler<T>, settings: ConsumeSettings<T>): Promise<Consumer> {
    // The retry queues' delays, one per backoff step.
    const delays = new Set<number>();
    for (let attempt = 1; attempt < settings.maxAttempts; attempt++) {
      delays.add(retryDelay(settings.retryDelayMs, attempt, settings.maxRetryDelayMs));
    }
    const gate = createOutageGate();
    const c: QueueConsumer = {
      description: `consumer of ${queue}`,
      closed: false,
      queue,
      closing: new AbortController(),
      graceMs: 0,
      run: (raw, attempt, signal) => decide(queue, raw, attempt, handler, settings, { logger, gate, signal }),
      slots: createLimiter(settings.concurrency),
      inFlight: new Set(),
      async declare(s) {
        await declareWorkQueue(s, queue);
        await Promise.all([...delays].map((delayMs) => declareRetryQueue(s, queue, delayMs)));
      },
      async start(channel) {
        lostSignal(channel);
        await channel.prefetch(settings.concurrency);
        if (c.closed) {
          await channel.close();
          return;
        }
        const { holdLimitMs } = settings;
        if (holdLimitMs !== undefined) warnIfHoldLimitUnsupported(channel, queue, holdLimitMs);
        const { consumerTag } = await channel.consume(queue, (message) => onDelivery(c, channel, message), {
          noAck: false,
          // The server's limit on how long this consumer may hold a delivery (3.12+; ignored before).
          ...(holdLimitMs !== undefined && { arguments: { "x-consumer-timeout": holdLimitMs } }),
        });
        c.channel = channel;
        c.tag = consumerTag;
      },
      async finish(channel) {
        // Stop deliveries; those in hand finish (and are acknowledged), the rest stay queued.
        if (channel && c.tag) await channel.cancel(c.tag).catch(() => {});
        const grace = setTimeout(() => c.closing.abort(), c.graceMs);
        try {
          await Promise.all(c.inFlight);
        } finally {
          clearTimeout(grace);
          c.closing.abort();
        }
      },
    };
    return attachments.add(c).then((attached) => ({
      close(options) {
        c.graceMs = options?.graceMs ?? 0;
        return attached.close();
      },
    }));
  }

  function onDelivery(c: QueueConsumer, channel: Channel, message: ConsumeMessage | null): void {
    if (message === null) {
      logger.warn({ queue: c.queue }, "RabbitMQ cancelled the consumer (queue deleted?); consuming again");
      channel.close().catch(() => {});
      return;
    }
    const task = processDelivery(c, channel, message).catch((error: unknown) => {
      logger.error({ err: error, queue: c.queue }, "unexpected failure while handling a message");
    });
    c.inFlight.add(task);
    void task.finally(() => c.inFlight.delete(task));
  }

  async function processDelivery(c: QueueConsumer, channel: Channel, message: ConsumeMessage) {
    const attempt = attemptOf(message);
    const id = message.properties.messageId as string | undefined;
    const key = id ? `${c.queue}\n${id}\n${attempt}` : undefined;
    if (key) {
      // A redelivery of a message this process is still handling (its connection was lost
      // meanwhile): wait for it rather than running the same work twice at once.
      await running.get(key)?.catch(() => {});
      const known = unacknowledged.take(key);
      if (known) {
        logger.info(
          { queue: c.queue, attempt },
          "redelivered message was already handled here; settling it without running the handler again",
        );
        await settle(c, channel, message, attempt, known, key);
        return;
      }
    }
    await c.slots.acquire();
    try {
      // Not started, not acknowledged: RabbitMQ delivers it again (here or elsewhere).
      if (c.closed || !isOpen(channel)) return;
      const work = (async () => {
        const outcome = await decideDelivery(c, channel, message, attempt);
        await settle(c, channel, message, attempt, outcome, key);
      })();
      if (key) running.set(key, work);
      try {
        await work;
      } finally {
        if (key) running.delete(key);
      }
    } finally {
      c.slots.release();
    }
  }

  /** Decodes the body and runs the handler on it; never rejects. */
  async function decideDelivery(
    c: QueueConsumer,
    channel: Channel,
    message: ConsumeMessage,
    attempt: number,
  ): Promise<Outcome> {
    const text = message.content.toString("utf8");
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (error) {
      return { kind: "dead", reason: `message body is not JSON: ${errorMessage(error)}`, body: text };
    }
    return c.run(raw, attempt, AbortSignal.any([lostSignal(channel), c.closing.signal]));
  }

  /**
   * Publishes what the outcome calls for (confirmed), then acknowledges. When the delivery's
   * channel is gone, RabbitMQ has put the message back already: the outcome is remembered for
   * its redelivery instead, so work that finished is not done again.
   */
  async function settle(
    c: QueueConsumer,
    channel: Channel,
    message: ConsumeMessage,
    attempt: number,
    outcome: Outcome,
    key: string | undefined,
  ): Promise<void> {
    if (outcome.kind === "release") {
      // Back to the queue unchanged: with its channel gone RabbitMQ did that already.
      try {
        if (isOpen(channel)) channel.nack(message, false, true);
      } catch {
        // Closed meanwhile: put back by RabbitMQ.
      }
      return;
    }
    if (!isOpen(channel)) {
      remember(c, key, outcome);
      return;
    }
    try {
      if (outcome.kind === "retry") {
        const retry = queueMessage(
          retryQueue(c.queue, outcome.delayMs),
          message.content,
          attempt + 1,
          message.properties.messageId ?? randomUUID(),
          (s) => declareRetryQueue(s, c.queue, outcome.delayMs),
        );
        await publisher.send(retry, false);
      } else if (outcome.kind === "dead") {
        const dead = queueMessage(
          deadLetterQueue(c.queue),
          Buffer.from(JSON.stringify(deadLetter(c.queue, attempt, outcome))),
          1,
          randomUUID(),
          (s) => declareDeadQueue(s, c.queue),
        );
        await publisher.send(dead, false);
        logger.warn({ queue: c.queue, attempts: attempt, reason: outcome.reason }, "message dead-lettered");
      }
    } catch (error) {
      if (!isOpen(channel)) {
        remember(c, key, outcome);
        return;
      }
      // Not acknowledged and put back: it comes again with the same attempt number.
      logger.error(
        { err: errorMessage(error), queue: c.queue, outcome: outcome.kind },
        "could not publish a message's retry or dead letter; putting it back",
      );
      await sleep(1000);
      try {
        channel.nack(message, false, true);
      } catch {
        // The channel closed meanwhile: RabbitMQ puts it back by itself.
      }
      return;
    }
    try {
      channel.ack(message);
    } catch {
      // The retry or dead letter is out; its redelivery only needs acknowledging.
      remember(c, key, { kind: "ack" });
    }
  }

  function remember(c: QueueConsumer, key: string | undefined, outcome: Outcome): void {
    logger.info(
      { queue: c.queue, outcome: outcome.kind },
      "connection lost before acknowledging; RabbitMQ redelivers",
    );
    if (key) unacknowledged.remember(key, outcome);
  }

  /** Once per connection and queue: a server too old for per-consumer timeouts applies its global one. */
  const warned = new WeakSet<object>();
  function warnIfHoldLimitUnsupported(channel: Channel, queue: string, holdLimitMs: number): void {
    const connection = (channel as unknown as { connection?: { serverProperties?: { version?: unknown } } })
      .connection;
    if (!connection || warned.has(connection)) return;
    warned.add(connection);
    const version = String(connection.serverProperties?.version ?? "");
    if (supportsConsumerTimeoutArgument(version)) return;
    logger.warn(
      { queue, rabbitmqVersion: version, holdLimitMs },
      `RabbitMQ ${version} cannot take a consumer timeout per consumer (3.12 and later can): make sure its consumer_timeout (rabbitmq.conf, 30 min by default) is above ${holdLimitMs} ms, or it takes long conversions back mid-way`,
    );
  }

  return { consume, attachments };
}

/** RabbitMQ 3.12 and later honour `x-consumer-timeout` as a consumer argument. */
export function supportsConsumerTimeoutArgument(version: string): boolean {
  const [major = 0, minor = 0] = version.split(".").map((part) => Number.parseInt(part, 10));
  return major > 3 || (major === 3 && minor >= 12);
}

/** The delivery count from our header; a message from another publisher counts as a first delivery. */
function attemptOf(message: ConsumeMessage): number {
  const value = Number(message.properties.headers?.[ATTEMPT_HEADER]);
  return Number.isInteger(value) && value >= 1 ? value : 1;
}
