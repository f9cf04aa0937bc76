import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TestContext } from "node:test";
import type { Kysely } from "kysely";
import type { AuthDatabase } from "../../src/auth/migrations.ts";
import { type AuthService, type AuthServiceDeps, createAuthService } from "../../src/auth/service.ts";
import { loadConfig } from "../../src/platform/config.ts";
import { openDatabase } from "../../src/platform/database.ts";
import { createLogger } from "../../src/platform/logger.ts";

/** A fresh data dir for one test, removed when the test ends. */
export async function tempDataDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-auth-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export interface TestAuthService extends AuthService {
  dataDir: string;
  db: Kysely<AuthDatabase>;
  printed: string[];
}

/**
 * An auth service on a real SQLite file in a temp dir. `env` adds to DATA_DIR; pass `dataDir` to
 * start a second instance on the same files.
 */
export async function startAuthService(
  t: TestContext,
  env: Record<string, string> = {},
  options: {
    dataDir?: string;
    tokens?: AuthServiceDeps["tokens"];
    loginThrottle?: AuthServiceDeps["loginThrottle"];
    addressThrottle?: AuthServiceDeps["addressThrottle"];
  } = {},
): Promise<TestAuthService> {
  const dataDir = options.dataDir ?? (await tempDataDir(t));
  const config = loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: "silent", ...env });
  const db = openDatabase<AuthDatabase>({ sqliteFile: path.join(dataDir, "auth.sqlite") });
  const printed: string[] = [];
  const service = await createAuthService(config, {
    logger: createLogger("silent", "auth"),
    db,
    bootstrap: { print: (text) => printed.push(text) },
    tokens: options.tokens,
    loginThrottle: options.loginThrottle,
    addressThrottle: options.addressThrottle,
  });
  t.after(async () => {
    await service.close();
    await db.destroy();
  });
  return { ...service, dataDir, db, printed };
}

export function basic(email: string, password: string): string {
  return `Basic ${Buffer.from(`${email}:${password}`).toString("base64")}`;
}

export function bearer(token: string): string {
  return `Bearer ${token}`;
}
