import assert from "node:assert/strict";
import { test } from "node:test";
import type { FastifyInstance } from "fastify";
import { basic, bearer, startAuthService } from "../../test/support/auth-service.ts";
import { DEFAULT_ADMIN_EMAIL } from "./bootstrap.ts";

async function loginClaims(app: FastifyInstance, email: string, password: string) {
  const login = await app.inject({
    method: "POST",
    url: "/login",
    headers: { authorization: basic(email, password) },
  });
  assert.equal(login.statusCode, 200, login.body);
  return (
    await app.inject({ method: "POST", url: "/validate", headers: { authorization: bearer(login.body) } })
  ).json();
}

async function userCount(app: FastifyInstance, email: string, password: string): Promise<number> {
  const token = (
    await app.inject({ method: "POST", url: "/login", headers: { authorization: basic(email, password) } })
  ).body;
  return (
    await app.inject({ method: "GET", url: "/users", headers: { authorization: bearer(token) } })
  ).json().total;
}

test("first start creates the configured admin and prints nothing", async (t) => {
  const service = await startAuthService(t, {
    ADMIN_EMAIL: "Boss@Example.com",
    ADMIN_PASSWORD: "configured-pw",
  });
  const claims = await loginClaims(service.app, "boss@example.com", "configured-pw");
  assert.equal(claims.admin, true);
  assert.deepEqual(service.printed, []);
});

test("without ADMIN_PASSWORD a strong password is generated, shown once in a frame, never again", async (t) => {
  const first = await startAuthService(t);
  assert.equal(first.printed.length, 1);
  const notice = first.printed[0] ?? "";
  assert.match(notice, /^\n\+-+\+\n/);
  assert.match(notice, /shown only this once/);
  assert.ok(notice.includes(`e-mail:   ${DEFAULT_ADMIN_EMAIL}`));
  const password = /password: (\S+)/.exec(notice)?.[1] ?? "";
  assert.match(password, /^[A-Za-z0-9_-]{24}$/);
  assert.equal((await loginClaims(first.app, DEFAULT_ADMIN_EMAIL, password)).admin, true);
  await first.close();

  // Second start on the same data: the admin exists, nothing new is created or printed.
  const second = await startAuthService(t, {}, { dataDir: first.dataDir });
  assert.deepEqual(second.printed, []);
  assert.equal(await userCount(second.app, DEFAULT_ADMIN_EMAIL, password), 1);
});

test("ADMIN_EMAIL without a password: that e-mail with a generated password", async (t) => {
  const service = await startAuthService(t, { ADMIN_EMAIL: "ops@example.com" });
  const notice = service.printed.join("");
  assert.ok(notice.includes("e-mail:   ops@example.com"));
  const password = /password: (\S+)/.exec(notice)?.[1] ?? "";
  assert.equal((await loginClaims(service.app, "ops@example.com", password)).username, "ops@example.com");
});

test("once users exist, a changed ADMIN_* on a later start creates no one", async (t) => {
  const first = await startAuthService(t, {
    ADMIN_EMAIL: "first@example.com",
    ADMIN_PASSWORD: "first-password",
  });
  await first.close();
  const second = await startAuthService(
    t,
    { ADMIN_EMAIL: "second@example.com", ADMIN_PASSWORD: "second-password" },
    { dataDir: first.dataDir },
  );
  const refused = await second.app.inject({
    method: "POST",
    url: "/login",
    headers: { authorization: basic("second@example.com", "second-password") },
  });
  assert.equal(refused.statusCode, 401);
  assert.equal(await userCount(second.app, "first@example.com", "first-password"), 1);
  assert.equal(second.printed.length, 1, "a warning that ADMIN_* is ignored");
  assert.match(
    second.printed[0] ?? "",
    /^vid2mp3: ADMIN_EMAIL and ADMIN_PASSWORD are ignored: users exist already/,
  );
  assert.match(second.printed[0] ?? "", /vid2mp3 passwd/);

  const third = await startAuthService(t, {}, { dataDir: first.dataDir });
  assert.deepEqual(third.printed, [], "no warning without ADMIN_*");
});
