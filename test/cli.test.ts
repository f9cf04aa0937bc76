import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { parseEventStream } from "../src/cli/api-client.ts";
import { gatewayClient } from "./support/client.ts";
import {
  audioDuration,
  decodedSeconds,
  loudness,
  makeRichVideo,
  makeVideo,
  mp3Details,
} from "./support/media.ts";
import { type Run, type RunOptions, runProcess, show } from "./support/run-process.ts";
import { type RunningServer, startServer } from "./support/server.ts";

const main = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));
const ADMIN = { email: "admin@example.com", password: "admin-password-1" };

describe("the vid2mp3 client commands against the real system", () => {
  let dir: string;
  let server: RunningServer;
  const file = (...parts: string[]) => path.join(dir, ...parts);

  /** Runs `vid2mp3 ...args` as a real process: no terminal, its own config dir, VID2MP3_URL set. */
  function vid2mp3(
    args: string[],
    options: {
      input?: string;
      env?: Record<string, string>;
      configDir?: string;
      onStart?: RunOptions["onStart"];
    } = {},
  ): Promise<Run> {
    return runProcess(process.execPath, [main, ...args], {
      cwd: dir,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: dir,
        XDG_CONFIG_HOME: options.configDir ?? file("config"),
        VID2MP3_URL: server.url,
        ...options.env,
      },
      input: options.input,
      onStart: options.onStart,
    });
  }

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
      makeVideo(file("talk.mkv"), { seconds: 1 }),
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
      ["passwd"],
      ["convert"],
      ["jobs"],
      ["download"],
      ["delete"],
      ["users"],
      ["users", "list"],
      ["users", "add"],
      ["users", "disable"],
      ["users", "enable"],
      ["users", "reset-password"],
    ];
    const runs = await Promise.all(commands.map((command) => vid2mp3([...command, "--help"])));
    runs.forEach((run, index) => {
      const command = commands[index] ?? [];
      assert.equal(run.code, 0, `${command.join(" ")} --help\n${show(run)}`);
      assert.match(run.stdout, new RegExp(`^Usage: vid2mp3 ${command.join(" ")}`.trimEnd()));
      if (command.length > 0 && command[0] !== "users") assert.match(run.stdout, /--server <url>/);
    });
  });

  it("exits 2 on every usage error, with the reason on stderr and nothing on stdout", async () => {
    const cases: [string[], RegExp][] = [
      [[], /Usage: vid2mp3/],
      [["bogus"], /unknown command 'bogus'/],
      [["convert"], /missing required argument 'file'/],
      [["jobs", "--limit", "0"], /--limit/],
      [["jobs", "--offset", "-1"], /--offset/],
      [["jobs", "--server", "ftp://example.com"], /must start with http/],
      [["download", "not-a-uuid"], /"not-a-uuid" is not a job id/],
      [["delete", "123"], /"123" is not a job id/],
      [["users", "bogus"], /unknown command 'bogus'/],
      [["users", "disable", "bob"], /neither a user id nor an e-mail/],
      [["login", "--password-stdin"], /^vid2mp3: Give your e-mail with --email\.\n$/],
      [["jobs", "--no-such-option"], /unknown option/],
    ];
    const runs = await Promise.all(cases.map(([args]) => vid2mp3(args, { input: "x\n" })));
    runs.forEach((run, index) => {
      const [args, reason] = cases[index] as [string[], RegExp];
      assert.equal(run.code, 2, `vid2mp3 ${args.join(" ")}\n${show(run)}`);
      assert.match(run.stderr, reason, `vid2mp3 ${args.join(" ")}`);
      assert.equal(run.stdout, "", `vid2mp3 ${args.join(" ")}`);
    });
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
    assert.equal(run.stdout, "", "a message, not a result: stderr");
    assert.match(run.stderr, new RegExp(`Logged in to ${server.url} as ${ADMIN.email}`));
    const credentials = file("config", "vid2mp3", "credentials.json");
    assert.equal((await stat(credentials)).mode & 0o777, 0o600);
    assert.equal((await stat(path.dirname(credentials))).mode & 0o777, 0o700);
    const stored = JSON.parse(await readFile(credentials, "utf8")) as {
      servers: Record<string, { token: string; email: string }>;
    };
    assert.equal(stored.servers[server.url]?.email, ADMIN.email);
    assert.match(stored.servers[server.url]?.token ?? "", /^[\w-]+\.[\w-]+\.[\w-]+$/);
  });

  it("converts a video: only the MP3's path on stdout, progress and a summary on stderr", async () => {
    const run = await vid2mp3(["convert", file("holiday.mp4")]);
    assert.equal(run.code, 0, show(run));
    const mp3 = file("holiday.mp3");
    assert.equal(run.stdout, `${mp3}\n`);
    const lines = run.stderr.trimEnd().split("\n");
    assert.ok(!run.stderr.includes("\u001b"), "no terminal escape codes when stderr is not a terminal");
    assert.ok(lines.some((line) => /^upload holiday\.mp4: 0% of \d/.test(line)));
    assert.ok(lines.some((line) => /^upload holiday\.mp4: 100% \(.+ in .+\)$/.test(line)));
    assert.ok(lines.some((line) => /^convert holiday\.mp4: 100%/.test(line)));
    assert.ok(lines.some((line) => /^download holiday\.mp4: 100%/.test(line)));
    assert.equal(lines.at(-1), "1 of 1 file converted.");
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

  it("uploads every file first, follows them together, goes on after a failure and ends with a summary", async () => {
    const run = await vid2mp3([
      "convert",
      file("notes.mp4"),
      file("holiday.mp4"),
      file("talk.mkv"),
      file("silent.mp4"),
      "--output",
      file("out"),
    ]);
    assert.equal(run.code, 1, show(run));
    assert.deepEqual(run.stdout.trimEnd().split("\n").sort(), [
      file("out", "holiday.mp3"),
      file("out", "talk.mp3"),
    ]);
    const lines = run.stderr.trimEnd().split("\n");
    const lastUpload = lines.findLastIndex((line) => line.startsWith("upload "));
    const firstConvert = lines.findIndex((line) => line.startsWith("convert "));
    assert.ok(lastUpload < firstConvert, `all uploads come before following:\n${run.stderr}`);
    assert.match(run.stderr, /notes\.mp4: This file is not a video or audio container/);
    assert.match(run.stderr, /silent\.mp4: Conversion failed/);
    assert.equal(lines.at(-1), "2 of 4 files converted; 2 failed.");
    assert.ok((await stat(file("out", "holiday.mp3"))).size > 1000);
    assert.ok((await stat(file("out", "talk.mp3"))).size > 1000);
  });

  it("lists the jobs in a table that fits 80 columns, with short ids; --wide, --offset and --json", async () => {
    const [run, wide, json, second] = await Promise.all([
      vid2mp3(["jobs"]),
      vid2mp3(["jobs", "--wide"]),
      vid2mp3(["jobs", "--json", "--limit", "150"]),
      vid2mp3(["jobs", "--limit", "1", "--offset", "1"]),
    ]);
    for (const each of [run, wide, json, second]) assert.equal(each.code, 0, show(each));
    const { jobs } = JSON.parse(json.stdout) as Awaited<ReturnType<typeof adminJobs>>;
    assert.deepEqual(jobs, (await adminJobs()).jobs, "--json prints the API's jobs");
    const done = jobs.find((job) => job.status === "done");
    assert.ok(done, JSON.stringify(jobs));

    const [header, ...rows] = run.stdout.trimEnd().split("\n");
    assert.match(header ?? "", /^JOB\s+STATUS\s+FILE\s+SIZE\s+CREATED$/);
    assert.equal(rows.length, jobs.length);
    for (const line of run.stdout.trimEnd().split("\n")) assert.ok(line.length <= 80, `too wide: ${line}`);
    assert.ok(
      rows.some((row) => row.startsWith(`${done.id.slice(0, 8)} `) && /\bdone\b/.test(row)),
      run.stdout,
    );
    // Retention is on by default: a done job says when it expires (created and expiry dates).
    assert.ok(done.expiresAt, "expiresAt");
    const wideRow = wide.stdout.split("\n").find((row) => row.startsWith(done.id)) ?? "";
    assert.equal(wideRow.match(/\d{4}-\d\d-\d\d \d\d:\d\d/g)?.length, 2, wideRow);

    assert.match(
      wide.stdout.split("\n")[0] ?? "",
      /^JOB\s+STATUS\s+FILE\s+SIZE\s+CREATED\s+EXPIRES\s+FID \/ ERROR$/,
    );
    assert.ok(wide.stdout.includes(done.id) && wide.stdout.includes(String(done.mp3Id)), wide.stdout);

    const secondRows = second.stdout.trimEnd().split("\n").slice(1);
    assert.equal(secondRows.length, 1);
    assert.ok(secondRows[0]?.startsWith(jobs[1]?.id.slice(0, 8) ?? "?"), second.stdout);
    assert.match(second.stderr, new RegExp(`^Jobs 2–2 of ${jobs.length}; the next with --offset 2\\.\\n$`));
  });

  it("uploads without waiting, downloads by the short job id or the fid, and deletes a job", async () => {
    const queued = await vid2mp3(["convert", "--no-wait", "-q", file("holiday.mp4")]);
    assert.equal(queued.code, 0, show(queued));
    const jobId = queued.stdout.trim();
    assert.match(jobId, /^[0-9a-f-]{36}$/);

    const api = gatewayClient(server.url);
    const job = await api.waitForJob(await api.token(ADMIN.email, ADMIN.password), jobId);
    assert.equal(job.status, "done");
    const fid = String(job.mp3Id);

    const downloaded = await vid2mp3(["download", jobId.slice(0, 8), "--output", file("downloads")]);
    assert.equal(downloaded.code, 0, show(downloaded));
    assert.equal(downloaded.stdout, `${file("downloads", "holiday.mp3")}\n`);
    const again = await vid2mp3(["download", fid, "--output", file("downloads")]);
    assert.equal(again.code, 1, show(again));
    assert.match(again.stderr, /already exists; use --force/);
    const forced = await vid2mp3(["download", fid, "--output", file("downloads"), "--force", "-q"]);
    assert.equal(forced.code, 0, show(forced));
    assert.equal(forced.stderr, "");

    const deleted = await vid2mp3(["delete", jobId.slice(0, 8)]);
    assert.equal(deleted.code, 0, show(deleted));
    assert.equal(deleted.stdout, "");
    assert.match(deleted.stderr, new RegExp(`^Deleted job ${jobId.slice(0, 8)} \\(holiday\\.mp4\\)`));
    const gone = await vid2mp3(["download", fid]);
    assert.equal(gone.code, 1, show(gone));
    assert.equal(gone.stderr, "vid2mp3: No MP3 with this fid.\n");
    const noSuchJob = await vid2mp3(["delete", "abcd1234"]);
    assert.equal(noSuchJob.code, 1, show(noSuchJob));
    assert.match(noSuchJob.stderr, /No job of yours has an id starting with "abcd1234"/);
  });

  it("converts with every conversion option, each one found in the MP3", async () => {
    const source = await makeRichVideo(path.join(dir, "talk.mkv"));
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
    assert.match(added.stdout, /^[0-9a-f-]{36}\n$/, "the new user's id is the result");
    assert.equal(added.stderr, "Created user bob@example.com.\n");

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
    assert.equal(bobsJobs.stdout, "");
    assert.match(bobsJobs.stderr, /^No jobs yet/);
    assert.equal(notAdmin.code, 1, show(notAdmin));
    assert.equal(notAdmin.stderr, "vid2mp3: Only an administrator can manage users.\n");

    const disabled = await vid2mp3(["users", "disable", "bob@example.com"]);
    assert.equal(disabled.code, 0, show(disabled));
    const refused = await loginAs("bob@example.com", "bob-password-1", bobConfig);
    assert.equal(refused.code, 1, show(refused));
    const enabled = await vid2mp3(["users", "enable", "bob@example.com"]);
    assert.equal(enabled.code, 0, show(enabled));
    assert.equal((await loginAs("bob@example.com", "bob-password-1", bobConfig)).code, 0);

    const reset = await vid2mp3(["users", "reset-password", "bob@example.com", "--password-stdin"], {
      input: "bob-password-2\n",
    });
    assert.equal(reset.code, 0, show(reset));
    assert.equal((await loginAs("bob@example.com", "bob-password-1", bobConfig)).code, 1);
    assert.equal((await loginAs("bob@example.com", "bob-password-2", bobConfig)).code, 0);
  });

  it("changes the password with passwd, and stays logged in with the new one", async () => {
    const bobConfig = file("bob-config");
    const wrong = await vid2mp3(["passwd", "--password-stdin"], {
      input: "not-bobs-password\nbob-password-3\n",
      configDir: bobConfig,
    });
    assert.equal(wrong.code, 1, show(wrong));
    assert.equal(wrong.stderr, "vid2mp3: The current password is not right.\n");
    const oneLine = await vid2mp3(["passwd", "--password-stdin"], {
      input: "bob-password-2\n",
      configDir: bobConfig,
    });
    assert.equal(oneLine.code, 2, show(oneLine));

    const changed = await vid2mp3(["passwd", "--password-stdin"], {
      input: "bob-password-2\nbob-password-3\n",
      configDir: bobConfig,
    });
    assert.equal(changed.code, 0, show(changed));
    assert.equal(changed.stdout, "");
    assert.match(changed.stderr, /^Password changed; logged in to .* again with the new one\.\n$/);
    const jobs = await vid2mp3(["jobs"], { configDir: bobConfig });
    assert.equal(jobs.code, 0, show(jobs));
    assert.equal((await loginAs("bob@example.com", "bob-password-2", file("other-config"))).code, 1);
    assert.equal((await loginAs("bob@example.com", "bob-password-3", file("other-config"))).code, 0);
  });

  it("logs out", async () => {
    const configDir = file("logout-config");
    assert.equal((await loginAs(ADMIN.email, ADMIN.password, configDir)).code, 0);
    const run = await vid2mp3(["logout"], { configDir });
    assert.equal(run.code, 0, show(run));
    assert.equal(run.stderr, `Logged out of ${server.url}.\n`);
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

describe("Ctrl-C during vid2mp3 convert", () => {
  let dir: string;
  let servers: QueueOnly | undefined;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-cli-interrupt-"));
    await makeVideo(path.join(dir, "long.mp4"), { seconds: 2 });
  });

  after(async () => {
    await servers?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("says how to fetch the MP3 later, and the job goes on on the server", async () => {
    // The job waits in the queue for as long as the test needs.
    servers = await startWithoutConverter(path.join(dir, "data"));
    const { gateway } = servers;
    const api = gatewayClient(gateway.url);
    const token = await api.token(ADMIN.email, ADMIN.password);
    const run = await runProcess(process.execPath, [main, "convert", path.join(dir, "long.mp4")], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? "", HOME: dir, VID2MP3_URL: gateway.url, VID2MP3_TOKEN: token },
      onStart: (child, output) => {
        const poll = setInterval(() => {
          if (/^convert long\.mp4: queued/m.test(output.stderr())) {
            clearInterval(poll);
            child.kill("SIGINT");
          }
        }, 50);
        child.once("close", () => clearInterval(poll));
      },
    });
    assert.equal(run.code, 130, show(run));
    assert.equal(run.stdout, "");
    const { jobs } = (await (await api.jobs(token)).json()) as { jobs: { id: string; status: string }[] };
    const [job] = jobs;
    assert.equal(job?.status, "queued", "the job is still there, waiting for a converter");
    assert.match(run.stderr, /the server goes on converting/);
    assert.ok(run.stderr.includes(`vid2mp3 download ${job?.id.slice(0, 8)}    # long.mp4`), run.stderr);
  });
});

describe("vid2mp3 jobs past the API's 100 a page", () => {
  let dir: string;
  let servers: QueueOnly | undefined;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-cli-pages-"));
    await makeVideo(path.join(dir, "clip.mp4"), { seconds: 1 });
  });

  after(async () => {
    await servers?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("reads --limit beyond 100 page by page, from --offset on", async () => {
    // The jobs stay queued, and no ffmpeg runs for them.
    servers = await startWithoutConverter(path.join(dir, "data"), { MAX_ACTIVE_JOBS_PER_USER: "0" });
    const { gateway } = servers;
    const api = gatewayClient(gateway.url);
    const token = await api.token(ADMIN.email, ADMIN.password);
    for (let batch = 0; batch < 21; batch++) {
      const uploads = await Promise.all(
        Array.from({ length: 5 }, () => api.upload(token, path.join(dir, "clip.mp4"))),
      );
      for (const upload of uploads) assert.equal(upload.status, 202, await upload.text());
    }
    // The API's own order, read in its pages of at most 100.
    const ids: string[] = [];
    for (const offset of [0, 100]) {
      const page = (await (await api.jobs(token, `?limit=100&offset=${offset}`)).json()) as {
        jobs: { id: string }[];
      };
      ids.push(...page.jobs.map((job) => job.id));
    }
    assert.equal(ids.length, 105);

    const run = (args: string[]) =>
      runProcess(process.execPath, [main, ...args], {
        cwd: dir,
        env: { PATH: process.env.PATH ?? "", HOME: dir, VID2MP3_URL: gateway?.url, VID2MP3_TOKEN: token },
      });
    const [table, json] = await Promise.all([
      run(["jobs", "--limit", "103", "--offset", "1"]),
      run(["jobs", "--json", "--limit", "200"]),
    ]);
    assert.equal(table.code, 0, show(table));
    const rows = table.stdout.trimEnd().split("\n").slice(1);
    assert.deepEqual(
      rows.map((row) => row.split(" ")[0]),
      ids.slice(1, 104).map((id) => id.slice(0, 8)),
    );
    assert.equal(table.stderr, "Jobs 2–104 of 105; the next with --offset 104.\n");
    assert.equal(json.code, 0, show(json));
    const listed = JSON.parse(json.stdout) as { jobs: { id: string }[]; total: number };
    assert.deepEqual(
      listed.jobs.map((job) => job.id),
      ids,
    );
    assert.equal(listed.total, 105);
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

/** What `startWithoutConverter` started: the gateway to talk to, and one stop for both. */
interface QueueOnly {
  gateway: RunningServer;
  stop(): Promise<void>;
}

/** Auth and a gateway on one data folder, and no converter: jobs stay queued for as long as a test needs. */
async function startWithoutConverter(
  dataDir: string,
  gatewayEnv: Record<string, string> = {},
): Promise<QueueOnly> {
  const auth = await startServer(
    { DATA_DIR: dataDir, ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password },
    { service: "auth" },
  );
  try {
    const gateway = await startServer(
      { DATA_DIR: dataDir, AUTH_SVC_ADDRESS: new URL(auth.url).host, ...gatewayEnv },
      { service: "gateway" },
    );
    return {
      gateway,
      async stop() {
        await gateway.stop();
        await auth.stop();
      },
    };
  } catch (error) {
    await auth.stop();
    throw error;
  }
}
