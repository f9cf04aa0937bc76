import { createLogger, type Logger } from "../logger.ts";
import { type Broker, type ConsumeOptions, type Consumer, deadLetterQueue, type Handler } from "./broker.ts";
import { consumeSettings, createOutageGate, deadLetter, decide, encodeBody } from "./delivery.ts";

/**
 * The embedded broker: queues in this process's memory, nothing survives a restart (`durable:
 * false`; the services re-queue unfinished jobs from their tables at start). It keeps the
 * semantics of `Broker` so the services cannot tell it from RabbitMQ.
 */
export function createMemoryBroker(options: { logger?: Logger } = {}): Broker {
  const logger = options.logger ?? createLogger("info", "broker");
  const queues = new Map<string, Queue>();
  const consumers = new Set<Consumer>();
  const retryTimers = new Set<NodeJS.Timeout>();
  const topics = new Map<string, Set<(body: unknown) => void>>();
  let closing: Promise<void> | undefined;

  function queueNamed(name: string): Queue {
    let queue = queues.get(name);
    if (!queue) {
      queue = { ready: [], workers: [], next: 0, drainScheduled: false };
      queues.set(name, queue);
    }
    return queue;
  }

  function enqueue(name: string, message: Message): void {
    const queue = queueNamed(name);
    queue.ready.push(message);
    scheduleDrain(queue);
  }

  // Dispatch on a later turn of the event loop, never inside publish() or a finishing handler:
  // no re-entrancy, and a long queue of quick handlers still lets I/O through between messages.
  function scheduleDrain(queue: Queue): void {
    if (queue.drainScheduled) return;
    queue.drainScheduled = true;
    setImmediate(() => {
      queue.drainScheduled = false;
      drain(queue);
    });
  }

  function drain(queue: Queue): void {
    while (!closing && queue.ready.length > 0) {
      const worker = nextWorkerWithRoom(queue);
      const message = worker && queue.ready.shift();
      if (!worker || !message) return;
      worker.take(message);
    }
  }

  // Round robin over the consumers that have room, so competing consumers share the work.
  function nextWorkerWithRoom(queue: Queue): Worker | undefined {
    const count = queue.workers.length;
    for (let i = 0; i < count; i++) {
      const index = (queue.next + i) % count;
      const worker = queue.workers[index];
      if (worker?.hasRoom()) {
        queue.next = index + 1;
        return worker;
      }
    }
    return undefined;
  }

  function retryLater(queue: string, message: Message, delayMs: number): void {
    // Messages in hand while the broker closes are lost either way: it is not durable.
    if (closing) return;
    const timer = setTimeout(() => {
      retryTimers.delete(timer);
      enqueue(queue, { json: message.json, attempt: message.attempt + 1 });
    }, delayMs);
    retryTimers.add(timer);
  }

  function sendToDeadLetterQueue(
    queue: string,
    attempts: number,
    failure: { reason: string; body: unknown },
  ) {
    logger.warn({ queue, attempts, reason: failure.reason }, "message dead-lettered");
    enqueue(deadLetterQueue(queue), {
      json: JSON.stringify(deadLetter(queue, attempts, failure)),
      attempt: 1,
    });
  }

  function assertOpen(): void {
    if (closing) throw new Error("the broker is closed");
  }

  return {
    durable: false,

    async publish(queue, body) {
      assertOpen();
      // A JSON round trip, as over the wire: consumers get plain data, and the publisher's later
      // changes to its object cannot reach them.
      enqueue(queue, { json: encodeBody(queue, body), attempt: 1 });
    },

    async consume<T>(queueName: string, handler: Handler<T>, consumeOptions: ConsumeOptions<T>) {
      assertOpen();
      const settings = consumeSettings(consumeOptions);
      const queue = queueNamed(queueName);
      const inFlight = new Set<Promise<void>>();
      const gate = createOutageGate();
      // Aborted by close(): handlers waiting for a backend give their message up.
      const closingConsumer = new AbortController();

      // Never rejects: every failure ends as a retry, a dead letter or a message put back.
      async function handle(message: Message): Promise<void> {
        const raw: unknown = JSON.parse(message.json);
        const outcome = await decide(queueName, raw, message.attempt, handler, settings, {
          logger,
          gate,
          signal: closingConsumer.signal,
        });
        if (outcome.kind === "dead") sendToDeadLetterQueue(queueName, message.attempt, outcome);
        else if (outcome.kind === "retry") retryLater(queueName, message, outcome.delayMs);
        // Given up by a closing consumer: back to the queue for the others (lost if the broker closes).
        else if (outcome.kind === "release" && !closing) enqueue(queueName, message);
      }

      const worker: Worker = {
        hasRoom: () => inFlight.size < settings.concurrency,
        take(message) {
          const done = handle(message).finally(() => {
            inFlight.delete(done);
            scheduleDrain(queue);
          });
          inFlight.add(done);
        },
      };
      queue.workers.push(worker);
      scheduleDrain(queue);

      const consumer: Consumer = {
        async close(options) {
          // Messages not yet taken stay in the queue for the other consumers.
          queue.workers = queue.workers.filter((w) => w !== worker);
          const grace = setTimeout(() => closingConsumer.abort(), options?.graceMs ?? 0);
          try {
            await Promise.all(inFlight);
          } finally {
            clearTimeout(grace);
            closingConsumer.abort();
          }
          // Only now, so that a broker.close() meanwhile still waits for these handlers.
          consumers.delete(consumer);
        },
      };
      consumers.add(consumer);
      return consumer;
    },

    async broadcast(topic, body) {
      assertOpen();
      const json = encodeBody(topic, body);
      for (const listener of topics.get(topic) ?? []) {
        setImmediate(() => {
          try {
            listener(JSON.parse(json));
          } catch (error) {
            logger.warn({ topic, err: error }, "broadcast listener failed");
          }
        });
      }
    },

    async subscribe(topic, listener) {
      assertOpen();
      let listeners = topics.get(topic);
      if (!listeners) {
        listeners = new Set();
        topics.set(topic, listeners);
      }
      listeners.add(listener);
      const subscription: Consumer = {
        async close() {
          listeners.delete(listener);
          consumers.delete(subscription);
        },
      };
      consumers.add(subscription);
      return subscription;
    },

    async waiting(queue) {
      assertOpen();
      return queues.get(queue)?.ready.length ?? 0;
    },

    async check() {
      assertOpen();
    },

    close() {
      closing ??= (async () => {
        await Promise.all([...consumers].map((c) => c.close()));
        for (const timer of retryTimers) clearTimeout(timer);
        retryTimers.clear();
      })();
      return closing;
    },
  };
}

interface Message {
  /** The body as published, serialised once: every delivery decodes a fresh copy. */
  json: string;
  attempt: number;
}

interface Queue {
  ready: Message[];
  workers: Worker[];
  /** Where the round robin over `workers` goes on. */
  next: number;
  drainScheduled: boolean;
}

interface Worker {
  hasRoom(): boolean;
  take(message: Message): void;
}
