import assert from "node:assert/strict";
import { test } from "node:test";
import { parseOptions } from "@node-rs/argon2";
import { hashPassword, verifyLogin, verifyPassword } from "./passwords.ts";

test("a hash verifies its own password and rejects any other", async () => {
  const hash = await hashPassword("correct horse battery staple");
  assert.equal(await verifyPassword(hash, "correct horse battery staple"), true);
  assert.equal(await verifyPassword(hash, "correct horse battery stapl"), false);
  assert.equal(await verifyPassword(hash, ""), false);
});

test("hashes are argon2id with the OWASP parameters and a fresh salt each time", async () => {
  const first = await hashPassword("s3cret-password");
  const second = await hashPassword("s3cret-password");
  assert.match(first, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
  const options = parseOptions(first);
  assert.deepEqual(
    { memoryCost: options.memoryCost, timeCost: options.timeCost, parallelism: options.parallelism },
    { memoryCost: 19456, timeCost: 2, parallelism: 1 },
  );
  assert.notEqual(first, second);
});

test("a malformed stored hash is a failed verification, not a crash", async () => {
  assert.equal(await verifyPassword("not-a-hash", "whatever"), false);
});

test("a login for an unknown e-mail fails only after spending a real verification", async () => {
  const hash = await hashPassword("some password");
  await verifyLogin(undefined, "warm-up"); // the dummy hash is made once, on first use

  const time = async (run: () => Promise<unknown>) => {
    const start = performance.now();
    for (let i = 0; i < 3; i++) await run();
    return performance.now() - start;
  };
  const known = await time(() => verifyLogin(hash, "wrong password"));
  const unknown = await time(() => verifyLogin(undefined, "some password"));

  assert.equal(await verifyLogin(undefined, "some password"), false);
  assert.equal(await verifyLogin(hash, "some password"), true);
  // Same argon2 work either way; a skipped verification would be orders of magnitude faster.
  assert.ok(unknown > known / 3, `unknown e-mail took ${unknown} ms, known ${known} ms`);
});
