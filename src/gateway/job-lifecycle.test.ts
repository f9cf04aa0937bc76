import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, type TestContext, test } from "node:test";
import { pino } from "pino";
import { gatewayJobs } from "../../test/support/gateway-jobs.ts";
import { type TestDatabaseBackend, testDatabaseBackends } from "../../test/support/mariadb.ts";
import type { VideoMessage } from "../contracts/messages.ts";
import { createFolderBlobStore } from "../platform/blobs/folder-blob-store.ts";
import type { Broker } from "../platform/broker/broker.ts";
import { createMemoryBroker } from "../platform/broker/memory-broker.ts";
import { createJobLifecycle, type JobLifecycle } from "./job-lifecycle.ts";

const logger = pino({ level: "silent" });
const HOUR = 3_600_000;

/** A gateway replica's lifecycle on a shared database and broker (the sweep is driven by hand). */
async function replicas(backend: TestDatabaseBackend, t: TestContext, count: number) {
  const { jobs } = await gatewayJobs(t, backend);
  const dir = await mkdtemp(path.join(tmpdir(), "lifecycle-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const broker = createMemoryBroker({ logger });
  t.after(() => broker.close());
  const requeued: number[] = [];
  const lifecycles: JobLifecycle[] = [];
  for (let i = 0; i < count; i++) {
    lifecycles.push(
      createJobLifecycle({
        jobs,
        blobs: createFolderBlobStore(dir),
        broker,
        logger,
        metrics: { jobFinished: () => {}, jobsRequeued: (n) => requeued.push(n) },
        queues: { video: "video", jobEvents: "job-events" },
        retry: { maxAttempts: 3, delayMs: 10 },
        sweep: { everyMs: HOUR, queuedAfterMs: 10 * 60_000, convertingAfterMs: HOUR },
      }),
    );
  }
  return { jobs, broker, lifecycles, requeued };
}

/** Collects the `video` messages published from now on. */
async function videoMessages(broker: Broker): Promise<VideoMessage[]> {
  const seen: VideoMessage[] = [];
  await broker.consume<VideoMessage>(
    "video",
    async ({ body }) => {
      seen.push(body);
    },
    { parse: (b) => b as VideoMessage, concurrency: 10 },
  );
  return seen;
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 50));

for (const backend of testDatabaseBackends) {
  describe(`job lifecycle on ${backend.name}`, () => {
    test("the sweep re-publishes a job that sat queued too long (a crash between insert and publish), once across replicas", async (t) => {
      const { jobs, broker, lifecycles, requeued } = await replicas(backend, t, 2);
      const seen = await videoMessages(broker);
      // Rows as a crash before the publish leaves them: one stale, one just made.
      const stale = await jobs.create({
        id: randomUUID(),
        ownerId: "u1",
        ownerEmail: "u1@example.com",
        fileName: "a.mp4",
        format: "mov",
        size: 1,
        mp3Id: randomUUID(),
        options: { quality: "320k", start: 1, end: 2, mono: true },
      });
      const fresh = await jobs.create({
        id: randomUUID(),
        ownerId: "u1",
        ownerEmail: "u1@example.com",
        fileName: "b.mp4",
        format: "mov",
        size: 1,
        mp3Id: randomUUID(),
      });
      const later = new Date(Date.now() + 11 * 60_000);
      const counts = await Promise.all(lifecycles.map((l) => l.sweep(later)));
      assert.equal(
        counts.reduce((a, b) => a + b, 0),
        2,
        "each stale job re-queued by one replica only",
      );
      await settle();
      assert.deepEqual(seen.map((m) => m.jobId).sort(), [stale.id, fresh.id].sort());
      assert.equal(
        seen.find((m) => m.jobId === stale.id)?.mp3Id,
        stale.mp3_id,
        "the same mp3Id: no second MP3",
      );
      assert.deepEqual(
        seen.find((m) => m.jobId === stale.id)?.options,
        { quality: "320k", start: 1, end: 2, mono: true },
        "the re-queued message keeps the upload's options",
      );
      assert.equal(seen.find((m) => m.jobId === fresh.id)?.options, undefined, "none chosen, none sent");

      // Claimed: not again before another period has passed.
      assert.equal(await lifecycles[0]?.sweep(later), 0);
      assert.equal(await lifecycles[0]?.sweep(new Date(later.getTime() + 11 * 60_000)), 2);
      // Counted for vid2mp3_jobs_requeued_total: 2 by the replicas together (which replica claims
      // which job is a race they may split), then 2 again by the one that swept.
      assert.equal(
        requeued.reduce((a, b) => a + b, 0),
        4,
      );
      assert.equal(requeued.at(-1), 2);
    });

    test("a queued job behind a backlog is left to wait its turn; once nothing waits, a stale one is re-published", async (t) => {
      const { jobs, broker, lifecycles } = await replicas(backend, t, 1);
      const [lifecycle] = lifecycles;
      assert.ok(lifecycle);
      // Another job's message waits for a converter: the queue has a backlog.
      await broker.publish("video", { jobId: "ahead-in-the-queue" });
      const make = () =>
        jobs.create({
          id: randomUUID(),
          ownerId: "u1",
          ownerEmail: "u1@example.com",
          fileName: "d.mp4",
          format: "mov",
          size: 1,
          mp3Id: randomUUID(),
        });
      const waiting = await make();
      const abandoned = await make();
      await jobs.apply({ version: 1, jobId: abandoned.id, at: new Date().toISOString(), type: "converting" });

      // Both stale by their age; only the converting one is re-published while the backlog lasts.
      const later = new Date(Date.now() + 2 * HOUR);
      assert.equal(await lifecycle.sweep(later), 1);
      assert.equal(await broker.waiting("video"), 2);
      assert.equal(
        (await jobs.get(waiting.id, "u1"))?.updated_at,
        waiting.updated_at,
        "the queued job untouched",
      );

      // The backlog is worked off and the queued job's message was not among it: lost, so re-published.
      const seen = await videoMessages(broker);
      await settle();
      assert.equal(await broker.waiting("video"), 0);
      assert.equal(await lifecycle.sweep(later), 1);
      await settle();
      assert.deepEqual(
        seen.map((m) => m.jobId),
        ["ahead-in-the-queue", abandoned.id, waiting.id],
      );
    });

    test("a converting job is re-published only after the converting period, a finished one never", async (t) => {
      const { jobs, broker, lifecycles } = await replicas(backend, t, 1);
      const seen = await videoMessages(broker);
      const make = () =>
        jobs.create({
          id: randomUUID(),
          ownerId: "u1",
          ownerEmail: "u1@example.com",
          fileName: "c.mp4",
          format: "mov",
          size: 1,
          mp3Id: randomUUID(),
        });
      const running = await make();
      await jobs.apply({ version: 1, jobId: running.id, at: new Date().toISOString(), type: "converting" });
      const finished = await make();
      await jobs.apply({
        version: 1,
        jobId: finished.id,
        at: new Date().toISOString(),
        type: "failed",
        error: "x",
      });
      const [lifecycle] = lifecycles;
      assert.ok(lifecycle);
      assert.equal(await lifecycle.sweep(new Date(Date.now() + 11 * 60_000)), 0);
      assert.equal(await lifecycle.sweep(new Date(Date.now() + HOUR + 60_000)), 1);
      await settle();
      assert.deepEqual(
        seen.map((m) => m.jobId),
        [running.id],
      );
    });
  });
}
