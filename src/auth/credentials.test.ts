import assert from "node:assert/strict";
import { test } from "node:test";
import { parseBasicCredentials, parseBearerToken } from "./credentials.ts";

const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");

test("Basic credentials: split at the first colon, UTF-8, scheme case-insensitive", () => {
  assert.deepEqual(parseBasicCredentials(`Basic ${b64("a@b.c:pa:ss")}`), {
    email: "a@b.c",
    password: "pa:ss",
  });
  assert.deepEqual(parseBasicCredentials(`basic ${b64("ü@b.c:pässwört")}`), {
    email: "ü@b.c",
    password: "pässwört",
  });
});

test("Basic credentials: anything malformed is undefined", () => {
  for (const header of [
    undefined,
    "",
    "Basic",
    `Bearer ${b64("a:b")}`,
    `Basic ${b64("nocolon")}`,
    `Basic ${b64(":pw")}`,
    `Basic ${b64("a@b.c:")}`,
    "Basic !!!",
  ]) {
    assert.equal(parseBasicCredentials(header), undefined, String(header));
  }
});

test("Bearer token", () => {
  assert.equal(parseBearerToken("Bearer abc.def.ghi"), "abc.def.ghi");
  assert.equal(parseBearerToken("bearer  abc"), "abc");
  for (const header of [undefined, "", "Bearer", "Bearer a b", "Basic abc"]) {
    assert.equal(parseBearerToken(header), undefined, String(header));
  }
});
