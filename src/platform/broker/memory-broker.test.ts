import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { brokerContract } from "../../../test/support/contracts/broker.ts";
import { createMemoryBroker } from "./memory-broker.ts";

const silent = pino({ level: "silent" });

brokerContract("memory broker", async () => {
  const broker = createMemoryBroker({ logger: silent });
  return { broker, cleanup: () => broker.close() };
});

describe("memory broker", { timeout: 10_000 }, () => {
  const parse = (b: unknown) => b;

  it("is not durable", () => {
    assert.equal(createMemoryBroker({ logger: silent }).durable, false);
  });

  it("refuses work once closed, and closing twice is fine", async () => {
    const broker = createMemoryBroker({ logger: silent });
    await broker.close();
    await broker.close();
    await assert.rejects(broker.check(), /closed/);
    await assert.rejects(broker.publish("q", {}), /closed/);
    await assert.rejects(
      broker.consume("q", async () => {}, { parse, concurrency: 1 }),
      /closed/,
    );
  });

  it("cancels pending retries on close (nothing keeps the process alive)", async () => {
    const broker = createMemoryBroker({ logger: silent });
    let calls = 0;
    const failed = Promise.withResolvers<void>();
    await broker.consume(
      "q",
      async () => {
        calls++;
        failed.resolve();
        throw new Error("retry me much later");
      },
      { parse, concurrency: 1, retryDelayMs: 60_000 },
    );
    await broker.publish("q", {});
    await failed.promise;
    const started = performance.now();
    await broker.close();
    assert.ok(performance.now() - started < 1000);
    assert.equal(calls, 1);
    // Had the 60 s timer survived close(), this test file would not finish in time.
  });

  it("waits on close for the handlers in hand, even of a consumer already closing", async () => {
    const broker = createMemoryBroker({ logger: silent });
    const started = Promise.withResolvers<void>();
    const release = Promise.withResolvers<void>();
    let finished = false;
    const consumer = await broker.consume(
      "q",
      async () => {
        started.resolve();
        await release.promise;
        finished = true;
      },
      { parse, concurrency: 1 },
    );
    await broker.publish("q", {});
    await started.promise;
    void consumer.close();
    let closed = false;
    const closing = broker.close().then(() => {
      closed = true;
    });
    await sleep(20);
    assert.equal(closed, false, "close() must wait for the handler in hand");
    release.resolve();
    await closing;
    assert.equal(finished, true);
  });

  it("rejects a body that is not JSON-serialisable", async () => {
    const broker = createMemoryBroker({ logger: silent });
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    await assert.rejects(broker.publish("q", circular), TypeError);
    await assert.rejects(
      broker.publish("q", () => {}),
      /not JSON-serialisable/,
    );
    await broker.close();
  });

  it("rejects a nonsensical concurrency or maxAttempts", async () => {
    const broker = createMemoryBroker({ logger: silent });
    for (const concurrency of [0, 1.5, Number.NaN]) {
      await assert.rejects(
        broker.consume("q", async () => {}, { parse, concurrency }),
        RangeError,
      );
    }
    await assert.rejects(
      broker.consume("q", async () => {}, { parse, concurrency: 1, maxAttempts: 0 }),
      RangeError,
    );
    await broker.close();
  });

  it("logs a warning with the reason when it dead-letters", async () => {
    const lines: string[] = [];
    const logger = pino({ level: "warn" }, { write: (line: string) => lines.push(line) });
    const broker = createMemoryBroker({ logger });
    await broker.consume(
      "q",
      async () => {
        throw new Error("handler gave up");
      },
      { parse, concurrency: 1, maxAttempts: 1 },
    );
    await broker.publish("q", { n: 1 });
    while (!lines.some((l) => l.includes("dead-lettered"))) await sleep(5);
    await broker.close();

    const entry = JSON.parse(lines.find((l) => l.includes("dead-lettered")) ?? "{}");
    assert.equal(entry.level, 40);
    assert.equal(entry.queue, "q");
    assert.equal(entry.reason, "handler gave up");
    assert.equal(entry.attempts, 1);
  });

  it("gives each delivery its own copy of the body", async () => {
    const broker = createMemoryBroker({ logger: silent });
    const bodies: { list: number[] }[] = [];
    const both = Promise.withResolvers<void>();
    for (let i = 0; i < 2; i++) {
      await broker.consume<{ list: number[] }>(
        "q",
        async ({ body }) => {
          bodies.push(body);
          body.list.push(99); // must not leak into the other delivery
          if (bodies.length === 2) both.resolve();
        },
        { parse: (b) => b as { list: number[] }, concurrency: 1 },
      );
    }
    const body = { list: [1] };
    await broker.publish("q", body);
    await broker.publish("q", body);
    await both.promise;
    await broker.close();
    assert.deepEqual(bodies, [{ list: [1, 99] }, { list: [1, 99] }]);
  });
});
