import assert from "node:assert/strict";
import { test } from "node:test";
import { gatewayError, gatewayErrorResponse, gatewayErrors } from "./errors.ts";

const statusOf = (catalogue: Record<string, { status: number }>) =>
  Object.fromEntries(Object.entries(catalogue).map(([code, { status }]) => [code, status]));

// Clients and tests depend on every code and its status: a change here is a change of the API.
test("the gateway's error codes and their statuses", () => {
  assert.deepEqual(statusOf(gatewayErrors), {
    bad_request: 400,
    invalid_option: 400,
    field_after_file: 400,
    unauthorized: 401,
    invalid_token: 403,
    token_revoked: 403,
    account_disabled: 403,
    link_expired: 403,
    link_invalid: 403,
    not_found: 404,
    payload_too_large: 413,
    quota_exceeded: 413,
    unsupported_media_type: 415,
    range_not_satisfiable: 416,
    too_many_active_jobs: 429,
    too_many_streams: 429,
    auth_unavailable: 503,
    storage_unavailable: 503,
    queue_unavailable: 503,
  });
  const error = gatewayError("link_expired", "This download link has expired; ask for a new one.");
  assert.equal(error.statusCode, 403);
  assert.equal(error.code, "link_expired");
  assert.equal(
    gatewayErrorResponse("Bad link", "link_expired", "link_invalid").description,
    "Bad link (`link_expired`, `link_invalid`)",
  );
});
