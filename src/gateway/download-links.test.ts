import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { createDownloadLinks } from "./download-links.ts";

test("a signed link is valid until it expires, and only with its own key, fid and expiry", () => {
  const links = createDownloadLinks(randomBytes(32), 60);
  const now = new Date("2026-12-01T12:00:00Z");
  const { url, expiresAt } = links.sign("5d2a0b0e-8f7c-4f35-a7c1-4a5c6f1d2e3b", now);
  assert.equal(expiresAt, "2026-12-01T12:01:00.000Z");
  const query = new URL(url, "http://gateway").searchParams;
  const [fid, expires, signature] = ["fid", "expires", "signature"].map((name) => String(query.get(name)));
  assert.equal(links.check(String(fid), String(expires), String(signature), now), "valid");
  assert.equal(
    links.check(String(fid), String(expires), String(signature), new Date("2026-12-01T12:01:00Z")),
    "expired",
  );
  assert.equal(links.check("another-fid", String(expires), String(signature), now), "invalid");
  assert.equal(links.check(String(fid), String(Number(expires) + 1), String(signature), now), "invalid");
  assert.equal(links.check(String(fid), "soon", String(signature), now), "invalid");
  assert.equal(links.check(String(fid), String(expires), "", now), "invalid");
  const otherKey = createDownloadLinks(randomBytes(32), 60);
  assert.equal(otherKey.check(String(fid), String(expires), String(signature), now), "invalid");
});
