import assert from "node:assert/strict";
import { test } from "node:test";
import { supportsConsumerTimeoutArgument } from "./consumer.ts";

test("per-consumer timeouts are asked of RabbitMQ 3.12 and later, not of older servers", () => {
  for (const version of ["3.12.0", "3.13.7", "4.0.5", "4.2.1"])
    assert.equal(supportsConsumerTimeoutArgument(version), true);
  for (const version of ["3.10.8", "3.11.28", "3.8.9", "", "unknown"]) {
    assert.equal(supportsConsumerTimeoutArgument(version), false, version);
  }
});
