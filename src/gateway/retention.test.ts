import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { type TestContext, test } from "node:test";
import { gatewayJobs } from "../../test/support/gateway-jobs.ts";
import { mp3Key, videoKey } from "../contracts/messages.ts";
import { createFolderBlobStore } from "../platform/blobs/folder-blob-store.ts";
import { createLogger } from "../platform/logger.ts";
import { createRetention } from "./retention.ts";

async function setUp(t: TestContext, retentionHours: number) {
  const { jobs } = await gatewayJobs(t);
  const dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-retention-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const blobs = createFolderBlobStore(path.join(dir, "blobs"));
  const retention = createRetention({ jobs, blobs, logger: createLogger("silent", "test"), retentionHours });

  /** A job with both files stored, ended as `outcome` (or left queued). */
  async function job(outcome: "done" | "failed" | "queued") {
    const row = await jobs.create({
      id: randomUUID(),
      ownerId: "user-1",
      ownerEmail: "ada@example.com",
      fileName: "a.mp4",
      format: "mov",
      size: 3,
      mp3Id: randomUUID(),
    });
    await blobs.put(videoKey(row.id), Readable.from([Buffer.from("vid")]));
    await blobs.put(mp3Key(row.mp3_id), Readable.from([Buffer.from("mp3")]));
    const at = new Date().toISOString();
    if (outcome === "done") {
      await jobs.apply({
        version: 1,
        jobId: row.id,
        at,
        type: "done",
        mp3Id: row.mp3_id,
        mp3Size: 3,
        durationSeconds: 1,
      });
    }
    if (outcome === "failed")
      await jobs.apply({ version: 1, jobId: row.id, at, type: "failed", error: "No audio." });
    return row;
  }
  return { jobs, blobs, retention, job };
}

test("removes finished jobs older than the retention with their files, and nothing else", async (t) => {
  const { jobs, blobs, retention, job } = await setUp(t, 2);
  const [done, failed, queued] = [await job("done"), await job("failed"), await job("queued")];

  assert.equal(await retention.sweep(new Date(Date.now() + 60 * 60_000)), 0, "one hour later: still kept");
  const removed = await retention.sweep(new Date(Date.now() + 3 * 60 * 60_000));
  assert.equal(removed, 2, "three hours later: the done and the failed job go");

  assert.equal(await jobs.exists(done.id), false);
  assert.equal(await jobs.exists(failed.id), false);
  assert.equal(await blobs.stat(mp3Key(done.mp3_id)), undefined);
  assert.equal(await blobs.stat(videoKey(failed.id)), undefined);
  assert.equal(await jobs.exists(queued.id), true, "an unfinished job is never removed");
  assert.ok(await blobs.stat(videoKey(queued.id)), "nor its upload");
});

test("works through more expired jobs than one batch", async (t) => {
  const { retention, job } = await setUp(t, 1);
  for (let i = 0; i < 105; i++) await job("done");
  assert.equal(await retention.sweep(new Date(Date.now() + 2 * 3_600_000)), 105);
});
