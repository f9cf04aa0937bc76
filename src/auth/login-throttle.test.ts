import assert from "node:assert/strict";
import { test } from "node:test";
import { createLoginThrottle } from "./login-throttle.ts";

test("refuses a key after maxFailures within the window, until the window has passed", () => {
  let now = 0;
  const throttle = createLoginThrottle({ maxFailures: 2, windowMs: 10_000, now: () => now });
  throttle.recordFailure("a");
  assert.equal(throttle.retryAfterSeconds("a"), undefined);
  now = 4_000;
  throttle.recordFailure("a");
  assert.equal(throttle.retryAfterSeconds("a"), 6, "counted from the window's first failure");
  assert.equal(throttle.retryAfterSeconds("b"), undefined, "other keys are free");
  now = 10_000;
  assert.equal(throttle.retryAfterSeconds("a"), undefined);
});

test("a success forgets the failures", () => {
  const throttle = createLoginThrottle({ maxFailures: 1 });
  throttle.recordFailure("a");
  assert.ok(throttle.retryAfterSeconds("a"));
  throttle.recordSuccess("a");
  assert.equal(throttle.retryAfterSeconds("a"), undefined);
});

test("remembers at most maxKeys keys, forgetting the oldest window first", () => {
  const throttle = createLoginThrottle({ maxFailures: 1, maxKeys: 2 });
  for (const key of ["a", "b", "c"]) throttle.recordFailure(key);
  assert.equal(throttle.retryAfterSeconds("a"), undefined, "the oldest was forgotten");
  assert.ok(throttle.retryAfterSeconds("b"));
  assert.ok(throttle.retryAfterSeconds("c"));
});
