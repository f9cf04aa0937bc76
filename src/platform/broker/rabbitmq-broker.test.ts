import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, it as nodeIt } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { connect } from "amqplib";
import { pino } from "pino";
import { brokerContract } from "../../../test/support/contracts/broker.ts";
import {
  closeConnections,
  countConnections,
  createTestVhost,
  listQueues,
  rabbitmqctl,
  type TestVhost,
} from "../../../test/support/rabbitmq.ts";
import type { Broker, DeadLetter } from "./broker.ts";
import { supportsConsumerTimeoutArgument } from "./rabbitmq/consumer.ts";
import { BrokerUnavailableError, createRabbitMqBroker, retryQueue } from "./rabbitmq-broker.ts";

const silent = pino({ level: "silent" });

brokerContract("RabbitMQ broker", async () => {
  const vhost = await createTestVhost("contract");
  try {
    const broker = await createRabbitMqBroker({ url: vhost.url, logger: silent });
    return {
      broker,
      async cleanup() {
        await broker.close();
        await vhost.delete();
      },
    };
  } catch (error) {
    await vhost.delete();
    throw error;
  }
});

/** A logger whose lines the test can read and wait for. */
function recordingLogger() {
  const lines: { msg: string; level: number; [key: string]: unknown }[] = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return {
    logger,
    lines,
    count: (msg: string) => lines.filter((l) => l.msg === msg).length,
    async waitFor(msg: string, count = 1, timeoutMs = 10_000) {
      const until = Date.now() + timeoutMs;
      while (lines.filter((l) => l.msg === msg).length < count) {
        if (Date.now() > until) throw new Error(`no log line "${msg}" ×${count} in ${timeoutMs} ms`);
        await sleep(10);
      }
    },
  };
}

async function eventually(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000) {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

async function queue(vhost: TestVhost, name: string) {
  const found = (await listQueues(vhost.vhost)).find((q) => q.name === name);
  assert.ok(found, `queue ${name} exists`);
  return found;
}

const it = (title: string, fn: () => Promise<void>) => nodeIt(title, { timeout: 20_000 }, fn);

describe("RabbitMQ broker", () => {
  let vhost: TestVhost;
  const opened: Broker[] = [];
  let log: ReturnType<typeof recordingLogger>;

  async function open(options: { heartbeatSeconds?: number; unavailableTimeoutMs?: number } = {}) {
    const broker = await createRabbitMqBroker({
      url: vhost.url,
      logger: log.logger,
      reconnectDelayMs: { initial: 50, max: 500 },
      ...options,
    });
    opened.push(broker);
    return broker;
  }

  beforeEach(async () => {
    vhost = await createTestVhost("broker");
    log = recordingLogger();
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((b) => b.close()));
    await vhost.delete();
  });

  it("is durable: declares durable queues, retry queues per delay and a dead-letter queue; messages persistent", async () => {
    const broker = await open();
    assert.equal(broker.durable, true);
    await broker.publish("work", { n: 1 });
    const consumer = await broker.consume("other", async () => {}, {
      parse: (b) => b,
      concurrency: 1,
      maxAttempts: 3,
      retryDelayMs: 100,
    });
    await consumer.close();

    const queues = new Map((await listQueues(vhost.vhost)).map((q) => [q.name, q]));
    assert.deepEqual([...queues.keys()].sort(), [
      "other",
      "other.dead",
      "other.retry.100",
      "other.retry.200",
      "work",
      "work.dead",
    ]);
    assert.ok(
      [...queues.values()].every((q) => q.durable),
      "all durable",
    );
    assert.equal(queues.get("work")?.messagesPersistent, 1);
    const retry = queues.get(retryQueue("other", 200));
    assert.match(retry?.arguments ?? "", /x-message-ttl.*200/);
    assert.match(retry?.arguments ?? "", /x-dead-letter-exchange/);
    assert.match(retry?.arguments ?? "", /x-dead-letter-routing-key.*other/);
  });

  it("a message taken by a consumer whose connection is closed by the server is delivered again", async () => {
    const broker = await open();
    await broker.publish("jobs", { id: "survivor" });
    // A worker that takes the message and dies before acknowledging it.
    const raw = await connect(vhost.url);
    raw.on("error", () => {});
    const rawChannel = await raw.createChannel();
    rawChannel.on("error", () => {});
    const taken = Promise.withResolvers<void>();
    await rawChannel.prefetch(1);
    await rawChannel.consume("jobs", () => taken.resolve(), { noAck: false });
    await taken.promise;

    const deliveries: { body: unknown; attempt: number }[] = [];
    const received = Promise.withResolvers<void>();
    await broker.consume(
      "jobs",
      async ({ body, attempt }) => {
        deliveries.push({ body, attempt });
        received.resolve();
      },
      { parse: (b) => b, concurrency: 1 },
    );
    await sleep(100);
    assert.equal(deliveries.length, 0, "the message is in the other worker's hands");

    await closeConnections({ vhost: vhost.vhost, reason: "simulated failure" });
    await received.promise;
    assert.deepEqual(deliveries, [{ body: { id: "survivor" }, attempt: 1 }]);
    await log.waitFor("reconnected to RabbitMQ; consumers resumed");
    await eventually(async () => (await queue(vhost, "jobs")).messages === 0, "the message acknowledged");
  });

  it("does not run a handler again when only its acknowledgement was lost with the connection", async () => {
    const broker = await open();
    const started = Promise.withResolvers<void>();
    const release = Promise.withResolvers<void>();
    let calls = 0;
    await broker.consume(
      "convert",
      async () => {
        calls++;
        started.resolve();
        await release.promise;
      },
      { parse: (b) => b, concurrency: 1 },
    );
    await broker.publish("convert", { id: 1 });
    await started.promise;
    await closeConnections({ vhost: vhost.vhost, reason: "simulated failure" });
    await log.waitFor("reconnected to RabbitMQ; consumers resumed");
    release.resolve(); // the long job ends after the connection it came on is gone

    await log.waitFor(
      "redelivered message was already handled here; settling it without running the handler again",
    );
    await eventually(
      async () => (await queue(vhost, "convert")).messages === 0,
      "the redelivery acknowledged",
    );
    assert.equal(calls, 1);
  });

  it("aborts a running handler's signal when its connection is lost, and the message comes again", async () => {
    const broker = await open();
    const deliveries: { attempt: number; aborted: boolean }[] = [];
    const firstAborted = Promise.withResolvers<void>();
    const again = Promise.withResolvers<void>();
    await broker.consume(
      "convert",
      async ({ attempt, signal }) => {
        deliveries.push({ attempt, aborted: signal.aborted });
        if (deliveries.length > 1) {
          again.resolve();
          return;
        }
        // A long conversion: it goes on until the broker says the message was taken back.
        await new Promise<void>((resolve) =>
          signal.addEventListener("abort", () => resolve(), { once: true }),
        );
        firstAborted.resolve();
        signal.throwIfAborted();
      },
      { parse: (b) => b, concurrency: 1 },
    );
    await broker.publish("convert", { id: 1 });
    await eventually(() => deliveries.length === 1, "the first delivery");
    await closeConnections({ vhost: vhost.vhost, reason: "simulated failure" });
    await firstAborted.promise;
    await again.promise;
    // Given again as it was (a drop is not the message's fault), to a handler with a live signal.
    assert.deepEqual(deliveries, [
      { attempt: 1, aborted: false },
      { attempt: 1, aborted: false },
    ]);
    await eventually(async () => (await queue(vhost, "convert")).messages === 0, "acknowledged once");
    assert.equal(log.count("message dead-lettered"), 0);
  });

  it("publish during a lost connection waits for the reconnection, and consumers resume", async () => {
    const broker = await open();
    const received: unknown[] = [];
    const both = Promise.withResolvers<void>();
    await broker.consume(
      "q",
      async ({ body }) => {
        received.push(body);
        if (received.length === 2) both.resolve();
      },
      { parse: (b) => b, concurrency: 1 },
    );
    await broker.publish("q", { n: 1 });
    await closeConnections({ vhost: vhost.vhost, reason: "simulated failure" });
    await log.waitFor("lost the connection to RabbitMQ; reconnecting");
    await assert.rejects(broker.check(), BrokerUnavailableError);
    await broker.publish("q", { n: 2 }); // resolves only once confirmed on the new connection
    await both.promise;
    assert.deepEqual(received, [{ n: 1 }, { n: 2 }]);
    await broker.check();

    const lost = log.lines.find((l) => l.msg === "lost the connection to RabbitMQ; reconnecting");
    assert.equal(lost?.level, 40);
    assert.match(String(lost?.err), /simulated failure|CONNECTION_FORCED/);
    assert.equal(await countConnections(vhost.vhost), 1, "one connection, not a leak per reconnect");
  });

  it("rejects publish with BrokerUnavailableError when RabbitMQ stays unreachable, within the bound", async () => {
    const broker = await open({ unavailableTimeoutMs: 400 });
    await broker.publish("q", { n: 1 });
    await vhost.delete(); // the connection goes, and it cannot come back
    await log.waitFor("lost the connection to RabbitMQ; reconnecting");
    const before = performance.now();
    await assert.rejects(broker.publish("q", { n: 2 }), (error: Error) => {
      assert.ok(error instanceof BrokerUnavailableError);
      assert.match(error.message, /unavailable/);
      return true;
    });
    const waited = performance.now() - before;
    assert.ok(waited >= 350 && waited < 2000, `waited ${waited} ms`);
    await assert.rejects(broker.check(), BrokerUnavailableError);
    await broker.close(); // promptly, though disconnected
  });

  it("dead-letters a body that is not JSON with the reason, persistent, and keeps consuming", async () => {
    const broker = await open();
    const handled: unknown[] = [];
    const good = Promise.withResolvers<void>();
    await broker.consume(
      "in",
      async ({ body }) => {
        handled.push(body);
        good.resolve();
      },
      { parse: (b) => b, concurrency: 1 },
    );
    const raw = await connect(vhost.url);
    try {
      const channel = await raw.createConfirmChannel();
      channel.sendToQueue("in", Buffer.from("this is {not json"), { persistent: true });
      channel.sendToQueue("in", Buffer.from(JSON.stringify({ ok: true })), { persistent: true });
      await channel.waitForConfirms();
      await good.promise;
      await eventually(async () => (await queue(vhost, "in.dead")).messages === 1, "the dead letter");

      const message = await channel.get("in.dead", { noAck: true });
      assert.ok(message);
      assert.equal(message.properties.deliveryMode, 2, "persistent");
      const letter = JSON.parse(message.content.toString()) as DeadLetter;
      assert.equal(letter.queue, "in");
      assert.equal(letter.attempts, 1);
      assert.equal(letter.body, "this is {not json");
      assert.match(letter.reason, /^message body is not JSON: /);
      assert.deepEqual(handled, [{ ok: true }]);
    } finally {
      await raw.close();
    }
    const dead = log.lines.find((l) => l.msg === "message dead-lettered");
    assert.equal(dead?.level, 40);
  });

  it("carries the attempt in a header through the retry queue", async () => {
    const broker = await open();
    const attempts: number[] = [];
    const second = Promise.withResolvers<void>();
    await broker.consume(
      "flaky",
      async ({ attempt }) => {
        attempts.push(attempt);
        if (attempt === 1) throw new Error("once");
        second.resolve();
      },
      { parse: (b) => b, concurrency: 1, retryDelayMs: 30 },
    );
    // A message from another publisher, without our headers, counts as a first delivery.
    const raw = await connect(vhost.url);
    try {
      const channel = await raw.createConfirmChannel();
      channel.sendToQueue("flaky", Buffer.from("{}"));
      await channel.waitForConfirms();
    } finally {
      await raw.close();
    }
    await second.promise;
    assert.deepEqual(attempts, [1, 2]);
    await eventually(
      async () => (await queue(vhost, retryQueue("flaky", 30))).messages === 0,
      "retry drained",
    );
  });

  it("keeps the connection and does not redeliver while a handler outlasts several heartbeats", async () => {
    const broker = await open({ heartbeatSeconds: 1 });
    const connections = await listConnectionTimeouts(vhost.vhost);
    assert.deepEqual(connections, [1], "heartbeat negotiated to 1 s");
    let calls = 0;
    const done = Promise.withResolvers<void>();
    await broker.consume(
      "slow",
      async () => {
        calls++;
        await sleep(3500); // more than 3 heartbeat intervals
        done.resolve();
      },
      { parse: (b) => b, concurrency: 1 },
    );
    await broker.publish("slow", {});
    await done.promise;
    await eventually(async () => (await queue(vhost, "slow")).messages === 0, "acknowledged");
    await sleep(200);
    assert.equal(calls, 1);
    assert.equal(log.count("lost the connection to RabbitMQ; reconnecting"), 0);
  });

  it("asks for a consumer timeout of its own with holdLimitMs, and warns at start where the server cannot take it", async () => {
    const broker = await open();
    const received = Promise.withResolvers<unknown>();
    await broker.consume(
      "long-work",
      async ({ body }) => {
        received.resolve(body);
      },
      { parse: (b) => b, concurrency: 1, holdLimitMs: 4_200_000 },
    );
    await broker.publish("long-work", { n: 1 });
    assert.deepEqual(await received.promise, { n: 1 }, "the server takes the consumer with its argument");

    const consumers = await rabbitmqctl("list_consumers", "-p", vhost.vhost, "queue_name", "arguments");
    const line = consumers.split("\n").find((l) => l.startsWith("long-work\t"));
    assert.match(String(line), /x-consumer-timeout.*4200000/, consumers);

    const version = (await rabbitmqctl("version")).trim();
    const warning = (l: { msg: string }) => l.msg.includes("cannot take a consumer timeout per consumer");
    if (supportsConsumerTimeoutArgument(version)) {
      assert.equal(log.lines.filter(warning).length, 0);
    } else {
      // This server applies its global consumer_timeout (30 min by default) to every consumer:
      // the operator is told to raise it above the conversion's limit.
      const warnings = log.lines.filter(warning);
      assert.equal(warnings.length, 1, JSON.stringify(warnings));
      assert.equal(warnings[0]?.level, 40);
      assert.equal(warnings[0]?.holdLimitMs, 4_200_000);
      assert.match(String(warnings[0]?.msg), /consumer_timeout.*above 4200000 ms/);
    }
  });

  it("holds at most `concurrency` unacknowledged messages per consumer (prefetch)", async () => {
    const broker = await open();
    for (let n = 0; n < 6; n++) await broker.publish("pf", { n });
    const release = Promise.withResolvers<void>();
    let active = 0;
    const allDone = Promise.withResolvers<void>();
    let finished = 0;
    await broker.consume(
      "pf",
      async () => {
        active++;
        await release.promise;
        active--;
        if (++finished === 6) allDone.resolve();
      },
      { parse: (b) => b, concurrency: 2 },
    );
    await eventually(() => active === 2, "two handlers running");
    const info = await queue(vhost, "pf");
    assert.equal(info.messagesUnacknowledged, 2);
    assert.equal(info.messagesReady, 4);
    release.resolve();
    await allDone.promise;
  });

  it("consumes again when its queue is deleted and published to anew", async () => {
    const broker = await open();
    const received: unknown[] = [];
    const second = Promise.withResolvers<void>();
    await broker.consume(
      "fragile",
      async ({ body }) => {
        received.push(body);
        if (received.length === 2) second.resolve();
      },
      { parse: (b) => b, concurrency: 1 },
    );
    await broker.publish("fragile", { n: 1 });
    await eventually(() => received.length === 1, "the first message");
    const raw = await connect(vhost.url);
    try {
      const channel = await raw.createChannel();
      await channel.deleteQueue("fragile");
    } finally {
      await raw.close();
    }
    await broker.publish("fragile", { n: 2 }); // declares the queue again
    await second.promise;
    assert.deepEqual(received, [{ n: 1 }, { n: 2 }]);
    assert.equal(log.count("RabbitMQ cancelled the consumer (queue deleted?); consuming again"), 1);
  });

  it("resubscribes broadcast listeners after a reconnection", async () => {
    const broker = await open();
    const heard: unknown[] = [];
    const second = Promise.withResolvers<void>();
    const topic = `updates.${randomUUID()}`;
    await broker.subscribe(topic, (body) => {
      heard.push(body);
      if (heard.length === 2) second.resolve();
    });
    await broker.broadcast(topic, { n: 1 });
    await eventually(() => heard.length === 1, "the first broadcast");
    await closeConnections({ vhost: vhost.vhost, reason: "simulated failure" });
    await log.waitFor("reconnected to RabbitMQ; consumers resumed");
    await broker.broadcast(topic, { n: 2 });
    await second.promise;
    assert.deepEqual(heard, [{ n: 1 }, { n: 2 }]);
  });

  it("fails fast with a clear error for an unknown vhost, and leaves no connection", async () => {
    const url = new URL(vhost.url);
    url.pathname = `/${encodeURIComponent(`${vhost.vhost}-missing`)}`;
    const before = performance.now();
    await assert.rejects(
      createRabbitMqBroker({ url: url.toString(), logger: silent }),
      /refused the connection/,
    );
    assert.ok(performance.now() - before < 5000);
  });

  it("close() waits for handlers in hand and closes its connection", async () => {
    const broker = await open();
    const started = Promise.withResolvers<void>();
    let finished = false;
    await broker.consume(
      "c",
      async () => {
        started.resolve();
        await sleep(200);
        finished = true;
      },
      { parse: (b) => b, concurrency: 1 },
    );
    await broker.publish("c", {});
    await started.promise;
    await broker.close();
    assert.equal(finished, true);
    await assert.rejects(broker.publish("c", {}), /closed/);
    await eventually(async () => (await countConnections(vhost.vhost)) === 0, "no connection left");
    assert.equal((await queue(vhost, "c")).messages, 0, "the finished message was acknowledged");
  });
});

async function listConnectionTimeouts(vhost: string): Promise<number[]> {
  const out = await rabbitmqctl("list_connections", "--no-table-headers", "vhost", "timeout");
  return out
    .split("\n")
    .map((line) => line.split("\t"))
    .filter(([v]) => v === vhost)
    .map(([, timeout]) => Number(timeout));
}
