import { stat } from "node:fs/promises";
import path from "node:path";
import { ApiClient, ApiError, ConnectionError, isEnded, type Job, type User } from "./api-client.ts";
import { ConversionFlagError, type ConversionFlags, conversionFields } from "./convert-options.ts";
import { CredentialsStore, serverKey } from "./credentials.ts";
import { downloadFileName, exists, FileExistsError, mp3NameFor, saveStream } from "./files.ts";
import { exitOnInterrupt } from "./interrupt.ts";
import { waitForJob } from "./job-watcher.ts";
import { formatBytes, formatDuration, ProgressDisplay } from "./progress.ts";
import { canPrompt, PromptCancelled, promptHidden, promptVisible, readStdin } from "./prompt.ts";

/** The command was used wrongly (exit 2). */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The command failed for a reason already explained in its message (exit 1). */
export class CliError extends Error {
  override name = "CliError";
}

export const DEFAULT_SERVER = "http://localhost:8080";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface ServerOption {
  server?: string;
}

/** `--server`, else `VID2MP3_URL`, else http://localhost:8080. */
export function resolveServer(option: string | undefined): URL {
  const value = option ?? process.env.VID2MP3_URL ?? DEFAULT_SERVER;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`The server URL "${value}" is not a URL (like ${DEFAULT_SERVER}).`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`The server URL must start with http:// or https:// (got "${value}").`);
  }
  return url;
}

const store = () => new CredentialsStore();

/**
 * A client with the user's token: `VID2MP3_TOKEN` when set (scripts, CI), else the one
 * `vid2mp3 login` stored for this server.
 */
async function loggedIn(options: ServerOption): Promise<ApiClient> {
  const server = resolveServer(options.server);
  const fromEnv = process.env.VID2MP3_TOKEN;
  if (fromEnv) return new ApiClient(server, fromEnv);
  const credential = await store().get(server);
  if (!credential) {
    throw new CliError(`You are not logged in to ${serverKey(server)}; run \`vid2mp3 login\` first.`);
  }
  if (credential.expiresAt && Date.parse(credential.expiresAt) <= Date.now()) {
    throw new CliError(`Your login to ${serverKey(server)} has expired; run \`vid2mp3 login\` again.`);
  }
  return new ApiClient(server, credential.token);
}

async function readPassword(
  options: { passwordStdin?: boolean },
  prompt: string,
  env?: string,
  confirm = false,
): Promise<string> {
  if (options.passwordStdin) {
    if (process.stdin.isTTY) throw new UsageError("--password-stdin reads a pipe, not the terminal.");
    const password = await readStdin();
    if (password === "") throw new UsageError("--password-stdin was given but standard input is empty.");
    return password;
  }
  if (env && process.env[env]) return process.env[env] as string;
  if (!canPrompt()) {
    throw new UsageError(
      `No password: there is no terminal to ask on; use --password-stdin${env ? ` or set ${env}` : ""}.`,
    );
  }
  const password = await promptHidden(prompt);
  if (password === "") throw new UsageError("No password given.");
  if (confirm && (await promptHidden("Repeat the password: ")) !== password) {
    throw new UsageError("The two passwords differ.");
  }
  return password;
}

// ---------------------------------------------------------------- login, logout

export async function login(
  options: ServerOption & { email?: string; passwordStdin?: boolean },
): Promise<void> {
  const server = resolveServer(options.server);
  const credentials = store();
  let email = options.email ?? (await credentials.get(server))?.email;
  if (!email) {
    if (!canPrompt()) throw new UsageError("Give your e-mail with --email.");
    email = await promptVisible("E-mail: ");
    if (!email) throw new UsageError("No e-mail given.");
  }
  const password = await readPassword(options, `Password for ${email}: `, "VID2MP3_PASSWORD");
  let issued: { token: string; expiresAt?: string };
  try {
    issued = await new ApiClient(server).login(email, password);
  } catch (error) {
    // "Invalid e-mail or password." needs no advice to log in again.
    if (error instanceof ApiError && error.status === 401) throw new CliError(error.message);
    throw error;
  }
  const { token, expiresAt } = issued;
  await credentials.set(server, {
    token,
    email,
    expiresAt: expiresAt ?? null,
    savedAt: new Date().toISOString(),
  });
  const until = expiresAt ? ` until ${new Date(expiresAt).toLocaleString()}` : "";
  process.stdout.write(`Logged in to ${serverKey(server)} as ${email}${until}.\n`);
}

export async function logout(options: ServerOption): Promise<void> {
  const server = resolveServer(options.server);
  const removed = await store().delete(server);
  process.stdout.write(
    removed ? `Logged out of ${serverKey(server)}.\n` : `You were not logged in to ${serverKey(server)}.\n`,
  );
}

// ---------------------------------------------------------------- convert

export interface ConvertOptions extends ServerOption, ConversionFlags {
  output?: string;
  wait: boolean;
  force?: boolean;
  quiet?: boolean;
}

/**
 * Each file in turn: upload, follow the conversion, download the MP3. A file that fails is
 * reported and the others still go; the command then exits 1.
 */
export async function convert(files: string[], options: ConvertOptions): Promise<void> {
  const fields = uploadFieldsOf(options);
  const api = await loggedIn(options);
  const progress = new ProgressDisplay({ enabled: !options.quiet });
  let failures = 0;
  for (const file of files) {
    try {
      const saved = await convertOne(api, file, { ...options, fields }, progress);
      process.stdout.write(`${saved}\n`);
    } catch (error) {
      // A token the server refuses will be refused for the next file too.
      if (error instanceof ApiError && error.isAuthProblem) throw error;
      failures += 1;
      process.stderr.write(`vid2mp3: ${file}: ${messageOf(error)}\n`);
    }
  }
  if (failures > 0) {
    throw new CliError(files.length > 1 ? `${failures} of ${files.length} files failed.` : "");
  }
}

/** Converts one file; answers the MP3's path (or, without waiting, the job id). */
/** The conversion flags as upload fields; a wrong one is a usage error, before anything is sent. */
function uploadFieldsOf(options: ConversionFlags): [string, string][] {
  try {
    return conversionFields(options);
  } catch (error) {
    if (error instanceof ConversionFlagError) throw new UsageError(error.message);
    throw error;
  }
}

async function convertOne(
  api: ApiClient,
  file: string,
  options: ConvertOptions & { fields: [string, string][] },
  progress: ProgressDisplay,
): Promise<string> {
  const info = await stat(file).catch(() => undefined);
  if (!info) throw new CliError("No such file.");
  if (!info.isFile()) throw new CliError("Not a file.");
  const name = path.basename(file);
  const input = path.resolve(file);
  const dir = path.resolve(options.output ?? path.dirname(file));

  // Refuse before uploading when the MP3's name is already taken: no conversion is wasted.
  if (options.wait) {
    const expected = path.join(dir, mp3NameFor(name));
    if (expected === input) throw new CliError(`The MP3 would replace the input file; use --output DIR.`);
    if (!options.force && (await exists(expected))) throw new FileExistsError(expected);
  }

  const upload = progress.bytes("upload", name, info.size);
  let job: Job;
  try {
    job = await api.upload(file, name, { onBytes: (sent) => upload.update(sent), fields: options.fields });
  } catch (error) {
    upload.stop();
    throw error;
  }
  upload.done();
  if (!options.wait) {
    progress.note(`${name}: queued as job ${job.id}`);
    return job.id;
  }

  const conversion = progress.fraction("convert", name, job.status);
  const ended = await waitForJob(api, job.id, {
    onChange: (change) => {
      if (!isEnded(change)) conversion.update(change.progress, change.status);
    },
  }).catch((error: unknown) => {
    conversion.stop();
    throw error;
  });
  if (ended.status === "failed" || !ended.mp3Id) {
    conversion.stop();
    throw new CliError(`Conversion failed: ${ended.error ?? "the server gave no reason."}`);
  }
  conversion.done(ended.durationSeconds ? `${formatDuration(ended.durationSeconds)} of audio` : undefined);

  const destination = await download(api, ended.mp3Id, dir, {
    fallbackName: mp3NameFor(name),
    force: options.force,
    progress,
    label: name,
    refuse: input,
  });
  return destination;
}

async function download(
  api: ApiClient,
  fid: string,
  dir: string,
  options: {
    fallbackName: string;
    force?: boolean;
    progress: ProgressDisplay;
    label: string;
    refuse?: string;
  },
): Promise<string> {
  const response = await api.download(fid);
  const destination = path.join(
    dir,
    downloadFileName(response.headers.get("content-disposition"), options.fallbackName),
  );
  if (destination === options.refuse) {
    await response.body?.cancel();
    throw new CliError("The MP3 would replace the input file; use --output DIR.");
  }
  if (!options.force && (await exists(destination))) {
    await response.body?.cancel();
    throw new FileExistsError(destination);
  }
  if (!response.body) throw new CliError("The server sent no file.");
  const size = Number(response.headers.get("content-length") ?? Number.NaN);
  const bar = options.progress.bytes("download", options.label, Number.isFinite(size) ? size : 0);
  try {
    await saveStream(response.body, destination, { force: options.force, onBytes: (n) => bar.update(n) });
  } catch (error) {
    bar.stop();
    await response.body.cancel().catch(() => {});
    throw error;
  }
  bar.done();
  return destination;
}

// ---------------------------------------------------------------- jobs, download, delete

export async function jobs(options: ServerOption & { limit: number; json?: boolean }): Promise<void> {
  const api = await loggedIn(options);
  const page = await api.jobs({ limit: options.limit });
  if (options.json) {
    process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
    return;
  }
  if (page.jobs.length === 0) {
    process.stdout.write("No jobs yet: convert a video with `vid2mp3 convert <file>`.\n");
    return;
  }
  const rows = page.jobs.map((job) => [
    job.id,
    job.status === "converting" ? `converting ${Math.floor(job.progress * 100)}%` : job.status,
    truncate(job.fileName, 40),
    formatBytes(job.size),
    formatDate(job.createdAt),
    // When the retention removes it; "-" while unfinished or kept for ever.
    job.expiresAt ? formatDate(job.expiresAt) : "-",
    job.status === "done" ? (job.mp3Id ?? "") : job.status === "failed" ? truncate(job.error ?? "", 60) : "",
  ]);
  process.stdout.write(table(["JOB", "STATUS", "FILE", "SIZE", "CREATED", "EXPIRES", "FID / ERROR"], rows));
  if (page.total > page.jobs.length) {
    process.stdout.write(`${page.jobs.length} of ${page.total} jobs; see more with --limit.\n`);
  }
}

export async function downloadMp3(
  fid: string,
  options: ServerOption & { output?: string; force?: boolean; quiet?: boolean },
): Promise<void> {
  const api = await loggedIn(options);
  const progress = new ProgressDisplay({ enabled: !options.quiet });
  const destination = await download(api, fid, path.resolve(options.output ?? "."), {
    fallbackName: `${safeName(fid)}.mp3`,
    force: options.force,
    progress,
    label: fid,
  });
  process.stdout.write(`${destination}\n`);
}

export async function deleteJob(jobId: string, options: ServerOption): Promise<void> {
  if (!UUID.test(jobId)) throw new UsageError(`"${jobId}" is not a job id (see \`vid2mp3 jobs\`).`);
  const api = await loggedIn(options);
  await api.deleteJob(jobId);
  process.stdout.write(`Deleted job ${jobId} and its files.\n`);
}

// ---------------------------------------------------------------- users (admin)

export async function listUsers(options: ServerOption & { json?: boolean }): Promise<void> {
  const api = await loggedIn(options);
  const users = await allUsers(api);
  if (options.json) {
    process.stdout.write(`${JSON.stringify(users, null, 2)}\n`);
    return;
  }
  const rows = users.map((user) => [
    user.id,
    user.email,
    user.admin ? "admin" : "user",
    user.disabled ? "disabled" : "active",
    formatDate(user.createdAt),
  ]);
  process.stdout.write(table(["ID", "E-MAIL", "ROLE", "STATE", "CREATED"], rows));
}

export async function addUser(
  email: string,
  options: ServerOption & { admin?: boolean; passwordStdin?: boolean },
): Promise<void> {
  const api = await loggedIn(options);
  const password = await readPassword(options, `Password for ${email}: `, undefined, true);
  const user = await api.createUser(email, password, options.admin ?? false);
  process.stdout.write(`Created ${user.admin ? "admin" : "user"} ${user.email} (${user.id}).\n`);
}

export async function setUserDisabled(
  idOrEmail: string,
  disabled: boolean,
  options: ServerOption,
): Promise<void> {
  const api = await loggedIn(options);
  const id = await userId(api, idOrEmail);
  const user = await api.updateUser(id, { disabled });
  process.stdout.write(`${disabled ? "Disabled" : "Enabled"} ${user.email} (${user.id}).\n`);
}

async function allUsers(api: ApiClient): Promise<User[]> {
  const users: User[] = [];
  for (;;) {
    const page = await api.users({ limit: 100, offset: users.length });
    users.push(...page.users);
    if (page.users.length === 0 || users.length >= page.total) return users;
  }
}

/** A user id as given, or the id of the user with this e-mail. */
async function userId(api: ApiClient, idOrEmail: string): Promise<string> {
  if (UUID.test(idOrEmail)) return idOrEmail;
  if (!idOrEmail.includes("@")) throw new UsageError(`"${idOrEmail}" is neither a user id nor an e-mail.`);
  const wanted = idOrEmail.trim().toLowerCase();
  const user = (await allUsers(api)).find((candidate) => candidate.email.toLowerCase() === wanted);
  if (!user) throw new CliError(`No user with the e-mail ${idOrEmail}.`);
  return user.id;
}

// ---------------------------------------------------------------- errors and formatting

/** The sentence to show for an error, with what to do about it where that is clear. */
export function messageOf(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.isAuthProblem) {
      return `${error.message} Run \`vid2mp3 login\`.`;
    }
    return error.message;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}

/** Runs a command's action: errors become one line on stderr and the exit code (1, 2 for usage). */
export function action<Args extends unknown[]>(run: (...args: Args) => Promise<void>) {
  return async (...args: Args): Promise<void> => {
    exitOnInterrupt();
    try {
      await run(...args);
    } catch (error) {
      if (error instanceof PromptCancelled) {
        process.exitCode = 130;
        return;
      }
      // An empty CliError: the details were printed already.
      if (!(error instanceof CliError && error.message === "")) {
        process.stderr.write(`vid2mp3: ${messageOf(error)}\n`);
      }
      const expected =
        error instanceof ApiError ||
        error instanceof ConnectionError ||
        error instanceof CliError ||
        error instanceof UsageError ||
        error instanceof FileExistsError;
      if (!expected && process.env.VID2MP3_DEBUG) process.stderr.write(`${(error as Error).stack}\n`);
      process.exitCode = error instanceof UsageError ? 2 : 1;
    }
  };
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join("  ")
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join("\n")}\n`;
}

function truncate(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join("")}…`;
}

function formatDate(iso: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

function safeName(text: string): string {
  return text.replace(/[^\w.-]/g, "_").slice(0, 100) || "download";
}
