import type { Command, CommanderError } from "commander";
import { errorMessage } from "../platform/error-message.ts";
import { ApiClient, ApiError, ConnectionError } from "./api-client.ts";
import { CredentialsStore, serverKey } from "./credentials.ts";
import { FileExistsError } from "./files.ts";
import { exitOnInterrupt } from "./interrupt.ts";
import { canPrompt, PromptCancelled, promptHidden, readStdin } from "./prompt.ts";

// What every client command shares: the server and the token, errors and exit codes, and where
// output goes. Results (paths, ids, tables, JSON) go to stdout, so `$(vid2mp3 …)` and pipes get
// exactly them; progress, confirmations and errors go to stderr.

/** The command was used wrongly (exit 2). */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The command failed for a reason already explained in its message (exit 1). */
export class CliError extends Error {
  override name = "CliError";
}

export const DEFAULT_SERVER = "http://localhost:8080";

export interface ServerOption {
  server?: string;
}

/** A result: a line on stdout. */
export function result(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** A message for the person at the terminal: a line on stderr. */
export function tell(text: string): void {
  process.stderr.write(`${text}\n`);
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

export const credentialsStore = () => new CredentialsStore();

/**
 * A client with the user's token: `VID2MP3_TOKEN` when set (scripts, CI), else the one
 * `vid2mp3 login` stored for this server.
 */
export async function loggedIn(options: ServerOption): Promise<ApiClient> {
  const server = resolveServer(options.server);
  const fromEnv = process.env.VID2MP3_TOKEN;
  if (fromEnv) return new ApiClient(server, fromEnv);
  const credential = await credentialsStore().get(server);
  if (!credential) {
    throw new CliError(`You are not logged in to ${serverKey(server)}; run \`vid2mp3 login\` first.`);
  }
  if (credential.expiresAt && Date.parse(credential.expiresAt) <= Date.now()) {
    throw new CliError(`Your login to ${serverKey(server)} has expired; run \`vid2mp3 login\` again.`);
  }
  return new ApiClient(server, credential.token);
}

/**
 * A password: from standard input with `--password-stdin` (`lines` passwords, one a line), else
 * from the environment variable `env`, else asked for on the terminal without echo.
 */
export async function readPassword(
  options: { passwordStdin?: boolean },
  prompt: string,
  env?: string,
  confirm = false,
): Promise<string> {
  if (options.passwordStdin) return (await readPasswordLines(1))[0] as string;
  if (env && process.env[env]) return process.env[env] as string;
  return askPassword(prompt, env, confirm);
}

/** `count` passwords from standard input, one a line (for `--password-stdin`). */
export async function readPasswordLines(count: number): Promise<string[]> {
  if (process.stdin.isTTY) throw new UsageError("--password-stdin reads a pipe, not the terminal.");
  const text = await readStdin();
  if (text === "") throw new UsageError("--password-stdin was given but standard input is empty.");
  if (count === 1) return [text];
  const lines = text.split(/\r?\n/);
  if (lines.length < count || lines.slice(0, count).some((line) => line === "")) {
    throw new UsageError(`--password-stdin expects ${count} lines here, one password each.`);
  }
  return lines.slice(0, count);
}

/** Asks on the terminal without echo; `confirm` asks twice. */
export async function askPassword(prompt: string, env?: string, confirm = false): Promise<string> {
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

/** The sentence to show for an error, with what to do about it where that is clear. */
export function userMessage(error: unknown): string {
  if (error instanceof ApiError) {
    if (error.isAuthProblem) return `${error.message} Run \`vid2mp3 login\`.`;
    return error.message;
  }
  return errorMessage(error);
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
      if (!(error instanceof CliError && error.message === "")) tell(`vid2mp3: ${userMessage(error)}`);
      const expected =
        error instanceof ApiError ||
        error instanceof ConnectionError ||
        error instanceof CliError ||
        error instanceof UsageError ||
        error instanceof FileExistsError;
      if (!expected && process.env.VID2MP3_DEBUG) tell(String((error as Error).stack));
      process.exitCode = error instanceof UsageError ? 2 : 1;
    }
  };
}

/** Commander's own errors (unknown command, missing argument, bad option) are usage errors: exit 2. */
export function exitTwoOnUsageError(command: Command): Command {
  return command.exitOverride((error: CommanderError) => process.exit(error.exitCode === 0 ? 0 : 2));
}

/** A client command: `--server`, a short hint after a usage error, and exit code 2 for usage errors. */
export function clientCommand(parent: Command, nameAndArgs: string, description: string): Command {
  const name = nameAndArgs.split(" ")[0] ?? nameAndArgs;
  const path = parent.parent ? `${parent.name()} ${name}` : name;
  return exitTwoOnUsageError(
    parent
      .command(nameAndArgs)
      .description(description)
      .option("--server <url>", "the vid2mp3 server (default: $VID2MP3_URL, else http://localhost:8080)")
      .showHelpAfterError(`(see \`vid2mp3 ${path} --help\`)`),
  );
}

// ---------------------------------------------------------------- formatting

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

export function truncate(text: string, max: number): string {
  const chars = Array.from(text);
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join("")}…`;
}

export function formatDate(iso: string): string {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}
