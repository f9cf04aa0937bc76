import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { parseEventStream } from "../src/cli/api-client.ts";
import { decodedSeconds, loudness, makeRichVideo, mp3Details } from "../src/converter/test-media.ts";
import { gatewayClient } from "./support/client.ts";
import { audioDuration, makeVideo } from "./support/media.ts";
import { type RunningServer, startServer } from "./support/server.ts";

const main = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));
const ADMIN = { email: "admin@example.com", password: "admin-password-1" };

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe("the vid2mp3 client commands against the real system", () => {
  let dir: string;
  let server: RunningServer;
  const file = (...parts: string[]) => path.join(dir, ...parts);

  /** Runs `vid2mp3 ...args` as a real process: no terminal, its own config dir, VID2MP3_URL set. */
  async function vid2mp3(
    args: string[],
    options: { input?: string; env?: Record<string, string>; configDir?: string } = {},
  ): Promise<Run> {
    const child = spawn(process.execPath, [main, ...args], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: dir,
        XDG_CONFIG_HOME: options.configDir ?? file("config"),
        VID2MP3_URL: server.url,
        ...options.env,
      },
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.stdin.end(options.input ?? "");
    const [code] = (await once(child, "close")) as [number | null];
    return { code, stdout, stderr };
  }

  const show = (run: Run) => `exit ${run.code}\n--- stdout\n${run.stdout}--- stderr\n${run.stderr}`;
  const loginAs = (email: string, password: string, configDir?: string) =>
    vid2mp3(["login", "--email", email, "--password-stdin"], { input: `${password}\n`, configDir });
  /** The admin's jobs, straight from the API (checks that are not about the command itself). */
  const adminJobs = async () => {
    const api = gatewayClient(server.url);
    const response = await api.jobs(await api.token(ADMIN.email, ADMIN.password), "?limit=100");
    return (await response.json()) as {
      jobs: {
        id: string;
        status: string;
        fileName: string;
        mp3Id: string | null;
        expiresAt: string | null;
      }[];
      total: number;
    };
  };

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-cli-"));
    await Promise.all([
      makeVideo(file("holiday.mp4"), { seconds: 2 }),
      makeVideo(file("silent.mp4"), { seconds: 1, audio: false }),
      writeFile(file("notes.mp4"), "these are my notes, not a video\n".repeat(200)),
    ]);
    server = await startServer({
      DATA_DIR: file("data"),
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
    });
  });

  after(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("shows --help for every command and exits 0", async () => {
    const commands = [
      [],
      ["login"],
      ["logout"],
      ["convert"],
      ["jobs"],
      ["download"],
      ["delete"],
      ["users"],
      ["users", "list"],
      ["users", "add"],
      ["users", "disable"],
      ["users", "enable"],
    ];
    const runs = await Promise.all(commands.map((command) => vid2mp3([...command, "--help"])));
    runs.forEach((run, index) => {
      const command = commands[index] ?? [];
      assert.equal(run.code, 0, `${command.join(" ")} --help\n${show(run)}`);
      assert.match(run.stdout, new RegExp(`^Usage: vid2mp3 ${command.join(" ")}`.trimEnd()));
      if (command.length > 0 && command[0] !== "users") assert.match(run.stdout, /--server <url>/);
    });
  });

  it("exits 2 on usage errors, with a one-line reason", async () => {
    const [noFile, badLimit, noEmail, badUrl] = await Promise.all([
      vid2mp3(["convert"]),
      vid2mp3(["jobs", "--limit", "0"]),
      vid2mp3(["login", "--password-stdin"], { input: "x\n" }),
      vid2mp3(["jobs", "--server", "ftp://example.com"]),
    ]);
    assert.equal(noFile.code, 2, show(noFile));
    assert.match(noFile.stderr, /missing required argument 'file'/);
    assert.equal(badLimit.code, 2, show(badLimit));
    assert.equal(noEmail.code, 2, show(noEmail));
    assert.equal(noEmail.stderr, "vid2mp3: Give your e-mail with --email.\n");
    assert.equal(badUrl.code, 2, show(badUrl));
  });

  it("refuses a command that needs a login before there is one", async () => {
    const run = await vid2mp3(["jobs"]);
    assert.equal(run.code, 1, show(run));
    assert.equal(
      run.stderr,
      `vid2mp3: You are not logged in to ${server.url}; run \`vid2mp3 login\` first.\n`,
    );
  });

  it("exits 1 with a clear message for a wrong password, and stores nothing", async () => {
    const run = await loginAs(ADMIN.email, "not-the-password");
    assert.equal(run.code, 1, show(run));
    assert.equal(run.stderr, "vid2mp3: Invalid e-mail or password.\n");
    await assert.rejects(stat(file("config", "vid2mp3", "credentials.json")), { code: "ENOENT" });
  });

  it("logs in and stores the token in a credentials file only the user can read", async () => {
    const run = await loginAs(ADMIN.email, ADMIN.password);
    assert.equal(run.code, 0, show(run));
    assert.match(run.stdout, new RegExp(`Logged in to ${server.url} as ${ADMIN.email}`));
    const credentials = file("config", "vid2mp3", "credentials.json");
    assert.equal((await stat(credentials)).mode & 0o777, 0o600);
    assert.equal((await stat(path.dirname(credentials))).mode & 0o777, 0o700);
    const stored = JSON.parse(await readFile(credentials, "utf8")) as {
      servers: Record<string, { token: string; email: string }>;
    };
    assert.equal(stored.servers[server.url]?.email, ADMIN.email);
    assert.match(stored.servers[server.url]?.token ?? "", /^[\w-]+\.[\w-]+\.[\w-]+$/);
  });

  it("converts a video: progress lines, then the MP3 next to it with the video's length", async () => {
    const run = await vid2mp3(["convert", file("holiday.mp4")]);
    assert.equal(run.code, 0, show(run));
    assert.equal(run.stderr, "");
    const mp3 = file("holiday.mp3");
    const lines = run.stdout.trimEnd().split("\n");
    assert.equal(lines.at(-1), mp3, "the last line is the MP3's path");
    assert.ok(!run.stdout.includes("\u001b"), "no terminal escape codes when stdout is not a terminal");
    assert.ok(lines.some((line) => /^upload holiday\.mp4: 0% of \d/.test(line)));
    assert.ok(lines.some((line) => /^upload holiday\.mp4: 100% \(.+ in .+\)$/.test(line)));
    assert.ok(lines.some((line) => /^convert holiday\.mp4: 100%/.test(line)));
    assert.ok(lines.some((line) => /^download holiday\.mp4: 100%/.test(line)));
    const [source, converted] = await Promise.all([audioDuration(file("holiday.mp4")), audioDuration(mp3)]);
    assert.ok(Math.abs(source - converted) <= 0.1, `MP3 lasts ${converted} s, the video's audio ${source} s`);
  });

  it("never overwrites an existing MP3 without --force, and refuses before uploading", async () => {
    const before = (await adminJobs()).total;
    const run = await vid2mp3(["convert", file("holiday.mp4")]);
    assert.equal(run.code, 1, show(run));
    assert.match(run.stderr, /holiday\.mp3 already exists; use --force to overwrite it\./);
    assert.equal((await adminJobs()).total, before, "nothing was uploaded");
  });

  it("fails a text file named .mp4 with the API's 415 message and exit 1", async () => {
    const run = await vid2mp3(["convert", "-q", file("notes.mp4")]);
    assert.equal(run.code, 1, show(run));
    assert.equal(
      run.stderr,
      `vid2mp3: ${file("notes.mp4")}: This file is not a video or audio container we can convert (detected: unknown data).\n`,
    );
  });

  it("prints the reason of a failed conversion and exits 1", async () => {
    const run = await vid2mp3(["convert", "-q", file("silent.mp4")]);
    assert.equal(run.code, 1, show(run));
    assert.equal(run.stdout, "");
    assert.match(run.stderr, /^vid2mp3: .*silent\.mp4: Conversion failed: .*no audio.*\n$/i);
  });

  it("goes on with the other files after one fails, then exits 1", async () => {
    const run = await vid2mp3([
      "convert",
      "-q",
      file("notes.mp4"),
      file("holiday.mp4"),
      "--output",
      file("out"),
    ]);
    assert.equal(run.code, 1, show(run));
    assert.equal(run.stdout, `${file("out", "holiday.mp3")}\n`);
    assert.match(run.stderr, /notes\.mp4: This file is not a video or audio container/);
    assert.match(run.stderr, /1 of 2 files failed\./);
    assert.ok((await stat(file("out", "holiday.mp3"))).size > 1000);
  });

  it("lists the jobs in a table", async () => {
    const [run, json] = await Promise.all([vid2mp3(["jobs"]), vid2mp3(["jobs", "--json", "--limit", "100"])]);
    assert.equal(run.code, 0, show(run));
    assert.equal(json.code, 0, show(json));
    const { jobs } = JSON.parse(json.stdout) as Awaited<ReturnType<typeof adminJobs>>;
    assert.deepEqual(jobs, (await adminJobs()).jobs, "--json prints the API's jobs");
    const done = jobs.find((job) => job.status === "done");
    assert.ok(done, JSON.stringify(jobs));
    const [header, ...rows] = run.stdout.trimEnd().split("\n");
    assert.match(header ?? "", /^JOB\s+STATUS\s+FILE\s+SIZE\s+CREATED\s+EXPIRES\s+FID \/ ERROR$/);
    assert.ok(
      rows.some((row) => row.startsWith(done.id) && /\bdone\b/.test(row) && row.includes("holiday.mp4")),
      run.stdout,
    );
    // Retention is on by default: a done job shows when it expires (created and expiry dates).
    assert.ok(done.expiresAt, "expiresAt");
    const doneRow = rows.find((row) => row.startsWith(done.id)) ?? "";
    assert.equal(doneRow.match(/\d{4}-\d\d-\d\d \d\d:\d\d/g)?.length, 2, doneRow);
  });

  it("uploads without waiting, downloads by fid, and deletes a job", async () => {
    const queued = await vid2mp3(["convert", "--no-wait", "-q", file("holiday.mp4")]);
    assert.equal(queued.code, 0, show(queued));
    const jobId = queued.stdout.trim();
    assert.match(jobId, /^[0-9a-f-]{36}$/);

    const api = gatewayClient(server.url);
    const job = await api.waitForJob(await api.token(ADMIN.email, ADMIN.password), jobId);
    assert.equal(job.status, "done");
    const fid = String(job.mp3Id);

    const downloaded = await vid2mp3(["download", fid, "--output", file("downloads")]);
    assert.equal(downloaded.code, 0, show(downloaded));
    assert.equal(downloaded.stdout.trimEnd().split("\n").at(-1), file("downloads", "holiday.mp3"));
    const again = await vid2mp3(["download", fid, "--output", file("downloads")]);
    assert.equal(again.code, 1, show(again));
    assert.match(again.stderr, /already exists; use --force/);
    const forced = await vid2mp3(["download", fid, "--output", file("downloads"), "--force", "-q"]);
    assert.equal(forced.code, 0, show(forced));

    const deleted = await vid2mp3(["delete", jobId]);
    assert.equal(deleted.code, 0, show(deleted));
    const gone = await vid2mp3(["download", fid]);
    assert.equal(gone.code, 1, show(gone));
    assert.equal(gone.stderr, "vid2mp3: No MP3 with this fid.\n");
  });

  it("converts with every conversion option, each one found in the MP3", async () => {
    const source = await makeRichVideo(dir, "talk.mkv");
    const run = await vid2mp3([
      ...["convert", source, "-q", "--output", file("options-out")],
      ...["--quality", "320k", "--start", "0:01", "--end", "4.5", "--normalize", "--mono", "--track", "eng"],
      ...["--title", "The talk", "--artist", "Me", "--album", "Talks", "--no-cover", "--no-chapters"],
    ]);
    assert.equal(run.code, 0, show(run));
    const mp3 = file("options-out", "talk.mp3");
    assert.equal(run.stdout, `${mp3}\n`);
    const details = await mp3Details(mp3);
    assert.equal(details.audio.bitRate, 320_000);
    assert.equal(details.audio.channels, 1);
    assert.deepEqual(details.tags, { ...details.tags, title: "The talk", artist: "Me", album: "Talks" });
    assert.equal(details.picture, undefined);
    assert.deepEqual(details.chapters, []);
    assert.ok(Math.abs((await decodedSeconds(mp3)) - 3.5) <= 1152 / 44100);
    assert.ok(Math.abs((await loudness(mp3)).integrated - -16) <= 1);
    const job = (await adminJobs()).jobs.find((j) => j.fileName === "talk.mkv");
    assert.deepEqual((job as { options?: unknown } | undefined)?.options, {
      quality: "320k",
      start: 1,
      end: 4.5,
      normalize: true,
      mono: true,
      track: "eng",
      title: "The talk",
      artist: "Me",
      album: "Talks",
      cover: "none",
      chapters: "drop",
    });
  });

  it("refuses a wrong conversion option with exit 2, naming the flag, before uploading", async () => {
    const before = (await adminJobs()).total;
    const [badQuality, backwards, badTrack] = await Promise.all([
      vid2mp3(["convert", file("holiday.mp4"), "--quality", "999k"]),
      vid2mp3(["convert", file("holiday.mp4"), "--start", "2:30", "--end", "1:00"]),
      vid2mp3(["convert", file("holiday.mp4"), "--track", "english"]),
    ]);
    assert.equal(badQuality.code, 2, show(badQuality));
    assert.match(
      badQuality.stderr,
      /^vid2mp3: --quality must be v0 … v9 \(VBR\) or 128k, 160k, 192k, 256k, 320k \(CBR\), got "999k"\.\n$/,
    );
    assert.equal(backwards.code, 2, show(backwards));
    assert.equal(backwards.stderr, "vid2mp3: --end (1:00) must come after --start (2:30).\n");
    assert.equal(badTrack.code, 2, show(badTrack));
    assert.match(badTrack.stderr, /--track must be/);
    assert.equal((await adminJobs()).total, before, "nothing was uploaded");
  });

  it("lets an admin add a user who can then log in, and keeps users out of the admin commands", async () => {
    const added = await vid2mp3(["users", "add", "bob@example.com", "--password-stdin"], {
      input: "bob-password-1\n",
    });
    assert.equal(added.code, 0, show(added));
    assert.match(added.stdout, /^Created user bob@example\.com \([0-9a-f-]{36}\)\.\n$/);

    const listed = await vid2mp3(["users", "list"]);
    assert.equal(listed.code, 0, show(listed));
    assert.match(listed.stdout, /bob@example\.com\s+user\s+active/);

    const bobConfig = file("bob-config");
    const bob = await loginAs("bob@example.com", "bob-password-1", bobConfig);
    assert.equal(bob.code, 0, show(bob));
    const [bobsJobs, notAdmin] = await Promise.all([
      vid2mp3(["jobs"], { configDir: bobConfig }),
      vid2mp3(["users", "list"], { configDir: bobConfig }),
    ]);
    assert.equal(bobsJobs.code, 0, show(bobsJobs));
    assert.match(bobsJobs.stdout, /^No jobs yet/);
    assert.equal(notAdmin.code, 1, show(notAdmin));
    assert.equal(notAdmin.stderr, "vid2mp3: Only an administrator can manage users.\n");

    const disabled = await vid2mp3(["users", "disable", "bob@example.com"]);
    assert.equal(disabled.code, 0, show(disabled));
    const refused = await loginAs("bob@example.com", "bob-password-1", bobConfig);
    assert.equal(refused.code, 1, show(refused));
    const enabled = await vid2mp3(["users", "enable", "bob@example.com"]);
    assert.equal(enabled.code, 0, show(enabled));
    assert.equal((await loginAs("bob@example.com", "bob-password-1", bobConfig)).code, 0);
  });

  it("logs out", async () => {
    const configDir = file("logout-config");
    assert.equal((await loginAs(ADMIN.email, ADMIN.password, configDir)).code, 0);
    const run = await vid2mp3(["logout"], { configDir });
    assert.equal(run.code, 0, show(run));
    assert.equal(run.stdout, `Logged out of ${server.url}.\n`);
    assert.equal((await vid2mp3(["jobs"], { configDir })).code, 1);
  });

  it("says so when the server cannot be reached", async () => {
    // A port that was free a moment ago: nothing listens there.
    const probe = net.createServer().listen(0, "127.0.0.1");
    await once(probe, "listening");
    const { port } = probe.address() as net.AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const url = `http://127.0.0.1:${port}`;
    const run = await vid2mp3(["jobs"], { env: { VID2MP3_URL: url, VID2MP3_TOKEN: "x.y.z" } });
    assert.equal(run.code, 1, show(run));
    assert.equal(
      run.stderr,
      `vid2mp3: Cannot reach the vid2mp3 server at ${url}/: connect ECONNREFUSED 127.0.0.1:${port}\n`,
    );
  });
});

describe("the event stream parser", () => {
  it("reads events split across chunks, skipping comments", async () => {
    const text =
      'retry: 3000\n\n: keep-alive\n\nevent: job\nid: 1\ndata: {"id":"a"}\r\n\r\nevent: job\ndata: x\ndata: y\n\n';
    const bytes = new TextEncoder().encode(text);
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 7) controller.enqueue(bytes.subarray(i, i + 7));
        controller.close();
      },
    });
    const events = [];
    for await (const event of parseEventStream(body)) events.push(event);
    assert.deepEqual(events, [
      { event: "job", data: '{"id":"a"}' },
      { event: "job", data: "x\ny" },
    ]);
  });
});
