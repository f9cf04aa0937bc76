import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import { test } from "node:test";
import {
  createLocalJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  importJWK,
  jwtVerify,
  SignJWT,
} from "jose";
import { tempDataDir } from "../../test/support/auth-service.ts";
import { loadConfig } from "../platform/config.ts";
import {
  createTokenService,
  InvalidTokenError,
  signingKeyFile,
  TOKEN_AUDIENCE,
  TOKEN_ISSUER,
  type TokenServiceOptions,
} from "./tokens.ts";

const alice = {
  id: "3f1c5d9e-8a55-4b8e-9d1c-2f4f0a6b7c8d",
  email: "alice@example.com",
  admin: false,
  tokenGeneration: 0,
};
const SECRET = "a-test-secret-that-is-at-least-32-chars-long";

async function tokenService(
  dataDir: string,
  env: Record<string, string> = {},
  options?: TokenServiceOptions,
) {
  return createTokenService(loadConfig({ DATA_DIR: dataDir, ...env }), options);
}

test("EdDSA: a signed token verifies and carries the contract's claims", async (t) => {
  const tokens = await tokenService(await tempDataDir(t), { JWT_TTL_SECONDS: "600" });
  assert.equal(tokens.algorithm, "EdDSA");
  const before = Math.floor(Date.now() / 1000);
  const { token, expiresAt } = await tokens.sign(alice);

  const claims = await tokens.verify(token);
  assert.equal(claims.sub, alice.id);
  assert.equal(claims.username, "alice@example.com");
  assert.equal(claims.admin, false);
  assert.equal(claims.iss, TOKEN_ISSUER);
  assert.equal(claims.aud, TOKEN_AUDIENCE);
  assert.ok(claims.iat >= before && claims.iat <= before + 2);
  assert.equal(claims.exp, claims.iat + 600);
  assert.equal(expiresAt, new Date(claims.exp * 1000).toISOString());
  assert.match(claims.jti, /^[0-9a-f-]{36}$/);
  assert.notEqual((await tokens.verify((await tokens.sign(alice)).token)).jti, claims.jti);

  const header = decodeProtectedHeader(token);
  assert.equal(header.alg, "EdDSA");
  assert.equal(typeof header.kid, "string");
  assert.equal(header.kid, tokens.jwks().keys[0]?.kid);
});

test("EdDSA: the generated key is persisted with mode 0600 and reused by the next start", async (t) => {
  const dataDir = await tempDataDir(t);
  const first = await tokenService(dataDir);
  const file = signingKeyFile(dataDir);
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  const stored = JSON.parse(await readFile(file, "utf8"));
  assert.equal(stored.kty, "OKP");
  assert.equal(typeof stored.d, "string");

  const second = await tokenService(dataDir);
  assert.deepEqual(second.jwks(), first.jwks());
  // A token from the first instance is accepted by the second: same key, so restarts keep sessions.
  const { token } = await first.sign(alice);
  assert.equal((await second.verify(token)).sub, alice.id);

  const elsewhere = await tokenService(await tempDataDir(t));
  await assert.rejects(elsewhere.verify(token), InvalidTokenError);
});

test("EdDSA: two instances starting together on one data dir end up with the same key", async (t) => {
  const dataDir = await tempDataDir(t);
  const [a, b] = await Promise.all([tokenService(dataDir), tokenService(dataDir)]);
  assert.deepEqual(a.jwks(), b.jwks());
});

test("EdDSA: the JWKS verifies tokens with jose.createLocalJWKSet and holds no private part", async (t) => {
  const tokens = await tokenService(await tempDataDir(t));
  const jwks = tokens.jwks();
  assert.equal(jwks.keys.length, 1);
  const [key] = jwks.keys;
  assert.equal(key?.d, undefined);
  assert.deepEqual(
    { kty: key?.kty, crv: key?.crv, alg: key?.alg, use: key?.use },
    {
      kty: "OKP",
      crv: "Ed25519",
      alg: "EdDSA",
      use: "sig",
    },
  );

  const { token } = await tokens.sign({ ...alice, admin: true });
  const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), {
    issuer: TOKEN_ISSUER,
    audience: TOKEN_AUDIENCE,
  });
  assert.equal(payload.admin, true);
  assert.equal(payload.username, alice.email);
});

test("EdDSA: JWT_PRIVATE_KEY is used instead of generating a key file", async (t) => {
  const dataDir = await tempDataDir(t);
  const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
  const jwk = { ...(await exportJWK(privateKey)), kid: "configured-key" };
  const tokens = await tokenService(dataDir, { JWT_PRIVATE_KEY: JSON.stringify(jwk) });

  const { token } = await tokens.sign(alice);
  assert.equal(decodeProtectedHeader(token).kid, "configured-key");
  await assert.rejects(stat(signingKeyFile(dataDir)), { code: "ENOENT" });

  // Same key, wrong audience: rejected.
  const foreign = await new SignJWT({ username: alice.email, admin: false })
    .setProtectedHeader({ alg: "EdDSA", kid: "configured-key" })
    .setSubject(alice.id)
    .setIssuer(TOKEN_ISSUER)
    .setAudience("some-other-service")
    .setIssuedAt()
    .setExpirationTime("1h")
    .setJti("x")
    .sign(await importJWK(jwk, "EdDSA"));
  await assert.rejects(tokens.verify(foreign), InvalidTokenError);
});

test("a malformed JWT_PRIVATE_KEY stops the start with a clear error", async (t) => {
  const dataDir = await tempDataDir(t);
  await assert.rejects(
    tokenService(dataDir, { JWT_PRIVATE_KEY: "{nope" }),
    /JWT_PRIVATE_KEY is not valid JSON/,
  );
  await assert.rejects(
    tokenService(dataDir, { JWT_PRIVATE_KEY: JSON.stringify({ kty: "RSA" }) }),
    /JWT_PRIVATE_KEY must be an Ed25519 private key/,
  );
});

test("HS256 with JWT_SECRET: roundtrip, no kid, empty JWKS, wrong audience rejected", async (t) => {
  const dataDir = await tempDataDir(t);
  const tokens = await tokenService(dataDir, { JWT_SECRET: SECRET });
  assert.equal(tokens.algorithm, "HS256");
  const { token } = await tokens.sign({ ...alice, admin: true });

  assert.equal(decodeProtectedHeader(token).alg, "HS256");
  assert.equal(decodeProtectedHeader(token).kid, undefined);
  const claims = await tokens.verify(token);
  assert.equal(claims.admin, true);
  assert.deepEqual(tokens.jwks(), { keys: [] });
  await assert.rejects(stat(signingKeyFile(dataDir)), { code: "ENOENT" });

  // Verifiable by anyone holding the secret, as the original's clients did.
  const secret = new TextEncoder().encode(SECRET);
  assert.equal((await jwtVerify(token, secret)).payload.username, alice.email);

  const wrongAudience = await new SignJWT({ username: alice.email, admin: true })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(alice.id)
    .setIssuer(TOKEN_ISSUER)
    .setAudience("not-vid2mp3")
    .setIssuedAt()
    .setExpirationTime("1h")
    .setJti("x")
    .sign(secret);
  await assert.rejects(tokens.verify(wrongAudience), /invalid/);

  const otherSecret = await tokenService(dataDir, { JWT_SECRET: `${SECRET}-but-different` });
  await assert.rejects(otherSecret.verify(token), InvalidTokenError);
  // An EdDSA instance does not accept an HS256 token (no algorithm confusion).
  await assert.rejects((await tokenService(dataDir)).verify(token), InvalidTokenError);
});

test("an expired token is rejected with a message saying so", async (t) => {
  const dataDir = await tempDataDir(t);
  const twoHoursAgo = () => new Date(Date.now() - 2 * 3600_000);
  const past = await tokenService(dataDir, { JWT_TTL_SECONDS: "3600" }, { now: twoHoursAgo });
  const present = await tokenService(dataDir);
  const { token, expiresAt } = await past.sign(alice);

  assert.ok(Date.parse(expiresAt) < Date.now());
  assert.ok((decodeJwt(token).exp ?? Infinity) < Date.now() / 1000);
  await assert.rejects(present.verify(token), {
    name: "InvalidTokenError",
    message: "The token has expired.",
  });
});

test("garbage and tampered tokens are rejected", async (t) => {
  const tokens = await tokenService(await tempDataDir(t));
  await assert.rejects(tokens.verify("not.a.jwt"), InvalidTokenError);
  const { token } = await tokens.sign(alice);
  const [header, , signature] = token.split(".");
  const forged = Buffer.from(JSON.stringify({ ...decodeJwt(token), admin: true })).toString("base64url");
  await assert.rejects(tokens.verify(`${header}.${forged}.${signature}`), InvalidTokenError);
});

test("EdDSA: JWT_VERIFICATION_KEYS are published and accepted beside the signing key (rotation without logouts)", async (t) => {
  const key = async (kid: string) => {
    const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
    return { ...(await exportJWK(privateKey)), kid };
  };
  const [current, next] = [await key("current"), await key("next")];
  const publicOnly = ({ d: _d, ...rest }: typeof current) => rest;

  // 1. The next key is published before anything is signed with it.
  const before = await tokenService(await tempDataDir(t), {
    JWT_PRIVATE_KEY: JSON.stringify(current),
    JWT_VERIFICATION_KEYS: JSON.stringify([publicOnly(next)]),
  });
  assert.deepEqual(
    before.jwks().keys.map((k) => k.kid),
    ["current", "next"],
  );
  assert.ok(
    before.jwks().keys.every((k) => !("d" in k)),
    "no private part, even when one was given",
  );
  const oldToken = (await before.sign(alice)).token;

  // 2. The switch: signing with the next key, the previous one still accepted until its tokens expire.
  const after = await tokenService(await tempDataDir(t), {
    JWT_PRIVATE_KEY: JSON.stringify(next),
    JWT_VERIFICATION_KEYS: JSON.stringify([current]),
  });
  assert.equal((await after.verify(oldToken)).sub, alice.id, "a token of the previous key still works");
  const newToken = (await after.sign(alice)).token;
  assert.equal(decodeProtectedHeader(newToken).kid, "next");
  // Gateways verify with the published set: both tokens pass there too.
  const published = createLocalJWKSet(after.jwks());
  for (const token of [oldToken, newToken]) {
    await jwtVerify(token, published, { issuer: TOKEN_ISSUER, audience: TOKEN_AUDIENCE });
  }

  // 3. Without the previous key, its tokens are refused.
  const later = await tokenService(await tempDataDir(t), { JWT_PRIVATE_KEY: JSON.stringify(next) });
  await assert.rejects(later.verify(oldToken), InvalidTokenError);
  await assert.rejects(
    tokenService(await tempDataDir(t), {
      JWT_PRIVATE_KEY: JSON.stringify(next),
      JWT_VERIFICATION_KEYS: "[{}]",
    }),
    /JWT_VERIFICATION_KEYS: every key must be an Ed25519 JWK/,
  );
});
