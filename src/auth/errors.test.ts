import assert from "node:assert/strict";
import { test } from "node:test";
import { authError, authErrors } from "./errors.ts";

const statusOf = (catalogue: Record<string, { status: number }>) =>
  Object.fromEntries(Object.entries(catalogue).map(([code, { status }]) => [code, status]));

// Clients and tests depend on every code and its status: a change here is a change of the API.
test("auth's error codes and their statuses", () => {
  assert.deepEqual(statusOf(authErrors), {
    bad_request: 400,
    unauthorized: 401,
    invalid_token: 403,
    account_disabled: 403,
    token_revoked: 403,
    wrong_password: 403,
    forbidden: 403,
    registration_closed: 403,
    not_found: 404,
    email_taken: 409,
    self_lockout: 409,
    too_many_attempts: 429,
    busy: 503,
  });
  const error = authError("busy", "Too many logins at once; try again in a second.", { "Retry-After": "1" });
  assert.equal(error.statusCode, 503);
  assert.deepEqual(error.headers, { "Retry-After": "1" });
});
