import type { Command } from "commander";
import { ApiClient, ApiError } from "../api-client.ts";
import {
  action,
  askPassword,
  CliError,
  clientCommand,
  credentialsStore,
  loggedIn,
  readPassword,
  readPasswordLines,
  resolveServer,
  type ServerOption,
  tell,
  UsageError,
} from "../command-kit.ts";
import { serverKey } from "../credentials.ts";
import { canPrompt, promptVisible } from "../prompt.ts";

/** `vid2mp3 login`, `logout` and `passwd`. */
export function registerAccountCommands(program: Command): void {
  clientCommand(program, "login", "Log in to a vid2mp3 server and keep the token for the other commands.")
    .option("--email <email>", "your e-mail (asked for when missing)")
    .option("--password-stdin", "read the password from standard input (for scripts)")
    .addHelpText(
      "after",
      `
The password is asked for on the terminal without echo, or read from $VID2MP3_PASSWORD or, with
--password-stdin, from standard input. The token is kept per server in
$XDG_CONFIG_HOME/vid2mp3/credentials.json (default ~/.config/vid2mp3/, readable only by you).

Examples:
  vid2mp3 login --email me@example.com
  echo "$PASSWORD" | vid2mp3 login --server https://vid2mp3.example.com --email me@example.com --password-stdin`,
    )
    .action(action(login));

  clientCommand(program, "logout", "Forget the token kept for a server.").action(action(logout));

  clientCommand(program, "passwd", "Change your password (and stay logged in with the new one).")
    .option("--password-stdin", "read the current and the new password from standard input, one a line")
    .addHelpText(
      "after",
      `
Asks for your current password, then the new one twice, on the terminal without echo. Tokens
issued before stop working (on other machines too, within a minute); this machine logs in again
with the new password.

Example for scripts:
  printf '%s\\n%s\\n' "$OLD" "$NEW" | vid2mp3 passwd --password-stdin`,
    )
    .action(action(passwd));
}

async function login(options: ServerOption & { email?: string; passwordStdin?: boolean }): Promise<void> {
  const server = resolveServer(options.server);
  const credentials = credentialsStore();
  let email = options.email ?? (await credentials.get(server))?.email;
  if (!email) {
    if (!canPrompt()) throw new UsageError("Give your e-mail with --email.");
    email = await promptVisible("E-mail: ");
    if (!email) throw new UsageError("No e-mail given.");
  }
  const password = await readPassword(options, `Password for ${email}: `, "VID2MP3_PASSWORD");
  const expiresAt = await logInAndKeep(server, email, password);
  const until = expiresAt ? ` until ${new Date(expiresAt).toLocaleString()}` : "";
  tell(`Logged in to ${serverKey(server)} as ${email}${until}.`);
}

/** Logs in and keeps the token for the server; answers when it expires. */
async function logInAndKeep(server: URL, email: string, password: string): Promise<string | null> {
  let issued: { token: string; expiresAt?: string };
  try {
    issued = await new ApiClient(server).login(email, password);
  } catch (error) {
    // "Invalid e-mail or password." needs no advice to log in again.
    if (error instanceof ApiError && error.status === 401) throw new CliError(error.message);
    throw error;
  }
  const expiresAt = issued.expiresAt ?? null;
  await credentialsStore().set(server, {
    token: issued.token,
    email,
    expiresAt,
    savedAt: new Date().toISOString(),
  });
  return expiresAt;
}

async function logout(options: ServerOption): Promise<void> {
  const server = resolveServer(options.server);
  const removed = await credentialsStore().delete(server);
  tell(removed ? `Logged out of ${serverKey(server)}.` : `You were not logged in to ${serverKey(server)}.`);
}

async function passwd(options: ServerOption & { passwordStdin?: boolean }): Promise<void> {
  const api = await loggedIn(options);
  const [current, next] = options.passwordStdin
    ? ((await readPasswordLines(2)) as [string, string])
    : [await askPassword("Current password: "), await askPassword("New password: ", undefined, true)];
  if (current === next) throw new UsageError("The new password is the same as the current one.");
  try {
    await api.changePassword(current, next);
  } catch (error) {
    // A wrong current password is not a reason to log in again.
    if (error instanceof ApiError && error.code === "wrong_password") throw new CliError(error.message);
    throw error;
  }
  const server = resolveServer(options.server);
  const stored = process.env.VID2MP3_TOKEN ? undefined : await credentialsStore().get(server);
  if (!stored) {
    tell("Password changed. Tokens issued before no longer work: get a new one with the new password.");
    return;
  }
  await logInAndKeep(server, stored.email, next);
  tell(`Password changed; logged in to ${serverKey(server)} again with the new one.`);
}
