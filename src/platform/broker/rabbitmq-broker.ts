import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import {
  type Channel,
  type ChannelModel,
  type ConfirmChannel,
  type ConsumeMessage,
  connect,
  type Message,
  type Options,
  type RecoveringChannelModel,
} from "amqplib";
import type { Logger } from "../logger.ts";
import {
  type Broker,
  type ConsumeOptions,
  type DeadLetter,
  deadLetterQueue,
  type Handler,
  PermanentError,
  retryDelay,
} from "./broker.ts";

/**
 * The distributed broker: RabbitMQ through amqplib, at-least-once from publisher to handler.
 *
 * Topology, declared in code on every (re)connection, for each work queue `<q>`:
 * - `<q>`: durable, the messages (persistent, JSON, the delivery count in the `x-attempt` header);
 * - `<q>.retry.<ms>`: durable, one per backoff step, no consumers: a failed message waits there
 *   for `x-message-ttl` ms, then RabbitMQ dead-letters it back to `<q>` (through the default
 *   exchange). One queue per delay keeps every message's wait exact (a single queue with
 *   per-message expiry would hold a short delay behind a long one);
 * - `<q>.dead`: durable, `DeadLetter` JSON bodies (the reason travels in the body).
 * Broadcasts go through a fanout exchange named like the topic; each subscriber binds an
 * exclusive, auto-deleted queue of its own, so only the subscribers present get them.
 *
 * Every publish goes through one confirm channel and resolves only once RabbitMQ confirmed it
 * (and, for queues, routed it: `mandatory`). Each consumer has its own channel with
 * `prefetch = concurrency` and acknowledges a message only after its handler resolved, or after
 * its retry or dead letter was confirmed. A lost connection is reopened with exponential backoff,
 * and the topology, consumers and subscriptions are restored on the new one.
 */

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

/** RabbitMQ cannot be reached (now, or within the wait): the caller may answer 503 and retry later. */
export class BrokerUnavailableError extends Error {
  override name = "BrokerUnavailableError";
}

/** Header that carries the delivery count (1 on the first delivery). */
export const ATTEMPT_HEADER = "x-attempt";

/** The queue where a message that failed waits `delayMs` before it goes back to `queue`. */
export const retryQueue = (queue: string, delayMs: number): string => `${queue}.retry.${delayMs}`;

/** How long the outcome of a handler whose acknowledgement was lost is kept for its redelivery. */
const UNSETTLED_TTL_MS = 10 * 60_000;

export async function createRabbitMqBroker(options: RabbitMqBrokerOptions): Promise<Broker> {
  const {
    logger,
    heartbeatSeconds = 15,
    unavailableTimeoutMs = 10_000,
    connectTimeoutMs = 30_000,
    reconnectDelayMs = { initial: 100, max: 10_000 },
  } = options;
  const url = new URL(options.url);
  url.searchParams.set("heartbeat", String(heartbeatSeconds));
  const where = describeUrl(url);

  const knownQueues = new Set<string>(options.queues ?? []);
  const consumers = new Set<ConsumerState<unknown>>();
  const subscriptions = new Set<Subscription>();
  const timers = new Set<NodeJS.Timeout>();
  const waiters = new Set<Waiter>();
  const openChannels = new WeakSet<Channel>();
  /** Handlers running, by queue, message id and attempt (for every consumer of this broker). */
  const running = new Map<string, Promise<void>>();
  /** Outcomes whose acknowledgement was lost with the connection, awaiting the redelivery. */
  const unsettled = new Map<string, { outcome: Outcome; at: number }>();
  let session: Session | undefined;
  let sessions = 0;
  let connectedOnce = false;
  let disconnectedAt: number | undefined;
  /** Set by close(): the public methods refuse work, handlers in hand still finish. */
  let closing: Promise<void> | undefined;
  /** Set at the end of close(): nothing waits for a connection any more. */
  let stopped = false;

  // ---- connection and sessions -------------------------------------------------------------

  interface Waiter {
    resolve(session: Session): void;
    reject(error: Error): void;
    timer: NodeJS.Timeout;
  }

  function sessionBefore(deadline: number): Promise<Session> {
    if (session?.open) return Promise.resolve(session);
    if (stopped) return Promise.reject(new Error("the broker is closed"));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve,
        reject,
        timer: setTimeout(
          () => {
            waiters.delete(waiter);
            reject(
              new BrokerUnavailableError(
                `RabbitMQ at ${where} is unavailable: no connection within ${unavailableTimeoutMs} ms`,
              ),
            );
          },
          Math.max(0, deadline - Date.now()),
        ),
      };
      waiters.add(waiter);
    });
  }

  function track<C extends Channel>(s: Session, channel: C, role: string): C {
    openChannels.add(channel);
    channel.on("error", (error: Error) => {
      // A channel error closes the channel (its 'close' handler takes over); on a connection that
      // is going away every channel reports it, which says nothing new.
      if (s.open) logger.warn({ err: error.message, channel: role }, "RabbitMQ closed a channel");
    });
    channel.on("close", () => openChannels.delete(channel));
    return channel;
  }

  /** A channel opened on first use and again after it closed, as long as the connection lives. */
  function lazyChannel<C extends Channel>(open: () => Promise<C>): () => Promise<C> {
    let current: Promise<C> | undefined;
    return () => {
      if (!current) {
        const opening = open().then(
          (channel) => {
            channel.on("close", () => {
              if (current === opening) current = undefined;
            });
            return channel;
          },
          (error: unknown) => {
            if (current === opening) current = undefined;
            throw error;
          },
        );
        current = opening;
      }
      return current;
    };
  }

  function newSession(model: ChannelModel): Session {
    const s: Session = {
      id: ++sessions,
      model,
      open: true,
      declared: new Map(),
      returned: new Set(),
      publisher: () => Promise.reject(new Error("not ready")),
      topology: () => Promise.reject(new Error("not ready")),
    };
    // The recovering connection takes over these listeners once setup is done; until then an
    // 'error' without a listener would be thrown.
    model.on("error", (error: Error) => logger.debug({ err: error.message }, "RabbitMQ connection error"));
    model.on("close", () => {
      s.open = false;
    });
    s.publisher = lazyChannel(async () => {
      const channel = track(s, await model.createConfirmChannel(), "publisher");
      channel.on("return", (message: Message) => {
        const id = message.properties.messageId as string | undefined;
        if (id) s.returned.add(id);
      });
      // Publishing to an exchange that was deleted closes the channel (404): whatever this
      // connection declared may be gone, so declare again before the next publish.
      channel.on("error", () => s.declared.clear());
      return channel;
    });
    s.topology = lazyChannel(async () => track(s, await model.createChannel(), "topology"));
    return s;
  }

  /** Runs after every (re)connection, before anyone may use it: topology, consumers, subscriptions. */
  async function setup(model: ChannelModel): Promise<void> {
    const s = newSession(model);
    await s.publisher();
    for (const queue of knownQueues) {
      await restore(s, () => declareWorkQueue(s, queue), `declare queue ${queue}`);
    }
    for (const consumer of consumers) {
      await restore(
        s,
        () => attachConsumer(s, consumer),
        `consume ${consumer.queue}`,
        () => scheduleReattach(s, consumer),
      );
    }
    for (const subscription of subscriptions) {
      await restore(
        s,
        () => attachSubscription(s, subscription),
        `subscribe ${subscription.topic}`,
        () => scheduleReattach(s, subscription),
      );
    }
    if (!s.open) throw new Error("the connection closed during setup");
    session = s;
    for (const waiter of waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(s);
    }
    waiters.clear();
    if (connectedOnce) {
      logger.info(
        {
          broker: where,
          downtimeMs: disconnectedAt === undefined ? undefined : Date.now() - disconnectedAt,
          consumers: consumers.size,
          subscriptions: subscriptions.size,
        },
        "reconnected to RabbitMQ; consumers resumed",
      );
    } else {
      logger.info({ broker: where, heartbeatSeconds }, "connected to RabbitMQ");
    }
    connectedOnce = true;
  }

  /**
   * One step of setup. A lost connection fails the whole setup (the recovery tries again); any
   * other failure (say, a queue declared elsewhere with other arguments) is logged and retried
   * for that one consumer, so it does not keep the others down.
   */
  async function restore(s: Session, step: () => Promise<void>, what: string, later?: () => void) {
    try {
      await step();
    } catch (error) {
      if (!s.open) throw error;
      logger.error({ err: reasonOf(error), broker: where }, `RabbitMQ setup failed: ${what}`);
      later?.();
    }
  }

  const recovering: RecoveringChannelModel = await connect(url.toString(), {
    timeout: 10_000,
    // Without it, Nagle's algorithm holds a small publish back until the previous one is
    // acknowledged by TCP (up to 40 ms with delayed ACKs).
    noDelay: true,
    clientProperties: { connection_name: options.connectionName ?? `vid2mp3 pid ${process.pid}` },
    recovery: {
      initialDelay: reconnectDelayMs.initial,
      maxDelay: reconnectDelayMs.max,
      factor: 2,
      jitter: 0.2,
      maxRetries: Number.POSITIVE_INFINITY,
      waitForConnect: false,
      setup,
    },
  });
  let lastConnectError: Error | undefined;
  recovering.on("disconnect", (error: Error) => {
    session = undefined;
    disconnectedAt = Date.now();
    logger.warn({ err: error.message, broker: where }, "lost the connection to RabbitMQ; reconnecting");
  });
  recovering.on("connect-failed", (error: Error) => {
    lastConnectError = error;
    if (connectedOnce) logger.warn({ err: error.message, broker: where }, "could not reconnect to RabbitMQ");
  });
  recovering.on("reconnect-scheduled", ({ attempt, delay }: { attempt: number; delay: number }) => {
    if (connectedOnce)
      logger.debug({ attempt, delayMs: delay }, "next RabbitMQ connection attempt scheduled");
  });
  recovering.on("blocked", (reason: string) =>
    logger.warn({ reason, broker: where }, "RabbitMQ blocks publishing (resource alarm)"),
  );
  recovering.on("unblocked", () => logger.info({ broker: where }, "RabbitMQ accepts publishing again"));
  recovering.on("error", (error: Error) => logger.debug({ err: error.message }, "RabbitMQ connection error"));
  recovering.on("handler-error", (error: Error, event: string) =>
    logger.error({ err: error, event }, "a RabbitMQ event listener threw"),
  );

  await waitForFirstConnection();

  async function waitForFirstConnection(): Promise<void> {
    const { promise: failed, reject } = Promise.withResolvers<never>();
    const timer = setTimeout(
      () =>
        reject(
          new BrokerUnavailableError(
            `could not connect to RabbitMQ at ${where} within ${connectTimeoutMs} ms: ${lastConnectError?.message ?? "no answer"}`,
          ),
        ),
      connectTimeoutMs,
    );
    // A refused login or an unknown vhost will not fix itself: say so at once. (amqplib reports
    // a vhost it may not open only as an unexpected ConnectionClose.)
    const onFailed = (error: Error) => {
      if (/ACCESS[-_]REFUSED|NOT[-_]ALLOWED|got <ConnectionClose/.test(error.message)) {
        reject(
          new Error(
            `RabbitMQ at ${where} refused the connection (wrong credentials, or a vhost that does not exist or is not allowed): ${error.message}`,
          ),
        );
      }
    };
    recovering.on("connect-failed", onFailed);
    try {
      await Promise.race([recovering.waitForConnect(), failed]);
    } catch (error) {
      stopped = true;
      await recovering.close().catch(() => {});
      throw error;
    } finally {
      clearTimeout(timer);
      recovering.off("connect-failed", onFailed);
    }
  }

  // ---- topology -----------------------------------------------------------------------------

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

  function declareQueue(s: Session, name: string, queueOptions: Options.AssertQueue): Promise<void> {
    return declare(s, `queue ${name}`, (channel) => channel.assertQueue(name, queueOptions));
  }

  async function declareWorkQueue(s: Session, queue: string): Promise<void> {
    // A dead-letter queue's own dead-letter queue is declared only when something goes there.
    const declarations = [declareQueue(s, queue, { durable: true })];
    if (!queue.endsWith(".dead")) declarations.push(declareDeadQueue(s, queue));
    await Promise.all(declarations);
  }

  function declareDeadQueue(s: Session, queue: string): Promise<void> {
    return declareQueue(s, deadLetterQueue(queue), { durable: true });
  }

  function declareRetryQueue(s: Session, queue: string, delayMs: number): Promise<void> {
    return declareQueue(s, retryQueue(queue, delayMs), {
      durable: true,
      arguments: {
        "x-message-ttl": delayMs,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
      },
    });
  }

  function declareTopic(s: Session, topic: string): Promise<void> {
    return declare(s, `exchange ${topic}`, (channel) =>
      channel.assertExchange(topic, "fanout", { durable: true }),
    );
  }

  // ---- publishing ---------------------------------------------------------------------------

  interface Outgoing {
    exchange: string;
    routingKey: string;
    content: Buffer;
    options: Options.Publish & { messageId: string };
    /** Declares what the message goes to, once per connection. */
    prepare(s: Session): Promise<void>;
  }

  /**
   * Publishes and waits for the confirm. `waitForConnection`: wait (until the deadline) for a
   * lost connection to come back and publish again after a failure that a new connection or
   * channel fixes; without it, fail at once when not connected.
   */
  async function send(message: Outgoing, waitForConnection: boolean): Promise<void> {
    const deadline = Date.now() + unavailableTimeoutMs;
    for (let attempt = 1; ; attempt++) {
      const s = waitForConnection ? await sessionBefore(deadline) : connectedSession();
      try {
        await beforeDeadline(
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
          s.declared.delete(`queue ${message.routingKey}`);
        } else if (!waitForConnection || !isTransient(error) || stopped) {
          throw error;
        }
        if (attempt >= 5 || Date.now() >= deadline) throw error;
        logger.debug({ err: reasonOf(error), attempt }, "publish failed; trying again");
        await sleep(Math.min(50 * 2 ** attempt, Math.max(0, deadline - Date.now())));
      }
    }
  }

  function connectedSession(): Session {
    if (!session?.open) throw new BrokerUnavailableError(`not connected to RabbitMQ at ${where}`);
    return session;
  }

  function beforeDeadline<T>(deadline: number, what: string, work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const ms = Math.max(0, deadline - Date.now());
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new BrokerUnavailableError(`RabbitMQ at ${where} ${what} within ${ms} ms`)),
        ms,
      );
    });
    return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
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

  function queueMessage(queue: string, content: Buffer, attempt: number, messageId: string): Outgoing {
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
      prepare: (s) => declareWorkQueue(s, queue),
    };
  }

  // ---- consuming ----------------------------------------------------------------------------

  function attachConsumer(s: Session, c: ConsumerState<unknown>): Promise<void> {
    if (c.closing) return Promise.resolve();
    if (c.session === s && c.attached) return c.attached;
    c.session = s;
    const attached = (async () => {
      await declareWorkQueue(s, c.queue);
      await Promise.all(c.delays.map((delayMs) => declareRetryQueue(s, c.queue, delayMs)));
      const channel = track(s, await s.model.createChannel(), `consumer ${c.queue}`);
      channel.on("close", () => {
        if (c.channel === channel) {
          c.channel = undefined;
          c.tag = undefined;
        }
        if (c.session === s && c.attached === attached) {
          c.session = undefined;
          c.attached = undefined;
        }
        // Closed with the connection: setup restores it. Closed alone (the queue was deleted, a
        // consumer timeout): open another channel on this connection.
        if (!c.closing && !stopped) scheduleReattach(s, c);
      });
      try {
        await channel.prefetch(c.concurrency);
        if (c.closing) {
          await channel.close();
          return;
        }
        const { consumerTag } = await channel.consume(c.queue, (message) => onDelivery(c, channel, message), {
          noAck: false,
        });
        c.channel = channel;
        c.tag = consumerTag;
      } catch (error) {
        await channel.close().catch(() => {});
        throw error;
      }
    })();
    c.attached = attached;
    attached.catch(() => {
      if (c.attached === attached) {
        c.attached = undefined;
        c.session = undefined;
      }
    });
    return attached;
  }

  /** Re-attaches a consumer or subscription whose channel closed while the connection stayed up. */
  function scheduleReattach(s: Session, target: ConsumerState<unknown> | Subscription, failures = 0): void {
    const delayMs = Math.min(30_000, 500 * 2 ** failures);
    const timer = setTimeout(() => {
      timers.delete(timer);
      if (stopped || !s.open || session !== s || target.session === s) return;
      if ("closing" in target ? target.closing : target.closed) return;
      // What closed the channel may have been a deleted queue or exchange: declare anew.
      s.declared.clear();
      const attach =
        "closing" in target ? attachConsumer(s, target) : attachSubscription(s, target as Subscription);
      attach.then(
        () => logger.info({ target: describeTarget(target) }, "RabbitMQ channel reopened"),
        (error: unknown) => {
          logger.warn({ err: reasonOf(error), target: describeTarget(target) }, "could not reopen a channel");
          scheduleReattach(s, target, failures + 1);
        },
      );
    }, delayMs);
    timers.add(timer);
  }

  function onDelivery(c: ConsumerState<unknown>, channel: Channel, message: ConsumeMessage | null): void {
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

  async function processDelivery(c: ConsumerState<unknown>, channel: Channel, message: ConsumeMessage) {
    const attempt = attemptOf(message);
    const id = message.properties.messageId as string | undefined;
    const key = id ? `${c.queue}\n${id}\n${attempt}` : undefined;
    if (key) {
      // A redelivery of a message this process is still handling (its connection was lost
      // meanwhile): wait for it rather than running the same work twice at once.
      await running.get(key)?.catch(() => {});
      const known = unsettled.get(key);
      if (known) {
        unsettled.delete(key);
        logger.info(
          { queue: c.queue, attempt },
          "redelivered message was already handled here; settling it without running the handler again",
        );
        await settle(c, channel, message, attempt, known.outcome, key);
        return;
      }
    }
    await c.slots.acquire();
    try {
      // Not started, not acknowledged: RabbitMQ delivers it again (here or elsewhere).
      if (c.closing || !openChannels.has(channel)) return;
      const work = (async () => {
        const outcome = await decide(c, message, attempt);
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

  /** Runs the parser and handler; never rejects. */
  async function decide(
    c: ConsumerState<unknown>,
    message: ConsumeMessage,
    attempt: number,
  ): Promise<Outcome> {
    const text = message.content.toString("utf8");
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (error) {
      return { kind: "dead", reason: `message body is not JSON: ${reasonOf(error)}`, body: text };
    }
    let body: unknown;
    try {
      body = c.parse(raw);
    } catch (error) {
      return { kind: "dead", reason: reasonOf(error), body: raw };
    }
    try {
      await c.handler({ body, attempt, isLastAttempt: attempt >= c.maxAttempts });
      return { kind: "ack" };
    } catch (error) {
      if (error instanceof PermanentError || attempt >= c.maxAttempts) {
        return { kind: "dead", reason: reasonOf(error), body: raw };
      }
      const delayMs = retryDelay(c.retryDelayMs, attempt);
      logger.warn({ queue: c.queue, attempt, delayMs, err: error }, "message handler failed; retrying");
      return { kind: "retry", delayMs };
    }
  }

  /**
   * Publishes what the outcome calls for (confirmed), then acknowledges. When the delivery's
   * channel is gone, RabbitMQ has put the message back already: the outcome is remembered for
   * its redelivery instead, so work that finished is not done again.
   */
  async function settle(
    c: ConsumerState<unknown>,
    channel: Channel,
    message: ConsumeMessage,
    attempt: number,
    outcome: Outcome,
    key: string | undefined,
  ): Promise<void> {
    if (!openChannels.has(channel)) {
      remember(c, key, outcome);
      return;
    }
    try {
      if (outcome.kind === "retry") {
        const target = retryQueue(c.queue, outcome.delayMs);
        const retry = queueMessage(target, message.content, attempt + 1, messageIdOf(message));
        retry.prepare = (s) => declareRetryQueue(s, c.queue, outcome.delayMs);
        await send(retry, false);
      } else if (outcome.kind === "dead") {
        const letter: DeadLetter = {
          queue: c.queue,
          reason: outcome.reason,
          attempts: attempt,
          body: outcome.body,
          deadAt: new Date().toISOString(),
        };
        const dead = queueMessage(
          deadLetterQueue(c.queue),
          Buffer.from(JSON.stringify(letter)),
          1,
          randomUUID(),
        );
        dead.prepare = (s) => declareDeadQueue(s, c.queue);
        await send(dead, false);
        logger.warn({ queue: c.queue, attempts: attempt, reason: outcome.reason }, "message dead-lettered");
      }
    } catch (error) {
      if (!openChannels.has(channel)) {
        remember(c, key, outcome);
        return;
      }
      // Not acknowledged and put back: it comes again with the same attempt number.
      logger.error(
        { err: reasonOf(error), queue: c.queue, outcome: outcome.kind },
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

  function remember(c: ConsumerState<unknown>, key: string | undefined, outcome: Outcome): void {
    logger.info(
      { queue: c.queue, outcome: outcome.kind },
      "connection lost before acknowledging; RabbitMQ redelivers",
    );
    if (!key) return;
    const now = Date.now();
    for (const [oldKey, entry] of unsettled) {
      if (now - entry.at < UNSETTLED_TTL_MS && unsettled.size < 10_000) break;
      unsettled.delete(oldKey);
    }
    unsettled.set(key, { outcome, at: now });
  }

  async function closeConsumer(c: ConsumerState<unknown>): Promise<void> {
    c.closing = true;
    await c.attached?.catch(() => {});
    const { channel, tag } = c;
    // Stop deliveries; those in hand finish (and are acknowledged), the rest stay queued.
    if (channel && tag) await channel.cancel(tag).catch(() => {});
    await Promise.all(c.inFlight);
    // Closing the channel returns anything delivered but not started.
    if (channel) await channel.close().catch(() => {});
    consumers.delete(c);
  }

  // ---- broadcast ----------------------------------------------------------------------------

  function attachSubscription(s: Session, sub: Subscription): Promise<void> {
    if (sub.closed) return Promise.resolve();
    if (sub.session === s && sub.attached) return sub.attached;
    sub.session = s;
    const attached = (async () => {
      await declareTopic(s, sub.topic);
      const channel = track(s, await s.model.createChannel(), `subscription ${sub.topic}`);
      channel.on("close", () => {
        if (sub.channel === channel) sub.channel = undefined;
        if (sub.session === s && sub.attached === attached) {
          sub.session = undefined;
          sub.attached = undefined;
        }
        if (!sub.closed && !stopped) scheduleReattach(s, sub);
      });
      try {
        const { queue } = await channel.assertQueue(`${sub.topic}.listener.${randomUUID()}`, {
          exclusive: true,
          autoDelete: true,
          durable: false,
        });
        await channel.bindQueue(queue, sub.topic, "");
        await channel.consume(
          queue,
          (message) => {
            if (message === null) {
              channel.close().catch(() => {});
              return;
            }
            let body: unknown;
            try {
              body = JSON.parse(message.content.toString("utf8"));
            } catch (error) {
              logger.warn({ topic: sub.topic, err: reasonOf(error) }, "ignored a broadcast that is not JSON");
              return;
            }
            try {
              sub.listener(body);
            } catch (error) {
              logger.warn({ topic: sub.topic, err: error }, "broadcast listener failed");
            }
          },
          { noAck: true },
        );
        sub.channel = channel;
        if (sub.closed) await channel.close();
      } catch (error) {
        await channel.close().catch(() => {});
        throw error;
      }
    })();
    sub.attached = attached;
    attached.catch(() => {
      if (sub.attached === attached) {
        sub.attached = undefined;
        sub.session = undefined;
      }
    });
    return attached;
  }

  async function closeSubscription(sub: Subscription): Promise<void> {
    sub.closed = true;
    await sub.attached?.catch(() => {});
    // Its exclusive, auto-deleted queue goes with its consumer.
    await sub.channel?.close().catch(() => {});
    subscriptions.delete(sub);
  }

  // ---- the Broker ---------------------------------------------------------------------------

  function assertOpen(): void {
    if (closing) throw new Error("the broker is closed");
  }

  function encode(target: string, body: object): Buffer {
    const json: string | undefined = JSON.stringify(body);
    if (json === undefined) throw new TypeError(`message for ${target} is not JSON-serialisable`);
    return Buffer.from(json);
  }

  return {
    durable: true,

    async publish(queue, body) {
      assertOpen();
      const content = encode(queue, body);
      knownQueues.add(queue);
      await send(queueMessage(queue, content, 1, randomUUID()), true);
    },

    async consume<T>(queue: string, handler: Handler<T>, consumeOptions: ConsumeOptions<T>) {
      assertOpen();
      const { parse, concurrency, maxAttempts = 5, retryDelayMs = 5000 } = consumeOptions;
      if (!Number.isInteger(concurrency) || concurrency < 1) {
        throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
      }
      if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
        throw new RangeError(`maxAttempts must be a positive integer, got ${maxAttempts}`);
      }
      if (!Number.isFinite(retryDelayMs) || retryDelayMs < 0) {
        throw new RangeError(`retryDelayMs must be a non-negative number, got ${retryDelayMs}`);
      }
      const delays = new Set<number>();
      for (let attempt = 1; attempt < maxAttempts; attempt++) delays.add(retryDelay(retryDelayMs, attempt));
      const c: ConsumerState<T> = {
        queue,
        handler,
        parse,
        concurrency,
        maxAttempts,
        retryDelayMs,
        delays: [...delays],
        slots: createLimiter(concurrency),
        inFlight: new Set(),
        closing: false,
      };
      const state = c as ConsumerState<unknown>;
      knownQueues.add(queue);
      consumers.add(state);
      try {
        await attachConsumer(await sessionBefore(Date.now() + unavailableTimeoutMs), state);
      } catch (error) {
        await closeConsumer(state);
        throw error;
      }
      let closed: Promise<void> | undefined;
      return {
        close() {
          closed ??= closeConsumer(state);
          return closed;
        },
      };
    },

    async broadcast(topic, body) {
      assertOpen();
      const content = encode(topic, body);
      await send(
        {
          exchange: topic,
          routingKey: "",
          content,
          options: { persistent: false, contentType: "application/json", messageId: randomUUID() },
          prepare: (s) => declareTopic(s, topic),
        },
        true,
      );
    },

    async subscribe(topic, listener) {
      assertOpen();
      const sub: Subscription = { topic, listener, closed: false };
      subscriptions.add(sub);
      try {
        await attachSubscription(await sessionBefore(Date.now() + unavailableTimeoutMs), sub);
      } catch (error) {
        await closeSubscription(sub);
        throw error;
      }
      let closed: Promise<void> | undefined;
      return {
        close() {
          closed ??= closeSubscription(sub);
          return closed;
        },
      };
    },

    async check() {
      assertOpen();
      const s = connectedSession();
      const channel = await beforeDeadline(Date.now() + 2000, "opened no channel", s.publisher());
      if (!openChannels.has(channel))
        throw new BrokerUnavailableError(`no open channel to RabbitMQ at ${where}`);
    },

    close() {
      closing ??= (async () => {
        await Promise.all([...consumers].map((c) => closeConsumer(c)));
        await Promise.all([...subscriptions].map((sub) => closeSubscription(sub)));
        stopped = true;
        for (const timer of timers) clearTimeout(timer);
        timers.clear();
        for (const waiter of waiters) {
          clearTimeout(waiter.timer);
          waiter.reject(new Error("the broker is closed"));
        }
        waiters.clear();
        session = undefined;
        await recovering.close().catch((error: unknown) => {
          logger.debug({ err: reasonOf(error) }, "closing the RabbitMQ connection failed");
        });
        logger.info({ broker: where }, "RabbitMQ connection closed");
      })();
      return closing;
    },
  };
}

/** One connection and what was set up on it. */
interface Session {
  id: number;
  model: ChannelModel;
  open: boolean;
  /** Queues and exchanges asserted on this connection (declarations in progress included). */
  declared: Map<string, Promise<void>>;
  /** Message ids RabbitMQ returned as unroutable, until their confirm arrives. */
  returned: Set<string>;
  publisher(): Promise<ConfirmChannel>;
  /** For declarations, whose failures close their channel. */
  topology(): Promise<Channel>;
}

interface ConsumerState<T> {
  queue: string;
  handler: Handler<T>;
  parse: (body: unknown) => T;
  concurrency: number;
  maxAttempts: number;
  retryDelayMs: number;
  /** The retry queues' delays, one per backoff step. */
  delays: number[];
  /** Keeps at most `concurrency` handlers running, also across a reconnection. */
  slots: Limiter;
  inFlight: Set<Promise<void>>;
  closing: boolean;
  session?: Session | undefined;
  attached?: Promise<void> | undefined;
  channel?: Channel | undefined;
  tag?: string | undefined;
}

interface Subscription {
  topic: string;
  listener: (body: unknown) => void;
  closed: boolean;
  session?: Session | undefined;
  attached?: Promise<void> | undefined;
  channel?: Channel | undefined;
}

type Outcome =
  | { kind: "ack" }
  | { kind: "retry"; delayMs: number }
  | { kind: "dead"; reason: string; body: unknown };

class UnroutableError extends Error {
  override name = "UnroutableError";
}

interface Limiter {
  acquire(): Promise<void>;
  release(): void;
}

function createLimiter(size: number): Limiter {
  let active = 0;
  const waiting: (() => void)[] = [];
  return {
    async acquire() {
      if (active < size) {
        active++;
        return;
      }
      // release() hands its slot straight over.
      await new Promise<void>((resolve) => waiting.push(resolve));
    },
    release() {
      const next = waiting.shift();
      if (next) next();
      else active--;
    },
  };
}

function attemptOf(message: ConsumeMessage): number {
  const value = Number(message.properties.headers?.[ATTEMPT_HEADER]);
  return Number.isInteger(value) && value >= 1 ? value : 1;
}

function messageIdOf(message: ConsumeMessage): string {
  const id = message.properties.messageId as string | undefined;
  return id ?? randomUUID();
}

/**
 * Failures a new connection or channel may fix. AMQP channel exceptions (403 access refused,
 * 404 not found, 406 precondition failed, …) are configuration problems and are not retried.
 */
function isTransient(error: unknown): boolean {
  const code = (error as { code?: unknown } | undefined)?.code;
  return !(typeof code === "number" && code >= 400 && code < 500);
}

function describeTarget(target: ConsumerState<unknown> | Subscription): string {
  return "queue" in target ? `consumer of ${target.queue}` : `subscription to ${target.topic}`;
}

/** host:port/vhost, never the credentials. */
function describeUrl(url: URL): string {
  const vhost = decodeURIComponent(url.pathname.slice(1)) || "/";
  return `${url.hostname}:${url.port || (url.protocol === "amqps:" ? 5671 : 5672)}/${vhost}`;
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
