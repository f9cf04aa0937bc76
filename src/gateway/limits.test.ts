import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { type TestContext, test } from "node:test";
import { gatewayJobs } from "../../test/support/gateway-jobs.ts";
import { HttpError } from "../platform/http.ts";
import type { Caller } from "./authentication.ts";
import { createUploadLimits } from "./limits.ts";

/**
 * Admission of uploads on a real jobs table (SQLite): uploads still streaming count like stored
 * jobs, so a burst of parallel uploads cannot slip past MAX_ACTIVE_JOBS_PER_USER or USER_QUOTA_BYTES.
 */

const MiB = 1024 * 1024;

async function setUp(t: TestContext, limits: { maxActiveJobsPerUser: number; userQuotaBytes: number }) {
  const { jobs } = await gatewayJobs(t);
  return { jobs, uploadLimits: createUploadLimits({ jobs, maxUploadBytes: 100 * MiB, ...limits }) };
}

const caller = (): Caller => ({ id: randomUUID(), email: `${randomUUID()}@example.com`, admin: false });
const refusedWith = (code: string) => (error: unknown) =>
  error instanceof HttpError &&
  error.code === code &&
  error.statusCode === (code === "quota_exceeded" ? 413 : 429);

test("uploads in flight count as active jobs: a burst beyond the limit is refused until one ends", async (t) => {
  const { jobs, uploadLimits } = await setUp(t, { maxActiveJobsPerUser: 2, userQuotaBytes: 0 });
  const ada = caller();
  await jobs.create({
    id: randomUUID(),
    ownerId: ada.id,
    ownerEmail: ada.email,
    fileName: "a.mp4",
    format: "mov",
    size: 10,
    mp3Id: randomUUID(),
  });
  const streaming = await uploadLimits.admit(ada, MiB); // one stored, one streaming: at the limit
  await assert.rejects(uploadLimits.admit(ada, MiB), refusedWith("too_many_active_jobs"));
  const other = await uploadLimits.admit(caller(), MiB);
  other.release();
  streaming.release();
  streaming.release(); // twice is once
  const again = await uploadLimits.admit(ada, MiB);
  await assert.rejects(uploadLimits.admit(ada, MiB), refusedWith("too_many_active_jobs"));
  again.release();
});

test("the quota counts bytes reserved by uploads in flight; the file may have at most what is left", async (t) => {
  const { uploadLimits } = await setUp(t, { maxActiveJobsPerUser: 0, userQuotaBytes: 10 * MiB });
  const ada = caller();
  const first = await uploadLimits.admit(ada, 6 * MiB);
  assert.equal(first.maxFileBytes, 10 * MiB);
  const second = await uploadLimits.admit(ada, MiB);
  assert.equal(second.maxFileBytes, 4 * MiB, "what the first leaves");
  assert.equal(second.overLimit().code, "quota_exceeded", "cut at the quota, not the upload limit");
  await assert.rejects(uploadLimits.admit(ada, 4 * MiB), (error: unknown) => {
    assert.ok(refusedWith("quota_exceeded")(error));
    assert.match((error as HttpError).message, /quota is 10 MiB and 7 MiB of it is in use/);
    return true;
  });
  first.release();
  second.release();
  const afterwards = await uploadLimits.admit(ada, 9 * MiB);
  assert.equal(afterwards.maxFileBytes, 10 * MiB);
  afterwards.release();
});
