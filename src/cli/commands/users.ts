import type { Command } from "commander";
import type { ApiClient, User } from "../api-client.ts";
import {
  action,
  CliError,
  clientCommand,
  exitTwoOnUsageError,
  formatDate,
  loggedIn,
  readPassword,
  result,
  type ServerOption,
  table,
  tell,
  UsageError,
} from "../command-kit.ts";
import { UUID } from "../job-ids.ts";

/** `vid2mp3 users list|add|disable|enable|reset-password` (administrators). */
export function registerUserCommands(program: Command): void {
  const users = exitTwoOnUsageError(
    program
      .command("users")
      .description("Manage user accounts (administrators only).")
      .showHelpAfterError("(see `vid2mp3 users --help`)"),
  );

  clientCommand(users, "list", "List the accounts.")
    .option("--json", "print the API's JSON")
    .action(action(listUsers));

  clientCommand(users, "add <email>", "Create an account; prints its id.")
    .option("--admin", "make it an administrator")
    .option("--password-stdin", "read its password from standard input (else asked for twice)")
    .action(action(addUser));

  clientCommand(
    users,
    "disable <user>",
    "Disable an account (by id or e-mail): it can no longer log in.",
  ).action(action((user: string, options: ServerOption) => setDisabled(user, true, options)));

  clientCommand(users, "enable <user>", "Enable a disabled account again (by id or e-mail).").action(
    action((user: string, options: ServerOption) => setDisabled(user, false, options)),
  );

  clientCommand(users, "reset-password <user>", "Give an account (by id or e-mail) a new password.")
    .option("--password-stdin", "read the new password from standard input (else asked for twice)")
    .action(action(resetPassword));
}

async function listUsers(options: ServerOption & { json?: boolean }): Promise<void> {
  const api = await loggedIn(options);
  const users = await allUsers(api);
  if (options.json) {
    result(JSON.stringify(users, null, 2));
    return;
  }
  const rows = users.map((user) => [
    user.id,
    user.email,
    user.admin ? "admin" : "user",
    user.disabled ? "disabled" : "active",
    formatDate(user.createdAt),
  ]);
  result(table(["ID", "E-MAIL", "ROLE", "STATE", "CREATED"], rows));
}

async function addUser(
  email: string,
  options: ServerOption & { admin?: boolean; passwordStdin?: boolean },
): Promise<void> {
  const api = await loggedIn(options);
  const password = await readPassword(options, `Password for ${email}: `, undefined, true);
  const user = await api.createUser(email, password, options.admin ?? false);
  tell(`Created ${user.admin ? "admin" : "user"} ${user.email}.`);
  result(user.id);
}

async function setDisabled(idOrEmail: string, disabled: boolean, options: ServerOption): Promise<void> {
  checkUserRef(idOrEmail);
  const api = await loggedIn(options);
  const user = await api.updateUser(await userId(api, idOrEmail), { disabled });
  tell(`${disabled ? "Disabled" : "Enabled"} ${user.email} (${user.id}).`);
}

async function resetPassword(
  idOrEmail: string,
  options: ServerOption & { passwordStdin?: boolean },
): Promise<void> {
  checkUserRef(idOrEmail);
  const api = await loggedIn(options);
  const id = await userId(api, idOrEmail);
  const password = await readPassword(options, `New password for ${idOrEmail}: `, undefined, true);
  const user = await api.updateUser(id, { password });
  tell(`Set a new password for ${user.email}; the tokens issued before stop working.`);
}

function checkUserRef(idOrEmail: string): void {
  if (!UUID.test(idOrEmail) && !idOrEmail.includes("@")) {
    throw new UsageError(`"${idOrEmail}" is neither a user id nor an e-mail.`);
  }
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
  const wanted = idOrEmail.trim().toLowerCase();
  const user = (await allUsers(api)).find((candidate) => candidate.email.toLowerCase() === wanted);
  if (!user) throw new CliError(`No user with the e-mail ${idOrEmail}.`);
  return user.id;
}
