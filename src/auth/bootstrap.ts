import { randomBytes } from "node:crypto";
import type { Config } from "../platform/config.ts";
import type { Logger } from "../platform/logger.ts";
import { hashPassword } from "./passwords.ts";
import { DuplicateEmailError, type UsersRepository } from "./users.ts";

export const DEFAULT_ADMIN_EMAIL = "admin@vid2mp3.localhost";

export interface BootstrapOptions {
  /** Where a generated password is shown, once. Defaults to stdout, where the operator looks at first start. */
  print?: (text: string) => void;
}

/**
 * On the very first start (no users at all) creates the first administrator, so the system can be
 * used without a separate setup step. Later starts create no one, even if ADMIN_* changed (the
 * admin manages accounts through the API from then on), and say so when ADMIN_* is set.
 */
export async function ensureFirstAdmin(
  users: UsersRepository,
  config: Pick<Config, "admin">,
  logger: Logger,
  options: BootstrapOptions = {},
): Promise<void> {
  const print = options.print ?? ((text: string) => process.stdout.write(text));
  if ((await users.count()) > 0) {
    // Said out loud: a later `ADMIN_EMAIL=… ADMIN_PASSWORD=… npm start` looks as if it should work.
    const set = (["email", "password"] as const).filter((key) => config.admin[key] !== undefined);
    if (set.length > 0) {
      const names = set.map((key) => `ADMIN_${key.toUpperCase()}`).join(" and ");
      logger.warn({ ignored: names }, "users exist already; ADMIN_* ignored");
      print(
        `vid2mp3: ${names} ${set.length > 1 ? "are" : "is"} ignored: users exist already, and the first ` +
          "administrator is made only on the very first start. Change a password with `vid2mp3 passwd`, " +
          "the web page's account menu, or an administrator's reset (`vid2mp3 users reset-password`).\n",
      );
    }
    return;
  }
  const email = config.admin.email ?? DEFAULT_ADMIN_EMAIL;
  const generated = config.admin.password === undefined;
  // 18 random bytes: 144 bits, 24 URL-safe characters that survive copy and paste.
  const password = config.admin.password ?? randomBytes(18).toString("base64url");
  try {
    await users.create({ email, passwordHash: await hashPassword(password), admin: true });
  } catch (error) {
    // Another instance starting at the same moment made the admin; theirs stands.
    if (error instanceof DuplicateEmailError) return;
    throw error;
  }
  logger.info({ email, generatedPassword: generated }, "created the first administrator");
  if (generated) {
    print(framedNotice(email, password));
  }
}

function framedNotice(email: string, password: string): string {
  const lines = [
    "vid2mp3: created the first administrator account.",
    "",
    `  e-mail:   ${email}`,
    `  password: ${password}`,
    "",
    "This password is shown only this once. Log in and change it,",
    "or set ADMIN_EMAIL and ADMIN_PASSWORD before the first start.",
  ];
  const width = Math.max(...lines.map((l) => l.length));
  const border = `+${"-".repeat(width + 2)}+`;
  return `\n${[border, ...lines.map((l) => `| ${l.padEnd(width)} |`), border].join("\n")}\n\n`;
}
