import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import type { FastifyInstance } from "fastify";
import { createLocalJWKSet, importJWK, jwtVerify, SignJWT } from "jose";
import { basic, bearer, startAuthService } from "../../test/support/auth-service.ts";
import { signingKeyFile, TOKEN_AUDIENCE, TOKEN_ISSUER } from "./tokens.ts";

const ADMIN = { email: "root@example.com", password: "admin-password-1" };
const ADMIN_ENV = { ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password };

async function login(app: FastifyInstance, email: string, password: string): Promise<string> {
  const response = await app.inject({
    method: "POST",
    url: "/login",
    headers: { authorization: basic(email, password) },
  });
  assert.equal(response.statusCode, 200, response.body);
  return response.body;
}

async function createUser(app: FastifyInstance, adminToken: string, body: Record<string, unknown>) {
  return app.inject({
    method: "POST",
    url: "/users",
    headers: { authorization: bearer(adminToken) },
    payload: body,
  });
}

function assertError(response: { statusCode: number; json(): unknown }, status: number, code?: string) {
  assert.equal(response.statusCode, status);
  const body = response.json() as { error: { code: string; message: string } };
  assert.equal(typeof body.error.message, "string");
  assert.ok(body.error.message.length > 0);
  if (code) assert.equal(body.error.code, code);
  return body.error;
}

test("POST /login answers the JWT as text, or {token, expiresAt} for Accept: application/json", async (t) => {
  const { app } = await startAuthService(t, ADMIN_ENV);

  const text = await app.inject({
    method: "POST",
    url: "/login",
    headers: { authorization: basic(ADMIN.email, ADMIN.password) },
  });
  assert.equal(text.statusCode, 200);
  assert.match(text.headers["content-type"] as string, /^text\/plain/);
  assert.equal(text.headers["cache-control"], "no-store");
  assert.match(text.body, /^[\w-]+\.[\w-]+\.[\w-]+$/);

  const json = await app.inject({
    method: "POST",
    url: "/login",
    // E-mail case and surrounding spaces do not matter.
    headers: { authorization: basic(" ROOT@example.com", ADMIN.password), accept: "application/json" },
  });
  assert.equal(json.statusCode, 200);
  const { token, expiresAt } = json.json() as { token: string; expiresAt: string };
  const jwks = (await app.inject({ method: "GET", url: "/.well-known/jwks.json" })).json();
  const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), {
    issuer: TOKEN_ISSUER,
    audience: TOKEN_AUDIENCE,
  });
  assert.equal(payload.username, ADMIN.email);
  assert.equal(payload.admin, true);
  assert.equal(expiresAt, new Date((payload.exp ?? 0) * 1000).toISOString());
});

test("POST /login: 401 with a Basic challenge and one message for every kind of failure", async (t) => {
  const { app } = await startAuthService(t, ADMIN_ENV);
  const cases = {
    missing: undefined,
    "other scheme": "Bearer abc",
    "not base64 user:pass": `Basic ${Buffer.from("no-colon-here").toString("base64")}`,
    "wrong password": basic(ADMIN.email, "wrong-password"),
    "unknown e-mail": basic("nobody@example.com", ADMIN.password),
  };
  const messages = new Set<string>();
  for (const [name, authorization] of Object.entries(cases)) {
    const response = await app.inject({
      method: "POST",
      url: "/login",
      headers: authorization ? { authorization } : {},
    });
    assert.equal(response.statusCode, 401, name);
    assert.equal(response.headers["www-authenticate"], 'Basic realm="vid2mp3", charset="UTF-8"', name);
    messages.add(assertError(response, 401, "unauthorized").message);
  }
  assert.deepEqual([...messages], ["Invalid e-mail or password."]);
});

test("POST /validate: 401 without a token, 403 for a bad or expired one, 200 with the claims", async (t) => {
  const { app, dataDir } = await startAuthService(t, ADMIN_ENV);
  const token = await login(app, ADMIN.email, ADMIN.password);

  const missing = await app.inject({ method: "POST", url: "/validate" });
  assertError(missing, 401, "unauthorized");
  assert.equal(missing.headers["www-authenticate"], 'Bearer realm="vid2mp3"');

  const garbage = await app.inject({
    method: "POST",
    url: "/validate",
    headers: { authorization: bearer("x.y.z") },
  });
  assertError(garbage, 403, "invalid_token");

  // An expired token signed with the service's own key.
  const key = await importJWK(JSON.parse(await readFile(signingKeyFile(dataDir), "utf8")), "EdDSA");
  const { kid } = JSON.parse(await readFile(signingKeyFile(dataDir), "utf8"));
  const expired = await new SignJWT({ username: ADMIN.email, admin: true })
    .setProtectedHeader({ alg: "EdDSA", kid })
    .setSubject("whoever")
    .setIssuer(TOKEN_ISSUER)
    .setAudience(TOKEN_AUDIENCE)
    .setIssuedAt(Math.floor(Date.now() / 1000) - 7200)
    .setExpirationTime(Math.floor(Date.now() / 1000) - 3600)
    .setJti("old")
    .sign(key);
  const expiredResponse = await app.inject({
    method: "POST",
    url: "/validate",
    headers: { authorization: bearer(expired) },
  });
  assert.equal(assertError(expiredResponse, 403, "invalid_token").message, "The token has expired.");

  const valid = await app.inject({
    method: "POST",
    url: "/validate",
    headers: { authorization: bearer(token) },
  });
  assert.equal(valid.statusCode, 200);
  const claims = valid.json();
  assert.deepEqual(Object.keys(claims).sort(), [
    "admin",
    "aud",
    "exp",
    "gen",
    "iat",
    "iss",
    "jti",
    "sub",
    "username",
  ]);
  assert.equal(claims.username, ADMIN.email);
  assert.equal(claims.admin, true);
  assert.equal(claims.iss, TOKEN_ISSUER);
});

test("GET /.well-known/jwks.json is cacheable and publishes only public keys", async (t) => {
  const { app } = await startAuthService(t, ADMIN_ENV);
  const response = await app.inject({ method: "GET", url: "/.well-known/jwks.json" });
  assert.equal(response.statusCode, 200);
  assert.equal(response.headers["cache-control"], "public, max-age=300");
  const { keys } = response.json() as { keys: Record<string, unknown>[] };
  assert.equal(keys.length, 1);
  assert.equal(keys[0]?.d, undefined);
  assert.equal(keys[0]?.kty, "OKP");
});

test("user management is for admins only: 401 without a token, 403 for a non-admin", async (t) => {
  const { app } = await startAuthService(t, ADMIN_ENV);
  const adminToken = await login(app, ADMIN.email, ADMIN.password);
  assert.equal(
    (await createUser(app, adminToken, { email: "bob@example.com", password: "bob-password" })).statusCode,
    201,
  );
  const bobToken = await login(app, "bob@example.com", "bob-password");
  const routes = [
    { method: "POST", url: "/users", payload: { email: "eve@example.com", password: "eve-password" } },
    { method: "GET", url: "/users" },
    { method: "GET", url: "/users/00000000-0000-4000-8000-000000000000" },
    { method: "PATCH", url: "/users/00000000-0000-4000-8000-000000000000", payload: { admin: true } },
  ] as const;
  for (const route of routes) {
    const anonymous = await app.inject(route);
    assertError(anonymous, 401, "unauthorized");
    assert.equal(anonymous.headers["www-authenticate"], 'Bearer realm="vid2mp3"');
    assertError(
      await app.inject({ ...route, headers: { authorization: bearer(bobToken) } }),
      403,
      "forbidden",
    );
    assertError(
      await app.inject({ ...route, headers: { authorization: bearer("nope") } }),
      403,
      "invalid_token",
    );
  }
});

test("POST /users creates a user (201), refuses duplicates (409) and invalid bodies (400)", async (t) => {
  const { app } = await startAuthService(t, ADMIN_ENV);
  const adminToken = await login(app, ADMIN.email, ADMIN.password);

  const created = await createUser(app, adminToken, {
    email: " Carol@Example.com",
    password: "carol-password",
    admin: true,
  });
  assert.equal(created.statusCode, 201);
  const carol = created.json();
  assert.deepEqual(Object.keys(carol).sort(), ["admin", "createdAt", "disabled", "email", "id", "updatedAt"]);
  assert.equal(carol.email, "carol@example.com");
  assert.equal(carol.admin, true);
  assert.equal(carol.disabled, false);
  assert.equal(created.headers.location, `/users/${carol.id}`);
  assert.doesNotMatch(created.body, /argon2|password/i);

  const duplicate = await createUser(app, adminToken, {
    email: "CAROL@example.com",
    password: "another-password",
  });
  assertError(duplicate, 409, "email_taken");

  const invalid: [Record<string, unknown>, RegExp][] = [
    [{ email: "not-an-email", password: "long-enough" }, /email must be a valid e-mail address/],
    [{ email: "dave@example.com", password: "short" }, /password must be at least 8 characters/],
    [{ password: "long-enough" }, /email is required/],
    [{ email: "dave@example.com", password: "long-enough", admin: "yes" }, /admin must be true or false/],
    [{ email: "dave@example.com", password: "long-enough", role: "admin" }, /unknown field role/],
  ];
  for (const [body, message] of invalid) {
    const response = await createUser(app, adminToken, body);
    assert.match(assertError(response, 400, "bad_request").message, message);
  }
  const notJson = await app.inject({
    method: "POST",
    url: "/users",
    headers: { authorization: bearer(adminToken), "content-type": "application/json" },
    payload: "{oops",
  });
  assertError(notJson, 400);
  const noBody = await app.inject({
    method: "POST",
    url: "/users",
    headers: { authorization: bearer(adminToken) },
  });
  assert.match(assertError(noBody, 400).message, /the body must be a JSON object/);
});

test("GET /users pages newest first; GET /users/:id finds one or answers 404", async (t) => {
  const { app } = await startAuthService(t, ADMIN_ENV);
  const adminToken = await login(app, ADMIN.email, ADMIN.password);
  const auth = { authorization: bearer(adminToken) };
  for (const name of ["u1", "u2", "u3"]) {
    await createUser(app, adminToken, { email: `${name}@example.com`, password: "a-password" });
  }

  const all = await app.inject({ method: "GET", url: "/users", headers: auth });
  assert.equal(all.statusCode, 200);
  const { users, total } = all.json() as { users: { id: string; email: string }[]; total: number };
  assert.equal(total, 4);
  assert.deepEqual(
    users.map((u) => u.email),
    ["u3@example.com", "u2@example.com", "u1@example.com", ADMIN.email],
  );
  assert.doesNotMatch(all.body, /argon2|passwordHash|password_hash/);

  const page = await app.inject({ method: "GET", url: "/users?limit=2&offset=1", headers: auth });
  assert.deepEqual(
    page.json().users.map((u: { email: string }) => u.email),
    ["u2@example.com", "u1@example.com"],
  );
  assert.equal(page.json().total, 4);
  assert.match(
    assertError(await app.inject({ method: "GET", url: "/users?limit=0", headers: auth }), 400).message,
    /limit must be at least 1/,
  );
  assertError(await app.inject({ method: "GET", url: "/users?offset=-1", headers: auth }), 400);

  const first = users[2];
  const one = await app.inject({ method: "GET", url: `/users/${first?.id}`, headers: auth });
  assert.equal(one.statusCode, 200);
  assert.equal(one.json().email, "u1@example.com");
  assertError(
    await app.inject({ method: "GET", url: "/users/00000000-0000-4000-8000-000000000000", headers: auth }),
    404,
    "not_found",
  );
  assertError(
    await app.inject({ method: "GET", url: "/users/not-a-uuid", headers: auth }),
    400,
    "bad_request",
  );
});

test("PATCH /users/:id disables (no more login, tokens refused), resets passwords and grants admin", async (t) => {
  const { app } = await startAuthService(t, ADMIN_ENV);
  const adminToken = await login(app, ADMIN.email, ADMIN.password);
  const auth = { authorization: bearer(adminToken) };
  const dan = (
    await createUser(app, adminToken, { email: "dan@example.com", password: "dan-password" })
  ).json();
  const danToken = await login(app, "dan@example.com", "dan-password");
  const patch = (id: string, payload: unknown) =>
    app.inject({ method: "PATCH", url: `/users/${id}`, headers: auth, payload: payload as object });

  const disabled = await patch(dan.id, { disabled: true });
  assert.equal(disabled.statusCode, 200);
  assert.equal(disabled.json().disabled, true);
  const refused = await app.inject({
    method: "POST",
    url: "/login",
    headers: { authorization: basic("dan@example.com", "dan-password") },
  });
  assert.equal(assertError(refused, 401).message, "Invalid e-mail or password.");
  const validate = await app.inject({
    method: "POST",
    url: "/validate",
    headers: { authorization: bearer(danToken) },
  });
  assertError(validate, 403, "account_disabled");

  assert.equal((await patch(dan.id, { disabled: false, password: "new-dan-password" })).statusCode, 200);
  const oldPassword = await app.inject({
    method: "POST",
    url: "/login",
    headers: { authorization: basic("dan@example.com", "dan-password") },
  });
  assertError(oldPassword, 401);
  const newToken = await login(app, "dan@example.com", "new-dan-password");

  const promoted = await patch(dan.id, { admin: true });
  assert.equal(promoted.json().admin, true);
  assert.ok(promoted.json().updatedAt > dan.updatedAt);
  // The admin right is read from the account, so even the token from before the promotion works now.
  const list = await app.inject({
    method: "GET",
    url: "/users",
    headers: { authorization: bearer(newToken) },
  });
  assert.equal(list.statusCode, 200);

  assert.match(
    assertError(await patch(dan.id, {}), 400).message,
    /send at least one of disabled, password, admin/,
  );
  assert.match(
    assertError(await patch(dan.id, { password: "short" }), 400).message,
    /password must be at least 8/,
  );
  assert.match(assertError(await patch(dan.id, { disable: true }), 400).message, /unknown field disable/);
  assertError(await patch("00000000-0000-4000-8000-000000000000", { admin: true }), 404, "not_found");

  const root = (await app.inject({ method: "POST", url: "/validate", headers: auth })).json();
  assertError(await patch(root.sub, { disabled: true }), 409, "self_lockout");
  assertError(await patch(root.sub, { admin: false }), 409, "self_lockout");
});

test("POST /register is 403 while registration is closed", async (t) => {
  const { app } = await startAuthService(t, ADMIN_ENV);
  const response = await app.inject({
    method: "POST",
    url: "/register",
    payload: { email: "new@example.com", password: "new-password" },
  });
  assert.match(assertError(response, 403, "registration_closed").message, /closed/);
});

test("POST /register with REGISTRATION=open creates a non-admin who can log in", async (t) => {
  const { app } = await startAuthService(t, { ...ADMIN_ENV, REGISTRATION: "open" });
  const register = (payload: object) => app.inject({ method: "POST", url: "/register", payload });

  const response = await register({ email: "New@Example.com", password: "new-password" });
  assert.equal(response.statusCode, 201);
  assert.equal(response.json().email, "new@example.com");
  assert.equal(response.json().admin, false);
  await login(app, "new@example.com", "new-password");

  assertError(await register({ email: "new@example.com", password: "new-password" }), 409, "email_taken");
  assertError(await register({ email: "x@example.com", password: "new-password", admin: true }), 400);
  assert.match(
    assertError(await register({ email: "bad", password: "1234" }), 400).message,
    /e-mail.*8 characters/,
  );
});

test("HS256 mode (JWT_SECRET): login and validate work, the JWKS is empty", async (t) => {
  const { app } = await startAuthService(t, { ...ADMIN_ENV, JWT_SECRET: "x".repeat(32) });
  const token = await login(app, ADMIN.email, ADMIN.password);
  const valid = await app.inject({
    method: "POST",
    url: "/validate",
    headers: { authorization: bearer(token) },
  });
  assert.equal(valid.statusCode, 200);
  assert.equal(valid.json().username, ADMIN.email);
  assert.deepEqual((await app.inject({ method: "GET", url: "/.well-known/jwks.json" })).json(), { keys: [] });
});

test("/healthz and /readyz answer, /readyz checks the database", async (t) => {
  const { app, db } = await startAuthService(t, ADMIN_ENV);
  assert.deepEqual((await app.inject({ method: "GET", url: "/healthz" })).json(), { status: "ok" });
  const ready = await app.inject({ method: "GET", url: "/readyz" });
  assert.equal(ready.statusCode, 200);
  assert.equal(ready.json().checks[0].name, "database");
  assert.ok(db);
});

test("over a real socket, /login and /validate ignore whatever body a client sends along", async (t) => {
  const { app } = await startAuthService(t, ADMIN_ENV);
  await app.listen({ host: "127.0.0.1", port: 0 });
  const address = app.server.address();
  assert.ok(address && typeof address === "object");
  const base = `http://127.0.0.1:${address.port}`;

  const login = await fetch(`${base}/login`, {
    method: "POST",
    headers: { authorization: basic(ADMIN.email, ADMIN.password), "content-type": "application/json" },
  });
  assert.equal(login.status, 200);
  const token = await login.text();

  const validate = await fetch(`${base}/validate`, {
    method: "POST",
    headers: { authorization: bearer(token), "content-type": "application/x-www-form-urlencoded" },
    body: "a=b",
  });
  assert.equal(validate.status, 200);
  assert.equal(((await validate.json()) as { username: string }).username, ADMIN.email);
});

test("failed logins for one e-mail from one address are throttled with 429, others are not", async (t) => {
  let now = Date.now();
  // In-process requests come from 127.0.0.1: trusted here as the gateway would be.
  const { app } = await startAuthService(
    t,
    { ...ADMIN_ENV, TRUST_PROXY: "127.0.0.1" },
    {
      loginThrottle: { maxFailures: 3, windowMs: 60_000, now: () => now },
    },
  );
  const login = (password: string, address = "203.0.113.7") =>
    app.inject({
      method: "POST",
      url: "/login",
      headers: { authorization: basic(ADMIN.email, password), "x-forwarded-for": address },
    });

  for (let i = 0; i < 3; i++) assert.equal((await login("wrong-password")).statusCode, 401);
  const refused = await login(ADMIN.password);
  assert.equal(refused.statusCode, 429, "even the right password waits");
  assert.equal(refused.headers["retry-after"], "60");
  assert.equal(refused.json().error.code, "too_many_attempts");
  assert.equal(
    (await login(ADMIN.password, "198.51.100.9")).statusCode,
    200,
    "the owner elsewhere is not locked out",
  );

  now += 60_000;
  assert.equal((await login(ADMIN.password)).statusCode, 200, "the window has passed");
  for (let i = 0; i < 2; i++) assert.equal((await login("wrong-password")).statusCode, 401);
  assert.equal((await login(ADMIN.password)).statusCode, 200, "a success clears the count");
  for (let i = 0; i < 2; i++) assert.equal((await login("wrong-password")).statusCode, 401);
  assert.equal((await login(ADMIN.password)).statusCode, 200);
});

test("failed logins from one address across many e-mails are throttled; other addresses are not", async (t) => {
  const { app } = await startAuthService(
    t,
    { ...ADMIN_ENV, TRUST_PROXY: "127.0.0.1" },
    {
      addressThrottle: { maxFailures: 5, windowMs: 60_000 },
    },
  );
  const login = (email: string, password: string, address: string) =>
    app.inject({
      method: "POST",
      url: "/login",
      headers: { authorization: basic(email, password), "x-forwarded-for": address },
    });
  // Concurrent guesses count in full: they are counted before their password is checked.
  const burst = await Promise.all(
    Array.from({ length: 12 }, (_, i) => login(`nobody-${i}@example.com`, "guess-guess", "203.0.113.7")),
  );
  const codes = burst.map((r) => r.statusCode).sort();
  assert.equal(codes.filter((c) => c === 401).length, 5, codes.join(","));
  assert.equal(codes.filter((c) => c === 429).length, 7, codes.join(","));
  assert.equal((await login(ADMIN.email, ADMIN.password, "203.0.113.7")).statusCode, 429);
  assert.equal(
    (await login(ADMIN.email, ADMIN.password, "198.51.100.9")).statusCode,
    200,
    "elsewhere is fine",
  );
});

test("X-Forwarded-For is believed only from TRUST_PROXY: a client cannot pick its address", async (t) => {
  // In-process requests come from 127.0.0.1, which is not the trusted proxy here.
  const { app } = await startAuthService(
    t,
    { ...ADMIN_ENV, TRUST_PROXY: "192.0.2.1" },
    { loginThrottle: { maxFailures: 3, windowMs: 60_000 } },
  );
  for (let i = 0; i < 5; i++) {
    const response = await app.inject({
      method: "POST",
      url: "/login",
      headers: { authorization: basic(ADMIN.email, "wrong-password"), "x-forwarded-for": `198.51.100.${i}` },
    });
    assert.equal(response.statusCode, i < 3 ? 401 : 429, `attempt ${i}`);
  }
});

test("without TRUST_PROXY, auth believes X-Forwarded-For from loopback (where the gateway calls from): a throttled address does not lock out others", async (t) => {
  // In-process requests come from 127.0.0.1; TRUST_PROXY is unset.
  const { app } = await startAuthService(t, ADMIN_ENV, {
    loginThrottle: { maxFailures: 3, windowMs: 60_000 },
  });
  const login = (password: string, address: string) =>
    app.inject({
      method: "POST",
      url: "/login",
      headers: { authorization: basic(ADMIN.email, password), "x-forwarded-for": address },
    });
  for (let i = 0; i < 3; i++) assert.equal((await login("wrong-password", "203.0.113.7")).statusCode, 401);
  assert.equal((await login(ADMIN.password, "203.0.113.7")).statusCode, 429, "the guessing address waits");
  assert.equal(
    (await login(ADMIN.password, "198.51.100.9")).statusCode,
    200,
    "another client is not locked out",
  );
});

test("a burst of logins is bounded: beyond the hashing queue it is 503 with Retry-After at once, and then served again", async (t) => {
  const { app } = await startAuthService(t, { ...ADMIN_ENV, TRUST_PROXY: "127.0.0.1" });
  const login = (i: number) =>
    app.inject({
      method: "POST",
      url: "/login",
      headers: {
        authorization: basic(`nobody-${i}@example.com`, "guess-guess"),
        "x-forwarded-for": `10.0.${i >> 8}.${i & 255}`,
      },
    });
  const burst = await Promise.all(Array.from({ length: 60 }, (_, i) => login(i)));
  const busy = burst.filter((r) => r.statusCode === 503);
  assert.ok(busy.length > 0, "some were refused rather than queued without end");
  for (const r of busy) {
    assert.equal(r.headers["retry-after"], "1", `${r.body} ${JSON.stringify(r.headers)}`);
    assert.equal(r.json().error.code, "busy");
  }
  assert.ok(burst.every((r) => r.statusCode === 401 || r.statusCode === 503));
  assert.equal((await login(1000)).statusCode, 401, "answered normally once the burst is over");
});
