import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { gatewayClient } from "./support/client.ts";
import { audioDuration, makeVideo } from "./support/media.ts";
import { type RunningServer, startServer } from "./support/server.ts";

const run = promisify(execFile);
const ADMIN = { email: "admin@example.com", password: "admin-password-1" };

describe("the whole system in one process (embedded default)", () => {
  let dir: string;
  let server: RunningServer;
  let client: ReturnType<typeof gatewayClient>;
  let adminToken: string;
  const media = (name: string) => path.join(dir, name);
  /** A mail from the outbox; the notification is sent after the job ends, so it may take a moment. */
  async function outboxMail(name: string): Promise<string> {
    for (let i = 0; ; i++) {
      try {
        return await readFile(path.join(dir, "data", "outbox", name), "utf8");
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "ENOENT" || i >= 100) throw error;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-e2e-"));
    await Promise.all([
      makeVideo(media("holiday.mp4"), { seconds: 3 }),
      makeVideo(media("clip.webm"), { seconds: 2 }),
      makeVideo(media("silent.mp4"), { seconds: 1, audio: false }),
      writeFile(media("notes.mp4"), "these are my notes, not a video\n".repeat(200)),
    ]);
    server = await startServer({
      DATA_DIR: path.join(dir, "data"),
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
    });
    client = gatewayClient(server.url);
    adminToken = await client.token(ADMIN.email, ADMIN.password);
  });

  after(async () => {
    const code = await server?.stop();
    assert.equal(code, 0, `graceful shutdown exits 0\n${server?.output()}`);
    await rm(dir, { recursive: true, force: true });
  });

  it("converts a video with the original's curl commands, mails the owner, and the MP3 has the video's length", async () => {
    const curl = async (...args: string[]) =>
      (await run("curl", ["-sS", "--fail-with-body", ...args])).stdout;
    const token = await curl("-X", "POST", `${server.url}/login`, "-u", `${ADMIN.email}:${ADMIN.password}`);
    assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);

    const accepted = JSON.parse(
      await curl(
        "-X",
        "POST",
        "-F",
        `file=@${media("holiday.mp4")}`,
        "-H",
        `Authorization: Bearer ${token}`,
        `${server.url}/upload`,
      ),
    );
    assert.equal(accepted.status, "queued");
    const job = await client.waitForJob(token, accepted.jobId);
    assert.equal(job.status, "done", JSON.stringify(job));
    assert.equal(job.progress, 1);
    assert.equal(job.fileName, "holiday.mp4");
    assert.equal(typeof job.mp3Id, "string");

    const mp3 = media("holiday.mp3");
    await curl(
      "--output",
      mp3,
      "-X",
      "GET",
      "-H",
      `Authorization: Bearer ${token}`,
      `${server.url}/download?fid=${job.mp3Id}`,
    );
    const [source, converted] = await Promise.all([audioDuration(media("holiday.mp4")), audioDuration(mp3)]);
    assert.ok(Math.abs(source - converted) <= 0.1, `MP3 lasts ${converted} s, the video's audio ${source} s`);

    const mail = await outboxMail(`${accepted.jobId}-ready.eml`);
    assert.match(mail, new RegExp(`To: ${ADMIN.email}`));
    assert.ok(mail.includes(String(job.mp3Id)), "the mail names the fid");
  });

  it("converts other containers (WebM/Opus) too", async () => {
    const upload = await client.upload(adminToken, media("clip.webm"));
    assert.equal(upload.status, 202);
    const { jobId } = (await upload.json()) as { jobId: string };
    const job = await client.waitForJob(adminToken, jobId);
    assert.equal(job.status, "done", JSON.stringify(job));
  });

  it("answers 401 to a wrong password and to missing credentials", async () => {
    assert.equal((await client.login(ADMIN.email, "wrong-password")).status, 401);
    assert.equal((await client.login("nobody@example.com", "whatever-1")).status, 401);
    const anonymous = await fetch(`${server.url}/login`, { method: "POST" });
    assert.equal(anonymous.status, 401);
    const noToken = await fetch(`${server.url}/jobs`);
    assert.equal(noToken.status, 401);
    assert.deepEqual(Object.keys(((await noToken.json()) as { error: object }).error).sort(), [
      "code",
      "message",
    ]);
    const badToken = await client.jobs("not.a.token");
    assert.equal(badToken.status, 403);
  });

  it("the README's login line leaves $TOKEN empty for a wrong password and holds the token for the right one", async () => {
    const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
    const line = readme.split("\n").find((each) => each.startsWith("TOKEN=$(curl"));
    assert.ok(line, "the README logs in with TOKEN=$(curl …)");
    const tokenFor = async (password: string) => {
      const script = line
        .replace("http://localhost:8080", server.url)
        .replace("you@example.com:your-password", `${ADMIN.email}:${password}`);
      // The line as written, then what $TOKEN holds; the login's exit status is not the script's.
      return (await run("bash", ["-c", `${script}\nprintf %s "$TOKEN"`])).stdout;
    };
    assert.equal(await tokenFor("wrong-password"), "");
    const token = await tokenFor(ADMIN.password);
    assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/);
    assert.equal((await client.jobs(token)).status, 200);
  });

  it("refuses a text file named .mp4 with 415 and keeps no job", async () => {
    const before = (await (await client.jobs(adminToken)).json()) as { total: number };
    const response = await client.upload(adminToken, media("notes.mp4"));
    assert.equal(response.status, 415);
    const body = (await response.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, "unsupported_media_type");
    const afterUpload = (await (await client.jobs(adminToken)).json()) as { total: number };
    assert.equal(afterUpload.total, before.total);
  });

  it("answers 400 to an upload with no file or with two files", async () => {
    const empty = new FormData();
    empty.append("note", "no file here");
    const none = await fetch(`${server.url}/upload`, {
      method: "POST",
      headers: { authorization: `Bearer ${adminToken}` },
      body: empty,
    });
    assert.equal(none.status, 400);

    const two = new FormData();
    const bytes = await readFile(media("holiday.mp4"));
    two.append("a", new Blob([bytes]), "a.mp4");
    two.append("b", new Blob([bytes]), "b.mp4");
    const several = await fetch(`${server.url}/upload`, {
      method: "POST",
      headers: { authorization: `Bearer ${adminToken}` },
      body: two,
    });
    assert.equal(several.status, 400);
  });

  it("fails a video without audio with a reason the user can read", async () => {
    const response = await client.upload(adminToken, media("silent.mp4"));
    assert.equal(response.status, 202);
    const { jobId } = (await response.json()) as { jobId: string };
    const job = await client.waitForJob(adminToken, jobId);
    assert.equal(job.status, "failed");
    assert.match(String(job.error), /no audio/i);
    assert.equal(job.mp3Id, null);
    const mail = await outboxMail(`${jobId}-failed.eml`);
    assert.match(mail, /no audio/i);
  });

  it("keeps users apart: another user can neither see the job nor download its MP3", async () => {
    const upload = await client.upload(adminToken, media("holiday.mp4"));
    const { jobId } = (await upload.json()) as { jobId: string };
    const job = await client.waitForJob(adminToken, jobId);
    assert.equal(job.status, "done");

    const created = await client.createUser(adminToken, "bob@example.com", "bob-password-1");
    assert.equal(created.status, 201);
    const bob = await client.token("bob@example.com", "bob-password-1");
    assert.equal((await client.job(bob, jobId)).status, 404);
    assert.equal((await client.download(bob, String(job.mp3Id))).status, 404);
    assert.equal((await client.download(bob, "00000000-0000-4000-8000-000000000000")).status, 404);
    const bobsJobs = (await (await client.jobs(bob)).json()) as { jobs: unknown[]; total: number };
    assert.deepEqual(bobsJobs, { jobs: [], total: 0, limit: 20, offset: 0 });
    assert.equal(
      (
        await fetch(`${server.url}/jobs/${jobId}`, {
          method: "DELETE",
          headers: { authorization: `Bearer ${bob}` },
        })
      ).status,
      404,
    );
    assert.equal((await client.createUser(bob, "eve@example.com", "eve-password-1")).status, 403);
  });

  it("serves the MP3 with HEAD, byte ranges and a sensible file name, and DELETE removes it", async () => {
    const upload = await client.upload(adminToken, media("holiday.mp4"), "My Holiday (2026).mp4");
    const { jobId } = (await upload.json()) as { jobId: string };
    const job = await client.waitForJob(adminToken, jobId);
    const fid = String(job.mp3Id);

    const head = await client.download(adminToken, fid, {}, "HEAD");
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-type"), "audio/mpeg");
    assert.match(
      String(head.headers.get("content-disposition")),
      /attachment; filename="My Holiday \(2026\)\.mp3"/,
    );
    const size = Number(head.headers.get("content-length"));
    assert.ok(size > 1000);

    const part = await client.download(adminToken, fid, { range: "bytes=10-19" });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get("content-range"), `bytes 10-19/${size}`);
    const full = Buffer.from(await (await client.download(adminToken, fid)).arrayBuffer());
    assert.equal(full.length, size);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), full.subarray(10, 20));
    assert.equal((await client.download(adminToken, fid, { range: `bytes=${size + 10}-` })).status, 416);

    const deleted = await fetch(`${server.url}/jobs/${jobId}`, {
      method: "DELETE",
      headers: { authorization: `Bearer ${adminToken}` },
    });
    assert.equal(deleted.status, 204);
    assert.equal((await client.job(adminToken, jobId)).status, 404);
    assert.equal((await client.download(adminToken, fid)).status, 404);
    const blobs = await readdir(path.join(dir, "data", "blobs", "mp3s"));
    assert.ok(!blobs.includes(fid), "the MP3 file is removed");
  });

  it("lists the caller's jobs newest first, paginated", async () => {
    const first = (await (await client.jobs(adminToken, "?limit=2")).json()) as {
      jobs: { createdAt: string }[];
      total: number;
    };
    assert.equal(first.jobs.length, 2);
    assert.ok(first.total >= 4);
    assert.ok(first.jobs[0] && first.jobs[1] && first.jobs[0].createdAt >= first.jobs[1].createdAt);
    assert.equal((await client.jobs(adminToken, "?limit=0")).status, 400);
  });
});

describe("crash and restart (embedded default)", () => {
  it("finishes a job that was accepted before the process was killed", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-restart-"));
    try {
      const video = path.join(dir, "talk.mp4");
      await makeVideo(video, { seconds: 2 });
      // A real ffmpeg that starts slowly, so the job is certainly unfinished when the process dies.
      const slowFfmpeg = path.join(dir, "slow-ffmpeg");
      await writeFile(
        slowFfmpeg,
        '#!/bin/sh\ncase "$1" in -version) ;; *) sleep 10 ;; esac\nexec ffmpeg "$@"\n',
      );
      await chmod(slowFfmpeg, 0o755);
      const env = {
        DATA_DIR: path.join(dir, "data"),
        ADMIN_EMAIL: ADMIN.email,
        ADMIN_PASSWORD: ADMIN.password,
      };

      const first = await startServer({ ...env, FFMPEG_PATH: slowFfmpeg });
      const firstClient = gatewayClient(first.url);
      const token = await firstClient.token(ADMIN.email, ADMIN.password);
      const response = await firstClient.upload(token, video);
      assert.equal(response.status, 202);
      const { jobId } = (await response.json()) as { jobId: string };
      await first.stop("SIGKILL");

      const db = new DatabaseSync(path.join(dir, "data", "gateway.sqlite"), { readOnly: true });
      const row = db.prepare("SELECT status FROM jobs WHERE id = ?").get(jobId) as { status: string };
      db.close();
      assert.ok(
        ["queued", "converting"].includes(row.status),
        `job is unfinished at the crash (${row.status})`,
      );

      const second = await startServer(env);
      try {
        const client = gatewayClient(second.url);
        const job = await client.waitForJob(await client.token(ADMIN.email, ADMIN.password), jobId);
        assert.equal(job.status, "done", JSON.stringify(job));
      } finally {
        await second.stop();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
