/**
 * `npm run test:containers`: the containers for real. Builds the base and the two images with
 * podman (base-image.sh, build-images.sh; cached), brings the whole distributed system up from
 * deploy/compose.yaml (with compose.override.yaml for what cannot run here), drives the README's
 * curl flow against the gateway container, checks the MP3 with ffprobe and the mail, and tears
 * everything down. Prints the time of each step.
 *
 * Debian's podman-compose (1.0.3) starts services in depends_on order but ignores the conditions,
 * so this test starts them in stages and waits for each condition compose.yaml states itself:
 * service_healthy (the service's own check: `/readyz` for ours, "ready" in the log of a stand-in),
 * service_completed_successfully (the container exited 0).
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";
import { createConnection } from "mysql2/promise";
import { parse } from "yaml";
import { createTestVhost, type TestVhost } from "../support/rabbitmq.ts";
import { prefixedInitStatements } from "./backends.ts";

const here = import.meta.dirname;
const root = path.join(here, "..", "..");
const podman = path.join(here, "podman.sh");
const execFileAsync = promisify(execFile);
const started = Date.now();

function log(message: string): void {
  process.stdout.write(`# [${((Date.now() - started) / 1000).toFixed(1)}s] ${message}\n`);
}

/** Runs a command to its end; its output goes to ours; fails on a non-zero exit. */
function run(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: root, env, stdio: ["ignore", "inherit", "inherit"] });
    child.on("error", reject);
    child.on("exit", (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} ${args.join(" ")} exited with ${code}`)),
    );
  });
}

async function timed<T>(what: string, step: () => Promise<T>): Promise<T> {
  const t = Date.now();
  const result = await step();
  log(`${what}: ${((Date.now() - t) / 1000).toFixed(1)}s`);
  return result;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      // A failed assertion is final (a job that failed, a container that cannot start): no retry.
      if (error instanceof assert.AssertionError) throw error;
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ""}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

interface ComposeService {
  depends_on?: Record<string, { condition: string }>;
}

describe("deploy/compose.yaml with podman: the distributed system in containers", {
  timeout: 55 * 60_000,
}, () => {
  const runId = randomBytes(3).toString("hex");
  const project = `vid2mp3-ct-${runId}`;
  const prefix = `ct${runId}_`;
  const mysqlServer = process.env.TEST_MYSQL_URL ?? "mysql://root@127.0.0.1:3306";
  const compose = parse(readFileSync(path.join(root, "deploy", "compose.yaml"), "utf8"), { merge: true }) as {
    services: Record<string, ComposeService>;
  };
  let vhost: TestVhost;
  let mailDir: string;
  let env: NodeJS.ProcessEnv;
  const ports: Record<string, number> = {};
  const composeArgs = [
    "--podman-path",
    path.join(here, "podman-for-compose.sh"),
    "-p",
    project,
    "-f",
    "deploy/compose.yaml",
    "-f",
    "test/containers/compose.override.yaml",
  ];
  const container = (service: string) => `${project}_${service}_1`;

  before(async () => {
    await removeLeftovers();
    await timed("base image (debootstrap + Node from the npm registry; cached)", () =>
      run("bash", [path.join(here, "base-image.sh")]),
    );
    await timed("vid2mp3 images (podman build, both targets)", () =>
      run("bash", [path.join(here, "build-images.sh")]),
    );
    vhost = await createTestVhost("containers");
    mailDir = await mkdtemp(path.join(tmpdir(), "vid2mp3-ct-mail-"));
    for (const name of ["auth", "gateway", "converter", "notification", "s3", "smtp"])
      ports[name] = await freePort();
    const server = new URL(mysqlServer);
    const user = (name: string, password: string) => {
      const url = new URL(server);
      url.username = `${prefix}${name}`;
      url.password = password;
      return url.toString().replace(/\/$/, "");
    };
    env = {
      ...process.env,
      CT_REPO: root,
      CT_NODE_IMAGE: "localhost/vid2mp3-stand-in/node:24-bookworm-slim",
      CT_PREFIX: prefix,
      CT_MYSQL_URL: mysqlServer,
      // The users mariadb-init.sql makes (with this run's prefix) and their dev passwords.
      CT_MYSQL_MIGRATE_AUTH: user("auth_migrate", "dev-auth-migrate"),
      CT_MYSQL_MIGRATE_GATEWAY: user("gateway_migrate", "dev-gateway-migrate"),
      CT_MYSQL_AUTH: user("auth", "dev-auth"),
      CT_MYSQL_GATEWAY: user("gateway", "dev-gateway"),
      CT_AMQP_URL: vhost.url,
      CT_MAIL_DIR: mailDir,
      CT_AUTH_PORT: String(ports.auth),
      CT_GATEWAY_PORT: String(ports.gateway),
      CT_CONVERTER_PORT: String(ports.converter),
      CT_NOTIFICATION_PORT: String(ports.notification),
      CT_S3_PORT: String(ports.s3),
      CT_SMTP_PORT: String(ports.smtp),
    };
    await timed("system up (staged by compose.yaml's depends_on conditions)", () => bringUp());
  });

  after(async () => {
    const t = Date.now();
    if (env) {
      await run(podman, ["podman-compose", ...composeArgs, "down", "-v"], env).catch((error) =>
        log(`down failed: ${error}`),
      );
      // podman-compose made the project network even though no container joined it.
      await run(podman, ["podman", "network", "rm", "--force", `${project}_default`], env).catch(() => {});
    }
    await dropDatabases().catch((error) => log(`dropping the databases failed: ${error}`));
    await vhost?.delete();
    if (mailDir) await rm(mailDir, { recursive: true, force: true });
    log(
      `torn down in ${((Date.now() - t) / 1000).toFixed(1)}s; ${((Date.now() - started) / 1000).toFixed(1)}s in all`,
    );
  });

  /**
   * A run that was killed never reached its `down`: its containers (restarting ones among them,
   * `restart: unless-stopped`) would keep ports, memory and CPU for ever. Removed before this run.
   */
  async function removeLeftovers(): Promise<void> {
    const { stdout } = await execFileAsync(podman, [
      "podman",
      "ps",
      "--all",
      "--format",
      "{{.Names}}",
      "--filter",
      "name=^vid2mp3-ct-",
    ]);
    const stale = stdout.split("\n").filter((name) => name && !name.startsWith(project));
    if (stale.length === 0) return;
    log(`removing ${stale.length} container(s) a killed run left: ${stale.join(", ")}`);
    await execFileAsync(podman, ["podman", "rm", "--force", "--volumes", ...stale]);
    await execFileAsync(podman, ["podman", "network", "prune", "--force"]).catch(() => {});
  }

  /** Starts services whose dependencies' conditions hold, stage by stage, until all run. */
  async function bringUp(): Promise<void> {
    const done = new Set<string>();
    const names = Object.keys(compose.services);
    while (done.size < names.length) {
      const stage = names.filter(
        (name) =>
          !done.has(name) && Object.keys(compose.services[name]?.depends_on ?? {}).every((d) => done.has(d)),
      );
      assert.ok(stage.length > 0, "depends_on has a cycle");
      await run(podman, ["podman-compose", ...composeArgs, "up", "-d", "--no-build", ...stage], env);
      await Promise.all(stage.map((name) => reached(name)));
      for (const name of stage) done.add(name);
      log(`up: ${stage.join(", ")}`);
    }
  }

  /** Waits for what later services' conditions ask of this one. */
  async function reached(service: string): Promise<void> {
    const conditions = new Set(
      Object.values(compose.services).flatMap((s) =>
        Object.entries(s.depends_on ?? {})
          .filter(([name]) => name === service)
          .map(([, d]) => d.condition),
      ),
    );
    if (conditions.has("service_completed_successfully")) {
      await execFileAsync(podman, ["podman", "wait", container(service)], { env });
      const state = await stateOf(service);
      // `podman wait` also returns for a container that never started (its process not found, say).
      assert.equal(state, "exited 0", `${service}: ${state}\n${await logsOf(service)}`);
      return;
    }
    const port = {
      auth: ports.auth,
      gateway: ports.gateway,
      converter: ports.converter,
      notification: ports.notification,
    }[service];
    if (port) {
      await until(
        `${service} /readyz`,
        async () => {
          const ready = await fetch(`http://127.0.0.1:${port}/readyz`).then(
            (response) => response.ok,
            () => false,
          );
          if (ready) return true;
          // A container that could not start will not get ready: say so now, with its logs.
          const state = await stateOf(service);
          if (/^(created|configured)/.test(state)) {
            throw new assert.AssertionError({
              message: `${service} never started: ${await logsOf(service)}`,
            });
          }
          return undefined;
        },
        120_000,
      ).catch(async (error: Error) => {
        error.message += `\n${service}'s last logs:\n${await logsOf(service)}`;
        throw error;
      });
      return;
    }
    // A stand-in backend: "ready" (backends.ts) or "listening" (the test servers) in its log.
    await until(
      `${service} ready`,
      async () => {
        const { stdout } = await execFileAsync(podman, ["podman", "logs", container(service)], { env });
        return /ready|listening/.test(stdout) ? true : undefined;
      },
      120_000,
    );
  }

  /** "<status> <exit code>" of a service's container, as podman sees it. */
  async function stateOf(service: string): Promise<string> {
    const { stdout } = await execFileAsync(
      podman,
      ["podman", "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container(service)],
      { env },
    );
    return stdout.trim();
  }

  async function logsOf(service: string): Promise<string> {
    const { stdout, stderr } = await execFileAsync(
      podman,
      ["podman", "logs", "--tail", "30", container(service)],
      {
        env,
      },
    ).catch((error: { stdout?: string; stderr?: string }) => ({
      stdout: error.stdout ?? "",
      stderr: error.stderr ?? "",
    }));
    return `${stdout}${stderr}`.trim();
  }

  async function dropDatabases(): Promise<void> {
    const sql = await readFile(
      path.join(root, "deploy", "k8s", "overlays", "dev", "mariadb-init.sql"),
      "utf8",
    );
    const connection = await createConnection(mysqlServer);
    try {
      for (const statement of prefixedInitStatements(sql, prefix)) {
        const database = /^CREATE DATABASE IF NOT EXISTS (\S+)/.exec(statement)?.[1];
        const user = /^CREATE USER IF NOT EXISTS ('[^']+'@'%')/.exec(statement)?.[1];
        if (database) await connection.query(`DROP DATABASE IF EXISTS ${database}`);
        if (user) await connection.query(`DROP USER IF EXISTS ${user}`);
      }
    } finally {
      await connection.end();
    }
  }

  it("runs the README's curl flow against the gateway container: login, upload, poll, download", async () => {
    const base = `http://127.0.0.1:${ports.gateway}`;
    const work = await mkdtemp(path.join(tmpdir(), "vid2mp3-ct-flow-"));
    try {
      const video = path.join(work, "clip.mp4");
      await execFileAsync("ffmpeg", [
        "-hide_banner",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=10:duration=3",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=3",
        "-shortest",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
        video,
      ]);
      const curl = async (...args: string[]) => (await execFileAsync("curl", ["-fsS", ...args])).stdout;
      const token = (
        await curl("-X", "POST", "-u", "admin@example.com:dev-admin-password", `${base}/login`)
      ).trim();
      assert.match(token, /^[\w-]+\.[\w-]+\.[\w-]+$/, "a JWT");
      const accepted = JSON.parse(
        await curl(
          "-X",
          "POST",
          "-H",
          `Authorization: Bearer ${token}`,
          "-F",
          `file=@${video}`,
          `${base}/upload`,
        ),
      ) as { jobId: string };
      const job = await until(
        "the conversion",
        async () => {
          const current = JSON.parse(
            await curl("-H", `Authorization: Bearer ${token}`, `${base}/jobs/${accepted.jobId}`),
          ) as { status: string; mp3Id: string; error: string | null };
          assert.notEqual(current.status, "failed", current.error ?? "");
          return current.status === "done" ? current : undefined;
        },
        120_000,
      );
      const mp3 = path.join(work, "clip.mp3");
      await curl("-o", mp3, "-H", `Authorization: Bearer ${token}`, `${base}/download?fid=${job.mp3Id}`);
      const probe = JSON.parse(
        (
          await execFileAsync("ffprobe", [
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
            mp3,
          ])
        ).stdout,
      ) as { format: { format_name: string; duration: string }; streams: { codec_name: string }[] };
      assert.equal(probe.format.format_name, "mp3");
      assert.equal(probe.streams[0]?.codec_name, "mp3");
      assert.ok(Math.abs(Number(probe.format.duration) - 3) < 0.5, `duration ${probe.format.duration}`);
      log(`MP3 checked with ffprobe: ${(await stat(mp3)).size} bytes, ${probe.format.duration} s`);

      // The notification container sent the "ready" mail through the SMTP container.
      const mail = await until(
        "the mail",
        async () => {
          const files = (await readdir(mailDir)).filter((f) => f.endsWith(".eml"));
          return files.length > 0 ? readFile(path.join(mailDir, files[0] as string), "utf8") : undefined;
        },
        60_000,
      );
      assert.match(mail, /admin@example\.com/);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  it("keeps /metrics and /readyz answering on the gateway container and runs it as uid 1000 with a read-only root", async () => {
    const base = `http://127.0.0.1:${ports.gateway}`;
    const ready = (await (await fetch(`${base}/readyz`)).json()) as { status: string };
    assert.equal(ready.status, "ready");
    const { stdout } = await execFileAsync(
      podman,
      [
        "podman",
        "inspect",
        "--format",
        "{{.Config.User}} {{.HostConfig.ReadonlyRootfs}}",
        container("gateway"),
      ],
      { env },
    );
    assert.equal(stdout.trim(), "node true");
    const { stdout: ffmpegInService } = await execFileAsync(
      podman,
      [
        "podman",
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        "localhost/vid2mp3-service:dev",
        "-c",
        "command -v ffmpeg || echo none",
      ],
      { env },
    );
    assert.equal(ffmpegInService.trim(), "none", "only the converter image carries ffmpeg");
  });
});
