import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { gatewayClient } from "./support/client.ts";
import { makeLavfiAudio } from "./support/media.ts";
import { type RunningServer, startServer } from "./support/server.ts";

/**
 * The per-user limits and the files that are their own fault, against the real server process
 * and the real ffmpeg: each refusal says why, and nothing else suffers (other users, the next job).
 */

const ADMIN = { email: "admin@example.com", password: "admin-password-1" };
const MAX_AUDIO_SECONDS = 60;
const QUOTA = 8_000_000;

interface Job {
  id: string;
  status: string;
  error: string | null;
  expiresAt: string | null;
  updatedAt: string;
}

/** Silent FLAC of `seconds`: a few hundred bytes per second, however long. */
const silentFlac = (file: string, seconds: number) =>
  makeLavfiAudio(file, "anullsrc=r=8000:cl=mono", seconds, "flac");

/** A WAV whose header claims `channels` channels or `rate` Hz, with one second of real samples. */
async function absurdWav(
  dir: string,
  name: string,
  patch: { channels?: number; rate?: number },
): Promise<string> {
  const ok = await makeLavfiAudio(
    path.join(dir, `${name}.ok.wav`),
    "anullsrc=r=8000:cl=mono",
    1,
    "pcm_s16le",
  );
  const bytes = await readFile(ok);
  if (patch.channels !== undefined) bytes.writeUInt16LE(patch.channels, 22);
  if (patch.rate !== undefined) bytes.writeUInt32LE(patch.rate, 24);
  const file = path.join(dir, name);
  await writeFile(file, bytes);
  return file;
}

describe("per-user limits and the file's own faults (real server, real ffmpeg)", () => {
  let dir: string;
  let server: RunningServer;
  let client: ReturnType<typeof gatewayClient>;
  let adminToken: string;

  /**
   * The uploaded videos the folder store holds (each job's `videos/<id>`). The converter's own
   * writes (its MP3s, through temp files) never add one, so a refused upload must leave this set as
   * it found it, however busy the converter still is with the earlier tests' jobs.
   */
  const storedVideos = async () => {
    const files = await readdir(path.join(dir, "data", "blobs", "videos")).catch(() => []);
    return new Set(files.map(String));
  };

  const newUser = async () => {
    const email = `${randomUUID()}@example.com`;
    const created = await client.createUser(adminToken, email, "user-password-1");
    assert.equal(created.status, 201);
    return client.token(email, "user-password-1");
  };
  const error = async (response: Response) =>
    ((await response.json()) as { error: { code: string; message: string } }).error;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-limits-"));
    // The real ffmpeg reading its input at playback speed: a conversion lasts as long as its audio,
    // so jobs stay queued or converting while the limit on active jobs is tested (at full speed a
    // minute of silence converts in a fraction of a second, before the next upload arrives).
    const realtimeFfmpeg = path.join(dir, "realtime-ffmpeg");
    await writeFile(
      realtimeFfmpeg,
      '#!/bin/sh\ncase "$1" in -version) ;; *) set -- -re "$@" ;; esac\nexec ffmpeg "$@"\n',
    );
    await chmod(realtimeFfmpeg, 0o755);
    server = await startServer(
      {
        DATA_DIR: path.join(dir, "data"),
        FFMPEG_PATH: realtimeFfmpeg,
        ADMIN_EMAIL: ADMIN.email,
        ADMIN_PASSWORD: ADMIN.password,
        MAX_AUDIO_SECONDS: String(MAX_AUDIO_SECONDS),
        MAX_ACTIVE_JOBS_PER_USER: "2",
        USER_QUOTA_BYTES: String(QUOTA),
        CONVERTER_CONCURRENCY: "1",
        RETRY_DELAY_MS: "200",
      },
      { timeoutMs: 120_000 },
    );
    client = gatewayClient(server.url);
    adminToken = await client.token(ADMIN.email, ADMIN.password);
  });
  after(async () => {
    if (server && server.process.exitCode !== null) console.log(server.output().slice(-5000));
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test("audio longer than MAX_AUDIO_SECONDS fails at once with a sentence naming the limit; shorter audio converts", async () => {
    const token = await newUser();
    const long = await client.upload(token, await silentFlac(path.join(dir, "ten-hours.flac"), 10 * 3600));
    assert.equal(long.status, 202);
    const short = await client.upload(token, await silentFlac(path.join(dir, "short.flac"), 2));
    assert.equal(short.status, 202);
    const failed = (await client.waitForJob(
      token,
      ((await long.json()) as { jobId: string }).jobId,
      120_000,
    )) as unknown as Job;
    assert.equal(failed.status, "failed");
    assert.match(String(failed.error), /longer than the limit of 1 min/);
    assert.match(String(failed.error), /MAX_AUDIO_SECONDS=60/);
    const done = (await client.waitForJob(
      token,
      ((await short.json()) as { jobId: string }).jobId,
      120_000,
    )) as unknown as Job;
    assert.equal(done.status, "done");
    // Retention is on by default: a finished job says when it goes.
    assert.ok(done.expiresAt);
    assert.equal(Date.parse(done.expiresAt) - Date.parse(done.updatedAt), 168 * 3_600_000);
    assert.match(server.output(), /"reason":"too-long"/);
  });

  test("WAVs with 1024 channels or a 2³¹ Hz rate fail at once as the file's fault, never retried; the next job converts", async () => {
    const token = await newUser();
    for (const [name, patch] of [
      ["channels.wav", { channels: 1024 }],
      ["rate.wav", { rate: 2 ** 31 }],
    ] as const) {
      const response = await client.upload(token, await absurdWav(dir, name, patch));
      assert.equal(response.status, 202, name);
      const { jobId } = (await response.json()) as { jobId: string };
      const job = (await client.waitForJob(token, jobId, 120_000)) as unknown as Job;
      assert.equal(job.status, "failed", name);
      assert.doesNotMatch(String(job.error), /internal error/, name);
      assert.match(String(job.error), /cannot be converted|could not be decoded/, name);
      const attempts = server
        .output()
        .split("\n")
        .filter((line) => line.includes(jobId) && line.includes('"msg":"conversion started"'));
      assert.equal(attempts.length, 1, `${name}: one attempt only`);
      assert.doesNotMatch(
        server
          .output()
          .split("\n")
          .filter((line) => line.includes(jobId))
          .join("\n"),
        /"level":50/,
        "not logged as an error",
      );
    }
    const next = await client.upload(token, await silentFlac(path.join(dir, "next.flac"), 1));
    const { jobId } = (await next.json()) as { jobId: string };
    assert.equal(((await client.waitForJob(token, jobId, 120_000)) as unknown as Job).status, "done");
  });

  test("a third active job is 429 too_many_active_jobs; another user is served; deleting a queued job frees a place", async () => {
    const token = await newUser();
    const other = await newUser();
    // 50 s at playback speed: the one converter is busy with the first while the next uploads arrive.
    const busy = await silentFlac(path.join(dir, "busy.flac"), 50);
    const first = await client.upload(token, busy);
    const second = await client.upload(token, busy);
    assert.equal(first.status, 202);
    assert.equal(second.status, 202);
    const active = await Promise.all(
      [first, second].map(async (r) => {
        const { jobId } = (await r.json()) as { jobId: string };
        return { jobId, status: ((await (await client.job(token, jobId)).json()) as Job).status };
      }),
    );
    for (const { status } of active) assert.match(status, /^(queued|converting)$/);

    const third = await client.upload(token, busy);
    assert.equal(third.status, 429);
    const refusal = await error(third);
    assert.equal(refusal.code, "too_many_active_jobs");
    assert.match(refusal.message, /You already have 2 uploads waiting or converting \(the limit is 2\)/);
    const listed = (await (await client.jobs(token)).json()) as { jobs: Job[] };
    assert.equal(listed.jobs.length, 2, "the refused upload made no job");

    const othersUpload = await client.upload(other, busy);
    assert.equal(othersUpload.status, 202, "another user is not affected");
    const queued = active.find((job) => job.status === "queued") ?? active[1];
    const deleted = await fetch(new URL(`/jobs/${queued?.jobId}`, server.url), {
      method: "DELETE",
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(deleted.status, 204);
    assert.equal((await client.upload(token, busy)).status, 202, "a place was freed");
    const list = (await (await client.jobs(token)).json()) as { jobs: Job[] };
    assert.equal(list.jobs.length, 2);
  });

  test("an upload larger than what is left of USER_QUOTA_BYTES is quota_exceeded, saying what is used; nothing is stored", async () => {
    const token = await newUser();
    const big = path.join(dir, "big.wav");
    await makeLavfiAudio(big, "anoisesrc=r=44100", 120, "pcm_s16le");
    const videosBefore = await storedVideos();
    const refused = await client.upload(token, big);
    assert.equal(refused.status, 413);
    const refusal = await error(refused);
    assert.equal(refusal.code, "quota_exceeded");
    assert.match(refusal.message, /quota is 7\.6 MiB and 0 bytes of it is in use/);
    assert.match(refusal.message, /delete finished jobs/);
    const list = (await (await client.jobs(token)).json()) as { total: number };
    assert.equal(list.total, 0);
    const added = [...(await storedVideos())].filter((video) => !videosBefore.has(video));
    assert.deepEqual(added, [], "no upload kept");
  });

  test("an empty file and a body cut off mid-file are answered at once, and keep nothing", async () => {
    const token = await newUser();
    const empty = path.join(dir, "empty.mp4");
    await writeFile(empty, "");
    const started = Date.now();
    const refused = await client.upload(token, empty);
    assert.ok(refused.status === 415 || refused.status === 400, String(refused.status));
    assert.ok(Date.now() - started < 5000);

    const boundary = "----cut";
    const head = `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="cut.wav"\r\nContent-Type: audio/wav\r\n\r\n`;
    const wav = await readFile(await absurdWav(dir, "cut-source.wav", {}));
    const body = Buffer.concat([Buffer.from(head), wav.subarray(0, 2000)]); // no closing boundary
    const cut = await fetch(new URL("/upload", server.url), {
      method: "POST",
      headers: {
        authorization: `Bearer ${token}`,
        "content-type": `multipart/form-data; boundary=${boundary}`,
      },
      body,
    });
    assert.equal(cut.status, 400);
    assert.ok(Date.now() - started < 10_000, "answered at once");
    const list = (await (await client.jobs(token)).json()) as { total: number };
    assert.equal(list.total, 0);
  });
});
