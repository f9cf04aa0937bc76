import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { afterEach, beforeEach, describe, it as nodeIt } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import {
  type Broker,
  type DeadLetter,
  type Delivery,
  deadLetterQueue,
  type Handler,
  PermanentError,
} from "../../../src/platform/broker/broker.ts";
import { UnavailableError } from "../../../src/platform/unavailable.ts";

/**
 * The behaviour every `Broker` must show, as node:test suites. Each adapter's test file calls this
 * with a factory, so the embedded and the RabbitMQ broker are held to the very same tests.
 * `cleanup` must also cope with a broker the test closed already.
 */
export function brokerContract(
  name: string,
  open: () => Promise<{ broker: Broker; cleanup(): Promise<void> }>,
): void {
  // A time limit per test: the factory and cleanup (a RabbitMQ vhost each) have their own.
  const it = (title: string, fn: () => Promise<void>) => nodeIt(title, { timeout: 10_000 }, fn);

  describe(`${name}: Broker contract`, () => {
    let broker: Broker;
    let cleanup: () => Promise<void>;

    beforeEach(
      async () => {
        ({ broker, cleanup } = await open());
      },
      { timeout: 30_000 },
    );
    afterEach(
      async () => {
        await cleanup();
      },
      { timeout: 30_000 },
    );

    it("is reachable", async () => {
      await broker.check();
    });

    it("delivers a published message as plain JSON data", async () => {
      const queue = uniqueQueue("roundtrip");
      const body = { version: 1, text: "héllo ✓", nested: { list: [1, null, true] }, at: new Date(0) };
      const received = collect(broker, queue, 1);
      await broker.publish(queue, body);
      body.nested.list.push(4); // too late: the broker has its own copy

      const [delivery] = await received;
      assert.deepEqual(delivery, {
        body: {
          version: 1,
          text: "héllo ✓",
          nested: { list: [1, null, true] },
          at: "1970-01-01T00:00:00.000Z",
        },
        attempt: 1,
        isLastAttempt: false,
      });
    });

    it("keeps messages published before anyone consumes, in order", async () => {
      const queue = uniqueQueue("buffer");
      for (const n of [1, 2, 3]) await broker.publish(queue, { n });

      const received = await collect<{ n: number }>(broker, queue, 3);
      assert.deepEqual(
        received.map((d) => d.body.n),
        [1, 2, 3],
      );
    });

    it("counts the messages waiting for a consumer, not those in hand", async () => {
      const queue = uniqueQueue("waiting");
      assert.equal(await broker.waiting(queue), 0, "a queue never used");
      for (const n of [1, 2, 3]) await broker.publish(queue, { n });
      assert.equal(await broker.waiting(queue), 3);

      const taken = deferred();
      const release = deferred();
      const consumer = await broker.consume(
        queue,
        async () => {
          taken.resolve();
          await release.promise;
        },
        { parse: asNumbered, concurrency: 1 },
      );
      await taken.promise;
      for (let i = 0; (await broker.waiting(queue)) !== 2; i++) {
        assert.ok(i < 100, "one message in hand, two waiting");
        await sleep(20);
      }
      release.resolve();
      for (let i = 0; (await broker.waiting(queue)) !== 0; i++) {
        assert.ok(i < 100, "all taken");
        await sleep(20);
      }
      await consumer.close();
    });

    it("shares the work between competing consumers, each message to one of them", async () => {
      const queue = uniqueQueue("compete");
      const handledBy = new Map<number, string[]>();
      const allDone = countdown(12);
      for (const consumerName of ["a", "b"]) {
        await broker.consume<{ n: number }>(
          queue,
          async ({ body }) => {
            await sleep(10);
            handledBy.set(body.n, [...(handledBy.get(body.n) ?? []), consumerName]);
            allDone.tick();
          },
          { parse: asNumbered, concurrency: 1 },
        );
      }
      for (let n = 0; n < 12; n++) await broker.publish(queue, { n });
      await allDone.done;
      await sleep(30); // a duplicate delivery would show up now

      assert.equal(handledBy.size, 12);
      const owners = [...handledBy.values()];
      assert.ok(
        owners.every((o) => o.length === 1),
        "each message handled exactly once",
      );
      assert.ok(owners.some((o) => o[0] === "a"));
      assert.ok(owners.some((o) => o[0] === "b"));
    });

    it("runs at most `concurrency` handlers of one consumer at a time", async () => {
      const queue = uniqueQueue("concurrency");
      for (let n = 0; n < 8; n++) await broker.publish(queue, { n });
      let active = 0;
      let mostActive = 0;
      const allDone = countdown(8);
      await broker.consume(
        queue,
        async () => {
          active++;
          mostActive = Math.max(mostActive, active);
          await sleep(15);
          active--;
          allDone.tick();
        },
        { parse: asNumbered, concurrency: 3 },
      );
      await allDone.done;
      assert.equal(mostActive, 3);
    });

    it("redelivers a failed message after a growing delay, counting attempts, while others flow", async () => {
      const queue = uniqueQueue("retry");
      const seen: { id: string; attempt: number; isLastAttempt: boolean; at: number }[] = [];
      const firstFailure = deferred();
      const succeeded = deferred();
      await broker.consume<{ id: string }>(
        queue,
        async ({ body, attempt, isLastAttempt }) => {
          seen.push({ id: body.id, attempt, isLastAttempt, at: performance.now() });
          if (body.id !== "flaky") return;
          if (attempt < 3) {
            firstFailure.resolve();
            throw new Error("temporarily broken");
          }
          succeeded.resolve();
        },
        { parse: (b) => b as { id: string }, concurrency: 1, maxAttempts: 5, retryDelayMs: 40 },
      );
      await broker.publish(queue, { id: "flaky" });
      await firstFailure.promise;
      await broker.publish(queue, { id: "steady" });
      await succeeded.promise;
      await sleep(60); // nothing more may come once it succeeded

      assert.deepEqual(
        seen.map(({ id, attempt, isLastAttempt }) => ({ id, attempt, isLastAttempt })),
        [
          { id: "flaky", attempt: 1, isLastAttempt: false },
          { id: "steady", attempt: 1, isLastAttempt: false },
          { id: "flaky", attempt: 2, isLastAttempt: false },
          { id: "flaky", attempt: 3, isLastAttempt: false },
        ],
      );
      const flakyTimes = seen.filter((s) => s.id === "flaky").map((s) => s.at);
      const [t1 = 0, t2 = 0, t3 = 0] = flakyTimes;
      // Timers may round down by a millisecond; the backoff doubles: 40 ms, then 80 ms.
      assert.ok(t2 - t1 >= 38, `first retry after ${t2 - t1} ms`);
      assert.ok(t3 - t2 >= 78, `second retry after ${t3 - t2} ms`);
    });

    it("dead-letters a message that fails `maxAttempts` times, with the reason and attempts", async () => {
      const queue = uniqueQueue("exhausted");
      const attempts: [number, boolean][] = [];
      const letters = collectDeadLetters(broker, queue, 1);
      await broker.consume(
        queue,
        async ({ attempt, isLastAttempt }) => {
          attempts.push([attempt, isLastAttempt]);
          throw new Error("always broken");
        },
        { parse: asNumbered, concurrency: 1, maxAttempts: 3, retryDelayMs: 10 },
      );
      const before = Date.now();
      await broker.publish(queue, { n: 7 });

      const [letter] = await letters;
      assert.ok(letter);
      assert.equal(letter.queue, queue);
      assert.equal(letter.attempts, 3);
      assert.match(letter.reason, /always broken/);
      assert.deepEqual(letter.body, { n: 7 });
      const deadAt = Date.parse(letter.deadAt);
      assert.ok(deadAt >= before - 1000 && deadAt <= Date.now() + 1000, `deadAt ${letter.deadAt}`);
      await sleep(40); // and it is not delivered again
      assert.deepEqual(attempts, [
        [1, false],
        [2, false],
        [3, true],
      ]);
    });

    it("waits out an unavailable backend on the same message, without using up attempts or starting others", async () => {
      const queue = uniqueQueue("outage");
      const events: string[] = [];
      let failures = 0;
      const bothDone = countdown(2);
      const firstFailure = deferred();
      await broker.consume<{ n: number }>(
        queue,
        async ({ body, attempt }) => {
          events.push(`${body.n}@${attempt}`);
          if (body.n === 1 && failures < 6) {
            failures++;
            firstFailure.resolve();
            throw new UnavailableError("database", "the database is not reachable");
          }
          bothDone.tick();
        },
        {
          parse: asNumbered,
          concurrency: 2,
          maxAttempts: 2,
          retryDelayMs: 10,
          outageDelayMs: { initial: 5, max: 20 },
        },
      );
      await broker.publish(queue, { n: 1 });
      await firstFailure.promise;
      await broker.publish(queue, { n: 2 });
      await bothDone.done;
      // Seven tries of message 1, all as its first attempt, and message 2 only after it got through.
      assert.deepEqual(events, ["1@1", "1@1", "1@1", "1@1", "1@1", "1@1", "1@1", "2@1"]);
      assert.equal(await countDeadLetters(broker, queue), 0, "nothing dead-lettered");
    });

    it("gives a message waiting for a backend back when its consumer closes", async () => {
      const queue = uniqueQueue("outage-close");
      const tried = deferred();
      const consumer = await broker.consume(
        queue,
        async () => {
          tried.resolve();
          throw new UnavailableError("storage", "the store is not reachable");
        },
        { parse: asNumbered, concurrency: 1, outageDelayMs: { initial: 60_000, max: 60_000 } },
      );
      await broker.publish(queue, { n: 5 });
      await tried.promise;
      const started = Date.now();
      await consumer.close();
      assert.ok(Date.now() - started < 2000, "close() does not wait for the outage to end");
      const [again] = await collect<{ n: number }>(broker, queue, 1);
      assert.deepEqual(again, { body: { n: 5 }, attempt: 1, isLastAttempt: false });
    });

    it("dead-letters at once on a PermanentError", async () => {
      const queue = uniqueQueue("permanent");
      let calls = 0;
      const letters = collectDeadLetters(broker, queue, 1);
      await broker.consume(
        queue,
        async () => {
          calls++;
          throw new PermanentError("cannot ever work");
        },
        { parse: asNumbered, concurrency: 1, maxAttempts: 5, retryDelayMs: 10 },
      );
      await broker.publish(queue, { n: 1 });

      const [letter] = await letters;
      assert.equal(letter?.attempts, 1);
      assert.match(letter?.reason ?? "", /cannot ever work/);
      await sleep(40);
      assert.equal(calls, 1);
    });

    it("dead-letters a body that fails `parse` without calling the handler, and goes on", async () => {
      const queue = uniqueQueue("invalid");
      const handled: unknown[] = [];
      const good = deferred();
      const letters = collectDeadLetters(broker, queue, 1);
      await broker.consume<{ version: 1 }>(
        queue,
        async ({ body }) => {
          handled.push(body);
          good.resolve();
        },
        {
          parse: (b) => {
            if ((b as { version?: unknown }).version !== 1)
              throw new Error("invalid message: version must be 1");
            return b as { version: 1 };
          },
          concurrency: 1,
          retryDelayMs: 10,
        },
      );
      await broker.publish(queue, { version: 99 });
      await broker.publish(queue, { version: 1 });

      const [letter] = await letters;
      assert.deepEqual(
        { ...letter, deadAt: undefined },
        {
          queue,
          reason: "invalid message: version must be 1",
          attempts: 1,
          body: { version: 99 },
          deadAt: undefined,
        },
      );
      await good.promise;
      assert.deepEqual(handled, [{ version: 1 }]);
    });

    it("closing a consumer waits for its handlers in hand and leaves the rest queued", async () => {
      const queue = uniqueQueue("close");
      const started = deferred();
      const release = deferred();
      const handled: number[] = [];
      const first = await broker.consume<{ n: number }>(
        queue,
        async ({ body }) => {
          started.resolve();
          await release.promise;
          handled.push(body.n);
        },
        { parse: asNumbered, concurrency: 1 },
      );
      for (const n of [1, 2, 3]) await broker.publish(queue, { n });
      await started.promise;

      let closed = false;
      const closing = first.close().then(() => {
        closed = true;
      });
      await sleep(30);
      assert.equal(closed, false, "close() must wait for the handler in hand");
      release.resolve();
      await closing;
      assert.deepEqual(handled, [1]);

      const rest = await collect<{ n: number }>(broker, queue, 2);
      assert.deepEqual(
        rest.map((d) => d.body.n),
        [2, 3],
      );
      assert.deepEqual(handled, [1], "the closed consumer took nothing more");
    });

    it("broadcasts to every current subscriber of a topic, and to no one after unsubscribing", async () => {
      const topic = uniqueQueue("topic");
      const heardByA: unknown[] = [];
      const heardByB: unknown[] = [];
      const bothHeard = countdown(2);
      const a = await broker.subscribe(topic, (body) => {
        heardByA.push(body);
        bothHeard.tick();
      });
      const b = await broker.subscribe(topic, (body) => {
        heardByB.push(body);
        bothHeard.tick();
      });
      await broker.broadcast(topic, { n: 1 });
      await bothHeard.done;
      assert.deepEqual(heardByA, [{ n: 1 }]);
      assert.deepEqual(heardByB, [{ n: 1 }]);

      await a.close();
      const bHeardAgain = deferred();
      const c = await broker.subscribe(uniqueQueue("other-topic"), () => assert.fail("wrong topic"));
      await b.close();
      const d = await broker.subscribe(topic, () => bHeardAgain.resolve());
      await broker.broadcast(topic, { n: 2 });
      await bHeardAgain.promise;
      await sleep(50);
      assert.deepEqual(heardByA, [{ n: 1 }], "a closed subscription hears nothing");
      assert.deepEqual(heardByB, [{ n: 1 }], "a closed subscription hears nothing");
      await c.close();
      await d.close();
    });

    it("keeps a subscription going when its listener throws", async () => {
      const topic = uniqueQueue("throwing-topic");
      const heard: number[] = [];
      const second = deferred();
      const subscription = await broker.subscribe(topic, (body) => {
        const { n } = asNumbered(body);
        heard.push(n);
        if (n === 1) throw new Error("listener failed");
        second.resolve();
      });
      await broker.broadcast(topic, { n: 1 });
      await broker.broadcast(topic, { n: 2 });
      await second.promise;
      assert.deepEqual(heard, [1, 2]);
      await subscription.close();
    });

    it("survives handlers and parsers that throw anything, synchronously or not", async () => {
      const unhandled: unknown[] = [];
      const onUnhandled = (reason: unknown) => unhandled.push(reason);
      process.on("unhandledRejection", onUnhandled);
      try {
        const queue = uniqueQueue("throwing");
        const letters = collectDeadLetters(broker, queue, 4);
        const fine = deferred();
        const throwSync = ((): never => {
          throw new Error("sync throw");
        }) as Handler<unknown>;
        const handlers: Record<string, Handler<unknown>> = {
          sync: throwSync,
          string: () => Promise.reject("a string, not an Error"),
          undefined: async () => {
            throw undefined;
          },
          fine: async () => fine.resolve(),
        };
        await broker.consume<{ kind: string }>(
          queue,
          (delivery) => {
            const handler = handlers[delivery.body.kind];
            assert.ok(handler);
            return handler(delivery);
          },
          {
            parse: (b) => {
              if ((b as { kind?: unknown }).kind === "unparsable") throw "parse threw a string";
              return b as { kind: string };
            },
            concurrency: 2,
            maxAttempts: 2,
            retryDelayMs: 10,
          },
        );
        for (const kind of ["sync", "string", "undefined", "unparsable", "fine"]) {
          await broker.publish(queue, { kind });
        }

        const dead = await letters;
        assert.deepEqual(dead.map((l) => [(l.body as { kind: string }).kind, l.attempts, l.reason]).sort(), [
          ["string", 2, "a string, not an Error"],
          ["sync", 2, "sync throw"],
          ["undefined", 2, "undefined"],
          ["unparsable", 1, "parse threw a string"],
        ]);
        await fine.promise;
        await sleep(20);
        assert.deepEqual(unhandled, []);
      } finally {
        process.off("unhandledRejection", onUnhandled);
      }
    });

    it("rejects a body that is not JSON-serialisable, and nonsensical consume options", async () => {
      const circular: Record<string, unknown> = {};
      circular.self = circular;
      const queue = uniqueQueue("invalid-input");
      await assert.rejects(broker.publish(queue, circular), TypeError);
      await assert.rejects(
        broker.publish(queue, () => {}),
        /not JSON-serialisable/,
      );
      await assert.rejects(broker.broadcast(queue, circular), TypeError);
      for (const concurrency of [0, 1.5, Number.NaN]) {
        await assert.rejects(
          broker.consume(queue, async () => {}, { parse: asNumbered, concurrency }),
          RangeError,
        );
      }
      await assert.rejects(
        broker.consume(queue, async () => {}, { parse: asNumbered, concurrency: 1, maxAttempts: 0 }),
        RangeError,
      );
    });

    it("close() waits for the handlers in hand, then refuses work; closing twice is fine", async () => {
      const queue = uniqueQueue("broker-close");
      const started = deferred();
      const release = deferred();
      let finished = false;
      await broker.consume(
        queue,
        async () => {
          started.resolve();
          await release.promise;
          finished = true;
        },
        { parse: asNumbered, concurrency: 1 },
      );
      await broker.publish(queue, { n: 1 });
      await started.promise;
      let closed = false;
      const closing = broker.close().then(() => {
        closed = true;
      });
      await sleep(30);
      assert.equal(closed, false, "close() must wait for the handler in hand");
      release.resolve();
      await closing;
      assert.equal(finished, true);
      await broker.close();
      await assert.rejects(broker.check(), /closed/);
      await assert.rejects(broker.publish(queue, {}), /closed/);
      await assert.rejects(broker.broadcast(queue, {}), /closed/);
      await assert.rejects(
        broker.subscribe(queue, () => {}),
        /closed/,
      );
      await assert.rejects(
        broker.consume(queue, async () => {}, { parse: asNumbered, concurrency: 1 }),
        /closed/,
      );
    });
  });
}

function uniqueQueue(label: string): string {
  return `contract.${label}.${randomUUID()}`;
}

function asNumbered(body: unknown): { n: number } {
  return body as { n: number };
}

function deferred(): { promise: Promise<void>; resolve(): void } {
  const { promise, resolve } = Promise.withResolvers<void>();
  return { promise, resolve: () => resolve() };
}

function countdown(count: number): { done: Promise<void>; tick(): void } {
  const { promise, resolve } = deferred();
  let left = count;
  if (left === 0) resolve();
  return {
    done: promise,
    tick() {
      if (--left === 0) resolve();
    },
  };
}

/** Consumes `queue` until `count` deliveries arrived, then stops consuming. */
async function collect<T = unknown>(
  broker: Broker,
  queue: string,
  count: number,
): Promise<Omit<Delivery<T>, "signal">[]> {
  const received: Omit<Delivery<T>, "signal">[] = [];
  const enough = deferred();
  const consumer = await broker.consume<T>(
    queue,
    async ({ signal: _, ...delivery }) => {
      received.push(delivery);
      if (received.length === count) enough.resolve();
    },
    { parse: (b) => b as T, concurrency: 1 },
  );
  await enough.promise;
  await consumer.close();
  return received;
}

/** How many dead letters `queue` has now (consumed and put back is not needed: this reads for a moment). */
async function countDeadLetters(broker: Broker, queue: string): Promise<number> {
  let count = 0;
  const consumer = await broker.consume(
    deadLetterQueue(queue),
    async () => {
      count++;
    },
    { parse: (b) => b, concurrency: 10 },
  );
  await sleep(100);
  await consumer.close();
  return count;
}

async function collectDeadLetters(broker: Broker, queue: string, count: number): Promise<DeadLetter[]> {
  const received = await collect<DeadLetter>(broker, deadLetterQueue(queue), count);
  return received.map((d) => d.body);
}
