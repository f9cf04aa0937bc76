import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, mkdir, mkdtemp, readFile, realpath, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { audioDuration, makeVideo } from "./support/media.ts";
import { runProcess, show } from "./support/run-process.ts";
import { type RunningServer, startServer } from "./support/server.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const ADMIN = { email: "admin@example.com", password: "admin-password-1" };
const { version } = JSON.parse(await readFile(path.join(ROOT, "package.json"), "utf8")) as {
  version: string;
};

/**
 * The machine's own `name` on PATH, skipping every node_modules/.bin (npm scripts put the project's
 * Node.js 24 first there): the Node.js and npm a user has without this project.
 */
async function systemProgram(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir === "" || dir.split(path.sep).includes("node_modules")) continue;
    const candidate = path.join(dir, name);
    if (
      await access(candidate, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return realpath(candidate);
  }
  return undefined;
}

const systemNode = await systemProgram("node");
const systemNpm = await systemProgram("npm");
const missing = !systemNode || !systemNpm ? "no Node.js and npm of the machine's own on PATH" : false;

/**
 * What a user does: `npm pack` in the checkout, `npm install -g ./vid2mp3-<version>.tgz` with the
 * machine's own Node.js (20 on this machine, whatever the project brings), then `vid2mp3` from
 * any folder, against a real server.
 */
describe("the package made by npm pack, installed with the machine's own Node.js", { skip: missing }, () => {
  let dir: string;
  let server: RunningServer;
  let tarball: string;
  const node = systemNode as string;
  const npm = systemNpm as string;
  /** Only the installed command and the machine's own Node.js: nothing of the checkout. */
  const userPath = () =>
    [path.join(dir, "prefix", "bin"), path.dirname(node), "/usr/bin", "/bin"].join(path.delimiter);
  const vid2mp3 = (args: string[], input?: string) =>
    runProcess("vid2mp3", args, {
      cwd: path.join(dir, "elsewhere"),
      env: {
        PATH: userPath(),
        HOME: dir,
        XDG_CONFIG_HOME: path.join(dir, "config"),
        VID2MP3_URL: server.url,
      },
      input,
    });

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-install-"));
    await mkdir(path.join(dir, "elsewhere"));
    await makeVideo(path.join(dir, "elsewhere", "holiday.mp4"), { seconds: 2 });
    server = await startServer({
      DATA_DIR: path.join(dir, "data"),
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
    });
  });

  after(async () => {
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("npm pack compiles the sources into a package of JavaScript, without tests or TypeScript", async () => {
    const packed = await runProcess(node, [npm, "pack", "--pack-destination", dir, "--json"], {
      cwd: ROOT,
      env: { ...process.env, npm_config_loglevel: "error" },
      timeoutMs: 180_000,
    });
    assert.equal(packed.code, 0, show(packed));
    const [info] = JSON.parse(packed.stdout) as { filename: string; files: { path: string }[] }[];
    assert.ok(info);
    tarball = path.join(dir, info.filename);
    assert.equal(info.filename, `vid2mp3-${version}.tgz`);
    const files = info.files.map((entry) => entry.path);
    for (const needed of [
      "bin/vid2mp3.js",
      "dist/cli/main.js",
      "dist/gateway/service.js",
      "web/index.html",
      "package.json",
    ]) {
      assert.ok(files.includes(needed), `${needed} is in the package`);
    }
    assert.deepEqual(
      files.filter((file) => file.endsWith(".ts") || file.includes(".test.") || file.startsWith("test/")),
      [],
    );
    await assert.rejects(access(path.join(ROOT, "dist")), "npm pack leaves no dist/ behind in the checkout");
  });

  it("installs with npm install -g and runs from any folder on the machine's Node.js", async () => {
    const installed = await runProcess(
      node,
      [
        npm,
        "install",
        "-g",
        "--prefix",
        path.join(dir, "prefix"),
        "--prefer-offline",
        "--no-audit",
        "--no-fund",
        tarball,
      ],
      {
        cwd: dir,
        env: {
          PATH: [path.dirname(node), "/usr/bin", "/bin"].join(path.delimiter),
          HOME: dir,
          // The machine's own npm settings, which `--prefix` would otherwise hide: npm reads its
          // global npmrc from the prefix, and this machine's (its registry's TLS certificate
          // authority) is where its own npm keeps it. Without them every registry request fails
          // and npm retries until it gives up, minutes later, with nothing printed.
          npm_config_cache: await npmConfig("cache"),
          npm_config_globalconfig: await npmConfig("globalconfig"),
          ...(process.env.NODE_EXTRA_CA_CERTS && { NODE_EXTRA_CA_CERTS: process.env.NODE_EXTRA_CA_CERTS }),
        },
        timeoutMs: 300_000,
      },
    );
    assert.equal(installed.code, 0, show(installed));

    const nodeVersion = await runProcess("node", ["--version"], { env: { PATH: userPath() } });
    const [help, versionRun] = await Promise.all([vid2mp3(["--help"]), vid2mp3(["--version"])]);
    assert.equal(help.code, 0, `${show(help)}\n(node ${nodeVersion.stdout.trim()})`);
    assert.match(help.stdout, /^Usage: vid2mp3/);
    assert.equal(versionRun.stdout, `${version}\n`);
  });

  it("logs in and converts a video with the installed command", async () => {
    const login = await vid2mp3(["login", "--email", ADMIN.email, "--password-stdin"], `${ADMIN.password}\n`);
    assert.equal(login.code, 0, show(login));
    const converted = await vid2mp3(["convert", "holiday.mp4"]);
    assert.equal(converted.code, 0, show(converted));
    const mp3 = path.join(dir, "elsewhere", "holiday.mp3");
    assert.equal(converted.stdout, `${mp3}\n`);
    assert.ok((await audioDuration(mp3)) > 1.5);
    const usage = await vid2mp3(["delete", "123"]);
    assert.equal(usage.code, 2, show(usage));
  });

  it("says in one line that the services need Node.js 24 when the machine's is older", async (t) => {
    const major = Number((await runProcess(node, ["-p", "process.versions.node"])).stdout.split(".")[0]);
    if (major >= 24) return t.skip(`the machine's own Node.js is ${major}`);
    const run = await vid2mp3(["serve"]);
    assert.equal(run.code, 1, show(run));
    assert.match(
      run.stderr,
      /^vid2mp3: `vid2mp3 serve` needs Node\.js 24 or newer; this is Node\.js \d+\.[\d.]+ \(the client commands work here\)\.\n$/,
    );
  });
});

/** A setting of the machine's own npm, as the user running the tests has it (cache, global npmrc). */
async function npmConfig(key: string): Promise<string> {
  const { stdout } = await promisify(execFile)(systemNode as string, [
    systemNpm as string,
    "config",
    "get",
    key,
  ]);
  return stdout.trim();
}
