import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { describe, type TestContext, test } from "node:test";
import { basic, tempDataDir } from "../../test/support/auth-service.ts";
import { createTestDatabase } from "../../test/support/mariadb.ts";
import { startTcpProxy, type TcpProxy } from "../../test/support/tcp-proxy.ts";
import { loadConfig } from "../platform/config.ts";
import { openDatabase } from "../platform/database.ts";
import { createLogger } from "../platform/logger.ts";
import type { AuthDatabase } from "./migrations.ts";
import { createAuthService } from "./service.ts";

const ADMIN = { email: "admin@example.com", password: "correct horse battery" };
const UNAVAILABLE = {
  error: { code: "database_unavailable", message: "The database is not reachable; try again shortly." },
};

/** The auth service on a fresh MariaDB database, reached through a proxy the test can cut. */
async function authBehindProxy(t: TestContext): Promise<{ proxy: TcpProxy; baseUrl: string }> {
  const database = await createTestDatabase();
  t.after(() => database.drop());
  const url = new URL(database.url);
  const proxy = await startTcpProxy(Number(url.port || 3306));
  t.after(() => proxy.close());
  url.port = String(proxy.port);
  const db = openDatabase<AuthDatabase>({
    url: url.toString(),
    sqliteFile: "/nonexistent/unused.sqlite",
    mysql: { connectTimeoutMs: 1000, queryTimeoutMs: 1500 },
  });
  const config = loadConfig({
    DATA_DIR: await tempDataDir(t),
    LOG_LEVEL: "silent",
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
  });
  const service = await createAuthService(config, { logger: createLogger("silent", "auth"), db });
  t.after(async () => {
    await service.close();
    await db.destroy();
  });
  await service.app.listen({ host: "127.0.0.1", port: 0 });
  const { port } = service.app.server.address() as AddressInfo;
  return { proxy, baseUrl: `http://127.0.0.1:${port}` };
}

async function login(baseUrl: string): Promise<{ status: number; body: unknown; ms: number }> {
  const started = Date.now();
  const response = await fetch(`${baseUrl}/login`, {
    method: "POST",
    headers: { authorization: basic(ADMIN.email, ADMIN.password), accept: "application/json" },
    signal: AbortSignal.timeout(10_000),
  });
  return { status: response.status, body: await response.json(), ms: Date.now() - started };
}

describe("auth on MariaDB when the database goes away", () => {
  test("login answers 503 database_unavailable while it is down (refused), then works again by itself", async (t) => {
    const { proxy, baseUrl } = await authBehindProxy(t);
    const before = await login(baseUrl);
    assert.equal(before.status, 200, JSON.stringify(before.body));

    await proxy.pause();
    for (let i = 0; i < 3; i++) {
      const down = await login(baseUrl);
      assert.equal(down.status, 503);
      assert.deepEqual(down.body, UNAVAILABLE);
      assert.ok(down.ms < 3000, `answered after ${down.ms} ms`);
    }
    // Still ready: the pod answers its own 503s; the readiness body names the database.
    const ready = await fetch(`${baseUrl}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal(((await ready.json()) as { status: string }).status, "degraded");

    await proxy.resume();
    const after = await login(baseUrl);
    assert.equal(after.status, 200, JSON.stringify(after.body));
    assert.equal(((await (await fetch(`${baseUrl}/readyz`)).json()) as { status: string }).status, "ready");
  });

  test("a database that goes silent (no answer, nothing closed) gives 503 within the timeouts, not a hang", async (t) => {
    const { proxy, baseUrl } = await authBehindProxy(t);
    assert.equal((await login(baseUrl)).status, 200);

    await proxy.pause("hang");
    const results = await Promise.all([login(baseUrl), login(baseUrl), login(baseUrl)]);
    for (const down of results) {
      assert.equal(down.status, 503);
      assert.deepEqual(down.body, UNAVAILABLE);
      assert.ok(down.ms < 5000, `answered after ${down.ms} ms`);
    }

    await proxy.resume();
    const after = await login(baseUrl);
    assert.equal(after.status, 200, JSON.stringify(after.body));
  });
});
