import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, type TestContext, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { gatewayJobs } from "../../test/support/gateway-jobs.ts";
import { type TestDatabaseBackend, testDatabaseBackends } from "../../test/support/mariadb.ts";
import type { JobEvent } from "../contracts/messages.ts";
import { appliedOptions } from "../contracts/options.ts";
import { type JobRow, type NewJob, toJob } from "./jobs.ts";

/** A jobs repository on a fresh database of the backend, migrated as the gateway does. */
async function repositoryOn(backend: TestDatabaseBackend, t: TestContext) {
  return (await gatewayJobs(t, backend)).jobs;
}

const ALICE = { ownerId: "user-alice", ownerEmail: "alice@example.com" };
const BOB = { ownerId: "user-bob", ownerEmail: "bob@example.com" };

function newJob(owner: { ownerId: string; ownerEmail: string }, fileName = "clip.mp4"): NewJob {
  return { id: randomUUID(), ...owner, fileName, format: "mov", size: 1234, mp3Id: randomUUID() };
}

const at = () => new Date().toISOString();
const converting = (jobId: string): JobEvent => ({ version: 1, jobId, at: at(), type: "converting" });
const progress = (jobId: string, value: number): JobEvent => ({
  version: 1,
  jobId,
  at: at(),
  type: "progress",
  progress: value,
  durationSeconds: 12.5,
});
const done = (row: JobRow): JobEvent => ({
  version: 1,
  jobId: row.id,
  at: at(),
  type: "done",
  mp3Id: row.mp3_id,
  mp3Size: 4321,
  durationSeconds: 12.5,
});
const failed = (jobId: string, error = "The video has no audio track."): JobEvent => ({
  version: 1,
  jobId,
  at: at(),
  type: "failed",
  error,
});

for (const backend of testDatabaseBackends) {
  describe(`jobs repository (${backend.name})`, () => {
    const repository = (t: TestContext) => repositoryOn(backend, t);

    test("create stores a queued job that only its owner can get", async (t) => {
      const jobs = await repository(t);
      const job = newJob(ALICE, "holiday.mov");
      const created = await jobs.create(job);
      assert.equal(created.status, "queued");
      assert.equal(created.progress, 0);
      assert.equal(created.created_at, created.updated_at);

      const row = await jobs.get(job.id, ALICE.ownerId);
      assert.ok(row);
      assert.deepEqual(toJob(row, 0), {
        id: job.id,
        status: "queued",
        fileName: "holiday.mov",
        size: 1234,
        createdAt: created.created_at,
        updatedAt: created.updated_at,
        progress: 0,
        durationSeconds: null,
        mp3Id: null,
        error: null,
        expiresAt: null,
        options: appliedOptions(),
        mp3FileName: "holiday.mp3",
        mp3Size: null,
      });
      assert.equal(row.owner_email, ALICE.ownerEmail);
      assert.equal(row.format, "mov");
      assert.equal(await jobs.get(job.id, BOB.ownerId), undefined);
      assert.equal(await jobs.get(randomUUID(), ALICE.ownerId), undefined);
    });

    test("usage: active jobs are the queued and converting ones; bytes are their uploads plus done jobs' MP3s, per owner", async (t) => {
      const jobs = await repository(t);
      assert.deepEqual(await jobs.usage(ALICE.ownerId), { activeJobs: 0, bytes: 0 });
      await jobs.create(newJob(ALICE)); // queued: its upload, 1234 bytes
      const convertingJob = await jobs.create(newJob(ALICE));
      await jobs.apply(converting(convertingJob.id)); // converting: its upload, 1234 bytes
      const doneJob = await jobs.create(newJob(ALICE));
      await jobs.apply(done(doneJob)); // done: its MP3, 4321 bytes
      const failedJob = await jobs.create(newJob(ALICE));
      await jobs.apply(failed(failedJob.id)); // failed: nothing kept
      await jobs.create(newJob(BOB));
      assert.deepEqual(await jobs.usage(ALICE.ownerId), { activeJobs: 2, bytes: 1234 + 1234 + 4321 });
      assert.deepEqual(await jobs.usage(BOB.ownerId), { activeJobs: 1, bytes: 1234 });
    });

    test("a job keeps its options; the job shows them with the defaults, and the MP3's size once done", async (t) => {
      const jobs = await repository(t);
      const options = {
        quality: "320k",
        start: 60,
        end: 150.5,
        mono: true,
        track: "eng",
        title: "Ünïcode “title”",
      } as const;
      const created = await jobs.create({ ...newJob(ALICE, "talk.mkv"), options });
      const row = await jobs.get(created.id, ALICE.ownerId);
      assert.ok(row);
      assert.deepEqual(toJob(row, 0).options, { ...appliedOptions(), ...options });
      assert.equal(toJob(row, 0).options.cover, "frame", "defaults fill what was not chosen");
      assert.equal(toJob(row, 0).mp3FileName, "talk.mp3");
      const finished = await jobs.apply(done(row));
      assert.ok(finished);
      assert.equal(toJob(finished, 0).mp3Size, 4321);
    });

    test("two jobs cannot share an id or an mp3 id", async (t) => {
      const jobs = await repository(t);
      const first = newJob(ALICE);
      await jobs.create(first);
      await assert.rejects(jobs.create({ ...newJob(ALICE), id: first.id }));
      await assert.rejects(jobs.create({ ...newJob(BOB), mp3Id: first.mp3Id }));
    });

    test("list gives the owner's jobs newest first, with the total, page by page", async (t) => {
      const jobs = await repository(t);
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        const job = newJob(ALICE, `clip-${i}.mp4`);
        await jobs.create(job);
        ids.push(job.id);
        await jobs.create(newJob(BOB));
        await sleep(3); // distinct created_at
      }
      const newestFirst = [...ids].reverse();

      const all = await jobs.list(ALICE.ownerId, { limit: 20, offset: 0 });
      assert.equal(all.total, 5);
      assert.deepEqual(
        all.rows.map((r) => r.id),
        newestFirst,
      );
      assert.ok(all.rows.every((r) => r.owner_id === ALICE.ownerId));

      const pages = [];
      for (let offset = 0; offset < 5; offset += 2) {
        const page = await jobs.list(ALICE.ownerId, { limit: 2, offset });
        assert.equal(page.total, 5, "the total counts all jobs, not the page");
        pages.push(...page.rows.map((r) => r.id));
      }
      assert.deepEqual(pages, newestFirst);

      const beyond = await jobs.list(ALICE.ownerId, { limit: 2, offset: 10 });
      assert.deepEqual(beyond, { rows: [], total: 5 });
      assert.deepEqual(await jobs.list("nobody", { limit: 20, offset: 0 }), { rows: [], total: 0 });
    });

    test("apply moves a job queued → converting → done", async (t) => {
      const jobs = await repository(t);
      const job = await jobs.create(newJob(ALICE));

      const started = await jobs.apply(converting(job.id));
      assert.equal(started?.status, "converting");

      const halfway = await jobs.apply(progress(job.id, 0.5));
      assert.equal(halfway?.status, "converting");
      assert.equal(halfway?.progress, 0.5);
      assert.equal(halfway?.duration_seconds, 12.5);

      const finished = await jobs.apply(done(job));
      assert.ok(finished);
      assert.equal(finished.status, "done");
      assert.equal(finished.progress, 1);
      assert.equal(finished.mp3_size, 4321);
      assert.equal(toJob(finished, 0).mp3Id, job.mp3_id, "the fid is shown once done");
      assert.ok(finished.updated_at >= job.updated_at);
      assert.deepEqual(await jobs.get(job.id, ALICE.ownerId), finished);
    });

    test("a progress event on a queued job also marks it converting (converting may arrive late)", async (t) => {
      const jobs = await repository(t);
      const job = await jobs.create(newJob(ALICE));
      const row = await jobs.apply(progress(job.id, 0.25));
      assert.equal(row?.status, "converting");
      assert.equal(row?.progress, 0.25);
    });

    test("a finished job never moves again: late progress, a second done, failed after done", async (t) => {
      const jobs = await repository(t);
      const job = await jobs.create(newJob(ALICE));
      await jobs.apply(converting(job.id));
      const finished = await jobs.apply(done(job));
      assert.equal(finished?.status, "done");

      for (const late of [progress(job.id, 0.3), converting(job.id), done(job), failed(job.id)]) {
        assert.equal(await jobs.apply(late), undefined, `${late.type} after done changes nothing`);
        assert.deepEqual(await jobs.get(job.id, ALICE.ownerId), finished);
      }
    });

    test("failed records the reason and is final too", async (t) => {
      const jobs = await repository(t);
      const job = await jobs.create(newJob(ALICE));
      await jobs.apply(converting(job.id));
      const row = await jobs.apply(failed(job.id, "The video has no audio track."));
      assert.ok(row);
      assert.equal(row.status, "failed");
      assert.deepEqual(
        { error: toJob(row, 0).error, mp3Id: toJob(row, 0).mp3Id },
        { error: "The video has no audio track.", mp3Id: null },
      );
      assert.equal(await jobs.apply(done(job)), undefined, "done after failed changes nothing");
      assert.equal(await jobs.apply(progress(job.id, 0.9)), undefined);
      assert.deepEqual(await jobs.get(job.id, ALICE.ownerId), row);
    });

    test("an event for an unknown job changes nothing", async (t) => {
      const jobs = await repository(t);
      const other = await jobs.create(newJob(ALICE));
      assert.equal(await jobs.apply(converting(randomUUID())), undefined);
      assert.equal((await jobs.get(other.id, ALICE.ownerId))?.status, "queued");
    });

    test("getDone finds the MP3 only for a done job of that owner", async (t) => {
      const jobs = await repository(t);
      const job = await jobs.create(newJob(ALICE));
      assert.equal(await jobs.getDone(job.mp3_id, ALICE.ownerId), undefined, "queued");
      await jobs.apply(converting(job.id));
      assert.equal(await jobs.getDone(job.mp3_id, ALICE.ownerId), undefined, "converting");
      await jobs.apply(done(job));
      assert.equal((await jobs.getDone(job.mp3_id, ALICE.ownerId))?.id, job.id);
      assert.equal(await jobs.getDone(job.mp3_id, BOB.ownerId), undefined, "another owner");
      assert.equal(await jobs.getDone(job.id, ALICE.ownerId), undefined, "the job id is not the fid");

      const failedJob = await jobs.create(newJob(ALICE));
      await jobs.apply(failed(failedJob.id));
      assert.equal(await jobs.getDone(failedJob.mp3_id, ALICE.ownerId), undefined, "failed");
    });

    test("unfinished lists queued and converting jobs of every owner, oldest first", async (t) => {
      const jobs = await repository(t);
      const queued = await jobs.create(newJob(ALICE));
      await sleep(3);
      const convertingJob = await jobs.create(newJob(BOB));
      await jobs.apply(converting(convertingJob.id));
      await sleep(3);
      const doneJob = await jobs.create(newJob(ALICE));
      await jobs.apply(done(doneJob));
      const failedJob = await jobs.create(newJob(BOB));
      await jobs.apply(failed(failedJob.id));
      await sleep(3);
      const newest = await jobs.create(newJob(BOB));

      assert.deepEqual(
        (await jobs.unfinished()).map((r) => r.id),
        [queued.id, convertingJob.id, newest.id],
      );
    });

    test("delete is scoped by owner; exists sees any owner's job", async (t) => {
      const jobs = await repository(t);
      const job = await jobs.create(newJob(ALICE));
      assert.equal(await jobs.exists(job.id), true);
      assert.equal(await jobs.exists(randomUUID()), false);

      assert.equal(await jobs.delete(job.id, BOB.ownerId), false, "not Bob's to delete");
      assert.equal(await jobs.exists(job.id), true);
      assert.equal(await jobs.delete(job.id, ALICE.ownerId), true);
      assert.equal(await jobs.exists(job.id), false);
      assert.equal(await jobs.get(job.id, ALICE.ownerId), undefined);
      assert.equal(await jobs.delete(job.id, ALICE.ownerId), false, "a second delete finds nothing");
      assert.equal(
        await jobs.apply(converting(job.id)),
        undefined,
        "events for a deleted job change nothing",
      );
    });

    test("ping answers on a migrated database", async (t) => {
      const jobs = await repository(t);
      await jobs.ping();
    });
  });
}
