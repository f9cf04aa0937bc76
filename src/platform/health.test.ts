import assert from "node:assert/strict";
import { test } from "node:test";
import { createHttpServer, registerHealthRoutes } from "./http.ts";
import { createLogger } from "./logger.ts";

async function appWith(checks: Parameters<typeof registerHealthRoutes>[1]) {
  const app = await createHttpServer(createLogger("silent", "test"), {});
  registerHealthRoutes(app, checks);
  return app;
}

test("/readyz is 200 `ready` while every backend answers", async (t) => {
  const app = await appWith([{ name: "database", check: async () => {} }]);
  t.after(() => app.close());
  const ready = await app.inject({ method: "GET", url: "/readyz" });
  assert.equal(ready.statusCode, 200);
  assert.deepEqual(ready.json(), { status: "ready", checks: [{ name: "database", ok: true }] });
});

test("a backend outage leaves the pod ready (`degraded`, naming the backend): the app answers its own 503s", async (t) => {
  const app = await appWith([
    { name: "database", check: async () => {} },
    {
      name: "broker",
      check: async () => {
        throw new Error("connection refused");
      },
    },
  ]);
  t.after(() => app.close());
  const ready = await app.inject({ method: "GET", url: "/readyz" });
  assert.equal(ready.statusCode, 200);
  assert.deepEqual(ready.json(), {
    status: "degraded",
    checks: [
      { name: "database", ok: true },
      { name: "broker", ok: false, error: "connection refused" },
    ],
  });
});

test("a backend that never answers is reported after a bounded wait, not a probe time-out", async (t) => {
  const app = await appWith([{ name: "blobs", check: () => new Promise<void>(() => {}) }]);
  t.after(() => app.close());
  const started = Date.now();
  const ready = await app.inject({ method: "GET", url: "/readyz" });
  const elapsed = Date.now() - started;
  assert.equal(ready.statusCode, 200);
  assert.equal(ready.json().status, "degraded");
  assert.match(ready.json().checks[0].error, /no answer within/);
  assert.ok(elapsed < 10_000, `answered after ${elapsed} ms`);
});
