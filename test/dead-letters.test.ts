import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { pino } from "pino";
import { type Broker, PermanentError } from "../src/platform/broker/broker.ts";
import { createRabbitMqBroker } from "../src/platform/broker/rabbitmq-broker.ts";
import { createTestVhost, listQueues, type TestVhost } from "./support/rabbitmq.ts";

const run = promisify(execFile);
const main = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));

/** `vid2mp3 dead-letters …` as an operator runs it, against a RabbitMQ vhost of its own. */
describe("vid2mp3 dead-letters", { timeout: 120_000 }, () => {
  let vhost: TestVhost;
  let broker: Broker;

  const cli = (...args: string[]) =>
    run(process.execPath, [main, "dead-letters", ...args], {
      env: { PATH: process.env.PATH ?? "", AMQP_URL: vhost.url, LOG_LEVEL: "silent" },
    });

  /** A message the `queue` consumer refuses for good: it lands in `<queue>.dead`. */
  async function deadLetter(body: object, queue = "video"): Promise<void> {
    const consumer = await broker.consume(
      queue,
      async () => {
        throw new PermanentError("this file can never be converted");
      },
      { parse: (b) => b, concurrency: 1 },
    );
    const already = (await listQueues(vhost.vhost)).find((q) => q.name === `${queue}.dead`)?.messages ?? 0;
    await broker.publish(queue, body);
    for (let i = 0; ; i++) {
      const dead = (await listQueues(vhost.vhost)).find((q) => q.name === `${queue}.dead`);
      if (dead && dead.messages > already) break;
      assert.ok(i < 100, "the message was dead-lettered");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await consumer.close();
  }

  before(async () => {
    vhost = await createTestVhost("dead-letters");
    broker = await createRabbitMqBroker({ url: vhost.url, logger: pino({ level: "silent" }) });
  });
  after(async () => {
    await broker?.close();
    await vhost?.delete();
  });

  it("lists, shows, replays and purges dead letters", async () => {
    assert.match((await cli("list")).stdout, /No dead letters/);
    await deadLetter({ version: 1, jobId: "poison" });

    const listed = JSON.parse((await cli("list", "--json")).stdout) as {
      id: string;
      letter: { queue: string; reason: string; body: unknown };
    }[];
    assert.equal(listed.length, 1);
    const [entry] = listed;
    assert.ok(entry);
    assert.equal(entry.letter.queue, "video");
    assert.match(entry.letter.reason, /can never be converted/);
    assert.deepEqual(entry.letter.body, { version: 1, jobId: "poison" });
    // Looking changes nothing.
    assert.match((await cli("list")).stdout, new RegExp(`${entry.id}\\s+video\\s.*can never be converted`));
    assert.match((await cli("show", entry.id)).stdout, /"jobId": "poison"/);
    await assert.rejects(cli("show", "no-such-id"), /no dead letter with id no-such-id/);

    // Replayed: back in its queue as a first delivery, gone from the dead letters.
    const replayedTo = Promise.withResolvers<{ body: unknown; attempt: number }>();
    const consumer = await broker.consume(
      "video",
      async ({ body, attempt }) => {
        replayedTo.resolve({ body, attempt });
      },
      { parse: (b) => b, concurrency: 1 },
    );
    assert.match((await cli("replay", entry.id)).stdout, new RegExp(`replayed ${entry.id} to video`));
    assert.deepEqual(await replayedTo.promise, { body: { version: 1, jobId: "poison" }, attempt: 1 });
    await consumer.close();
    assert.match((await cli("list")).stdout, /No dead letters/);

    await deadLetter({ version: 1, jobId: "poison-2" });
    await assert.rejects(cli("purge"), (error: { code?: number; stderr?: string }) => {
      assert.equal(error.code, 2);
      assert.match(String(error.stderr), /--yes/);
      return true;
    });
    assert.match((await cli("purge", "--yes")).stdout, /purged 1 dead letter$/m);
    assert.match((await cli("list")).stdout, /No dead letters/);
  });

  it("replays --all and purges only the work queues chosen with --queue", async () => {
    await deadLetter({ version: 1, jobId: "video-1" });
    await deadLetter({ version: 1, jobId: "video-2" });
    await deadLetter({ version: 1, jobId: "mail-1" }, "mp3");
    const listed = async (...args: string[]) =>
      (JSON.parse((await cli("list", "--json", ...args)).stdout) as { letter: { body: { jobId: string } } }[])
        .map((e) => e.letter.body.jobId)
        .sort();
    assert.deepEqual(await listed(), ["mail-1", "video-1", "video-2"]);
    assert.deepEqual(await listed("--queue", "mp3"), ["mail-1"]);

    // Every dead letter of `video`, none of `mp3`.
    const replayed: string[] = [];
    const bothBack = Promise.withResolvers<void>();
    const consumer = await broker.consume<{ jobId: string }>(
      "video",
      async ({ body }) => {
        replayed.push(body.jobId);
        if (replayed.length === 2) bothBack.resolve();
      },
      { parse: (b) => b as { jobId: string }, concurrency: 2 },
    );
    const { stdout } = await cli("replay", "--all", "--queue", "video");
    assert.equal(stdout.match(/^replayed \S+ to video$/gm)?.length, 2, stdout);
    await bothBack.promise;
    await consumer.close();
    assert.deepEqual(replayed.sort(), ["video-1", "video-2"]);
    assert.deepEqual(await listed(), ["mail-1"]);

    assert.match((await cli("purge", "--yes", "--queue", "video")).stdout, /purged 0 dead letters$/m);
    assert.deepEqual(await listed(), ["mail-1"]);
    assert.match((await cli("purge", "--yes", "--queue", "mp3")).stdout, /purged 1 dead letter$/m);
    assert.match((await cli("list")).stdout, /No dead letters/);
  });

  it("says AMQP_URL is needed when it is not set", async () => {
    await assert.rejects(
      run(process.execPath, [main, "dead-letters", "list"], { env: { PATH: process.env.PATH ?? "" } }),
      (error: { code?: number; stderr?: string }) => {
        assert.equal(error.code, 2);
        assert.match(String(error.stderr), /AMQP_URL/);
        return true;
      },
    );
  });
});
