import assert from "node:assert/strict";
import { test } from "node:test";
import { errorMessage } from "./error-message.ts";

test("an Error gives its message; anything else thrown, its text", () => {
  assert.equal(errorMessage(new Error("disk full")), "disk full");
  assert.equal(errorMessage("the package's binary is missing"), "the package's binary is missing");
  assert.equal(errorMessage(undefined), "undefined");
});

test("an Error without a message gives its first inner error, its code or its name", () => {
  const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:3306"), { code: "ECONNREFUSED" });
  assert.equal(errorMessage(new AggregateError([refused], "")), "connect ECONNREFUSED 127.0.0.1:3306");
  assert.equal(
    errorMessage(Object.assign(new Error(""), { code: "PROTOCOL_CONNECTION_LOST" })),
    "PROTOCOL_CONNECTION_LOST",
  );
  assert.equal(errorMessage(new TypeError("")), "TypeError");
});
