import assert from "node:assert/strict";
import { test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { basic, bearer, startAuthService } from "../../test/support/auth-service.ts";
import { HttpError } from "../platform/http.ts";
import { createLogger } from "../platform/logger.ts";
import { injectServiceFetch, type ServiceFetch } from "../platform/service-fetch.ts";
import { createJwksVerifier } from "./authentication.ts";
import { withRevocationCheck } from "./revocation-check.ts";

/**
 * A gateway replica that did not forward the change itself learns of it from auth within its
 * recheck time (30 s by default; short here). The real auth service answers, in-process.
 */

const ADMIN = { email: "root@example.com", password: "admin-password-1" };

test("a replica refuses a token revoked elsewhere after its recheck time, and asks auth once per token meanwhile", async (t) => {
  const auth = await startAuthService(t, { ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
  const inject = injectServiceFetch(auth.app);
  let validations = 0;
  const authFetch: ServiceFetch = (path, init) => {
    if (path === "/validate") validations++;
    return inject(path, init);
  };
  const verifier = withRevocationCheck(createJwksVerifier(authFetch), authFetch, {
    logger: createLogger("silent", "test"),
    recheckMs: 2000,
  });
  const login = async (password: string) =>
    (
      await auth.app.inject({
        method: "POST",
        url: "/login",
        headers: { authorization: basic(ADMIN.email, password) },
      })
    ).body;
  const token = await login(ADMIN.password);

  for (let i = 0; i < 20; i++) assert.equal((await verifier.verify(token)).email, ADMIN.email);
  assert.equal(validations, 1, "auth is asked once per token within the recheck time");

  const changed = await auth.app.inject({
    method: "POST",
    url: "/me/password",
    headers: { authorization: bearer(token) },
    payload: { currentPassword: ADMIN.password, newPassword: "second-password-2" },
  });
  assert.equal(changed.statusCode, 204);
  await sleep(2100);
  await assert.rejects(verifier.verify(token), (error: unknown) => {
    assert.ok(error instanceof HttpError);
    assert.equal(error.statusCode, 403);
    assert.equal(error.code, "token_revoked");
    return true;
  });
  const asked = validations;
  await assert.rejects(verifier.verify(token));
  assert.equal(validations, asked, "a refusal is remembered: revoked tokens never come back");
  assert.equal((await verifier.verify(await login("second-password-2"))).email, ADMIN.email);
});

test("with auth unreachable for /validate, a correctly signed token is still accepted (no lock-out during an outage)", async (t) => {
  const auth = await startAuthService(t, { ADMIN_EMAIL: ADMIN.email, ADMIN_PASSWORD: ADMIN.password });
  const inject = injectServiceFetch(auth.app);
  let down = false;
  const authFetch: ServiceFetch = (path, init) => {
    if (down && path === "/validate") return Promise.reject(new TypeError("fetch failed"));
    return inject(path, init);
  };
  const verifier = withRevocationCheck(createJwksVerifier(authFetch), authFetch, {
    logger: createLogger("silent", "test"),
  });
  const token = (
    await auth.app.inject({
      method: "POST",
      url: "/login",
      headers: { authorization: basic(ADMIN.email, ADMIN.password) },
    })
  ).body;
  down = true;
  assert.equal((await verifier.verify(token)).email, ADMIN.email);
  await assert.rejects(verifier.verify(`${token}x`), /invalid/i, "a bad signature is still refused");
});
