import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT } from "jose";
import { TOKEN_AUDIENCE, TOKEN_ISSUER } from "../contracts/tokens.ts";
import { createHttpServer, HttpError } from "../platform/http.ts";
import { createLogger } from "../platform/logger.ts";
import type { ServiceFetch } from "../platform/service-fetch.ts";
import { bearerToken, createJwksVerifier, createValidateVerifier } from "./authentication.ts";

interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

async function signingKey(kid: string = randomUUID()): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
  return { kid, privateKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg: "EdDSA", use: "sig" } };
}

const ALICE = { id: "user-1", email: "alice@example.com", admin: false };

/** A token as auth signs it (src/contracts/tokens.ts claims); `claims` and `options` bend it. */
async function sign(
  key: SigningKey,
  claims: JWTPayload = {},
  options: { issuer?: string; audience?: string; expiresIn?: string | number; kid?: string } = {},
): Promise<string> {
  return new SignJWT({ username: ALICE.email, admin: ALICE.admin, ...claims })
    .setProtectedHeader({ alg: "EdDSA", kid: options.kid ?? key.kid })
    .setSubject(ALICE.id)
    .setIssuer(options.issuer ?? TOKEN_ISSUER)
    .setAudience(options.audience ?? TOKEN_AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(options.expiresIn ?? "1h")
    .setJti(randomUUID())
    .sign(key.privateKey);
}

/** Auth's JWKS endpoint as the gateway sees it: what it serves can change, and its calls are counted. */
function jwksEndpoint(...keys: SigningKey[]) {
  const state = { keys, calls: 0, down: false as false | "network" | number };
  const fetch: ServiceFetch = async (path) => {
    state.calls++;
    assert.equal(path, "/.well-known/jwks.json");
    if (state.down === "network") throw new TypeError("fetch failed");
    if (typeof state.down === "number") return new Response("no", { status: state.down });
    return Response.json({ keys: state.keys.map((k) => k.publicJwk) });
  };
  return { state, fetch };
}

async function assertHttpError(promise: Promise<unknown>, status: number, code?: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof HttpError, `expected an HttpError, got ${String(error)}`);
    assert.equal(error.statusCode, status, error.message);
    if (code) assert.equal(error.code, code);
    return true;
  });
}

describe("createJwksVerifier", () => {
  test("a valid token gives the caller, and the key set is fetched once for many tokens", async () => {
    const key = await signingKey();
    const auth = jwksEndpoint(key);
    const verifier = createJwksVerifier(auth.fetch);
    assert.deepEqual(await verifier.verify(await sign(key)), ALICE);
    assert.deepEqual(await verifier.verify(await sign(key, { admin: true, username: "root@example.com" })), {
      id: ALICE.id,
      email: "root@example.com",
      admin: true,
    });
    assert.equal(auth.state.calls, 1, "the JWKS is cached");
  });

  test("a token with an audience list that includes ours is accepted", async () => {
    const key = await signingKey();
    const verifier = createJwksVerifier(jwksEndpoint(key).fetch);
    const token = await new SignJWT({ username: ALICE.email, admin: false })
      .setProtectedHeader({ alg: "EdDSA", kid: key.kid })
      .setSubject(ALICE.id)
      .setIssuer(TOKEN_ISSUER)
      .setAudience(["other", TOKEN_AUDIENCE])
      .setIssuedAt()
      .setExpirationTime("1h")
      .setJti(randomUUID())
      .sign(key.privateKey);
    assert.deepEqual(await verifier.verify(token), ALICE);
  });

  test("wrong audience, wrong issuer, expired, missing claims and garbage are 403", async () => {
    const key = await signingKey();
    const stranger = await signingKey(key.kid); // same kid, another key: a forged signature
    const verifier = createJwksVerifier(jwksEndpoint(key).fetch);
    const bad = {
      "wrong audience": await sign(key, {}, { audience: "someone-else" }),
      "wrong issuer": await sign(key, {}, { issuer: "evil-auth" }),
      expired: await sign(key, {}, { expiresIn: Math.floor(Date.now() / 1000) - 60 }),
      "no username": await sign(key, { username: undefined }),
      "username not an e-mail": await sign(key, { username: "alice" }),
      "admin not a boolean": await sign(key, { admin: "yes" }),
      "forged signature": await sign(stranger),
      garbage: "not.a.token",
      "not even dots": "garbage",
      "unsigned (alg none)": `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from(
        JSON.stringify({ sub: "x", username: ALICE.email, admin: true }),
      ).toString("base64url")}.`,
    };
    for (const [what, token] of Object.entries(bad)) {
      await assertHttpError(verifier.verify(token), 403, "invalid_token").catch((error: Error) => {
        throw new Error(`${what}: ${error.message}`);
      });
    }
  });

  test("key rotation: a new kid refetches the JWKS once; another unknown kid within the cooldown does not", async () => {
    const oldKey = await signingKey();
    const auth = jwksEndpoint(oldKey);
    const verifier = createJwksVerifier(auth.fetch, { refetchCooldownMs: 300 });
    assert.deepEqual(await verifier.verify(await sign(oldKey)), ALICE);
    assert.equal(auth.state.calls, 1);

    await sleep(350); // past the cooldown
    const newKey = await signingKey();
    auth.state.keys = [newKey, oldKey];
    assert.deepEqual(await verifier.verify(await sign(newKey)), ALICE);
    assert.equal(auth.state.calls, 2, "one refetch for the new kid");
    assert.deepEqual(await verifier.verify(await sign(newKey)), ALICE);
    assert.deepEqual(await verifier.verify(await sign(oldKey)), ALICE);
    assert.equal(auth.state.calls, 2, "the refreshed set is cached");

    // Within the cooldown, unknown kids are refused without asking auth again
    // (a stream of made-up kids cannot turn into a stream of JWKS requests).
    const unknown = await signingKey();
    await assertHttpError(verifier.verify(await sign(unknown)), 403);
    auth.state.keys = [unknown, newKey];
    await assertHttpError(verifier.verify(await sign(unknown)), 403);
    assert.equal(auth.state.calls, 2, "no refetch within the cooldown");

    await sleep(350);
    assert.deepEqual(await verifier.verify(await sign(unknown)), ALICE, "after the cooldown it is found");
    assert.equal(auth.state.calls, 3);
  });

  test("a stale key set is refreshed after maxAgeMs, and a removed key stops verifying", async () => {
    const key = await signingKey();
    const auth = jwksEndpoint(key);
    const verifier = createJwksVerifier(auth.fetch, { maxAgeMs: 50, refetchCooldownMs: 10_000 });
    const token = await sign(key);
    await verifier.verify(token);
    auth.state.keys = [await signingKey()];
    await sleep(70);
    await assertHttpError(verifier.verify(token), 403);
    assert.equal(auth.state.calls, 2);
  });

  test("with auth down, stale keys still verify, and the refresh waits for the cooldown", async () => {
    const key = await signingKey();
    const auth = jwksEndpoint(key);
    const verifier = createJwksVerifier(auth.fetch, { maxAgeMs: 50, refetchCooldownMs: 10_000 });
    const token = await sign(key);
    await verifier.verify(token);
    auth.state.down = "network";
    await sleep(70);
    assert.deepEqual(await verifier.verify(token), ALICE, "the cached key still verifies");
    assert.deepEqual(await verifier.verify(token), ALICE);
    assert.equal(auth.state.calls, 2, "one failed refresh, then none until the cooldown");
  });

  test("a token remembered as verified still expires on time", async () => {
    const key = await signingKey();
    const verifier = createJwksVerifier(jwksEndpoint(key).fetch);
    const token = await sign(key, {}, { expiresIn: Math.floor(Date.now() / 1000) + 1 });
    assert.deepEqual(await verifier.verify(token), ALICE);
    assert.deepEqual(await verifier.verify(token), ALICE);
    await sleep(1100);
    await assertHttpError(verifier.verify(token), 403);
  });

  test("concurrent first requests share one JWKS fetch", async () => {
    const key = await signingKey();
    const auth = jwksEndpoint(key);
    const verifier = createJwksVerifier(auth.fetch);
    const tokens = await Promise.all(Array.from({ length: 5 }, () => sign(key)));
    const callers = await Promise.all(tokens.map((t) => verifier.verify(t)));
    assert.deepEqual(callers, Array(5).fill(ALICE));
    assert.equal(auth.state.calls, 1);
  });

  test("the JWKS endpoint down (network error or 5xx) is 503, and it recovers", async () => {
    const key = await signingKey();
    const auth = jwksEndpoint(key);
    const verifier = createJwksVerifier(auth.fetch);
    const token = await sign(key);

    auth.state.down = "network";
    await assertHttpError(verifier.verify(token), 503, "auth_unavailable");
    auth.state.down = 500;
    await assertHttpError(verifier.verify(token), 503, "auth_unavailable");

    auth.state.down = false;
    assert.deepEqual(await verifier.verify(token), ALICE, "the next request fetches again");
  });

  test("a ServiceFetch that throws synchronously is 503 once, not forever", async () => {
    const key = await signingKey();
    const auth = jwksEndpoint(key);
    let down = true;
    const verifier = createJwksVerifier((path, init) => {
      if (down) throw new TypeError("Invalid URL");
      return auth.fetch(path, init);
    });
    const token = await sign(key);
    await assertHttpError(verifier.verify(token), 503);
    down = false;
    assert.deepEqual(await verifier.verify(token), ALICE);
  });

  test("a JWKS answer that is not a key set is 503, not a crash", async () => {
    const verifier = createJwksVerifier(async () => new Response("<html>oops</html>", { status: 200 }));
    await assertHttpError(verifier.verify("a.b.c"), 503);
  });
});

describe("createValidateVerifier", () => {
  const claims = {
    sub: ALICE.id,
    username: ALICE.email,
    admin: false,
    iss: TOKEN_ISSUER,
    aud: TOKEN_AUDIENCE,
    iat: 1,
    exp: 2,
    jti: "j",
  };

  /** Auth's /validate, answering `status` (and the claims on 200); the requests are recorded. */
  function validateEndpoint(answer: () => Response) {
    const requests: { path: string; method?: string; headers?: Record<string, string> }[] = [];
    const fetch: ServiceFetch = async (path, init = {}) => {
      requests.push({ path, method: init.method, headers: init.headers });
      return answer();
    };
    return { fetch, requests };
  }

  test("200 gives the caller from the claims auth returns; the token goes as a bearer", async () => {
    const auth = validateEndpoint(() => Response.json(claims));
    const caller = await createValidateVerifier(auth.fetch).verify("the-token");
    assert.deepEqual(caller, ALICE);
    assert.deepEqual(auth.requests, [
      { path: "/validate", method: "POST", headers: { authorization: "Bearer the-token" } },
    ]);
  });

  test("403 and 401 from auth are 403", async () => {
    for (const status of [401, 403]) {
      const auth = validateEndpoint(() =>
        Response.json({ error: { code: "invalid_token", message: "no" } }, { status }),
      );
      await assertHttpError(createValidateVerifier(auth.fetch).verify("t"), 403, "invalid_token");
    }
  });

  test("200 with claims that do not fit the contract is 403", async () => {
    const auth = validateEndpoint(() => Response.json({ ...claims, username: "not-an-email" }));
    await assertHttpError(createValidateVerifier(auth.fetch).verify("t"), 403);
  });

  test("a network error or a 5xx is 503", async () => {
    const down = validateEndpoint(() => {
      throw new TypeError("fetch failed");
    });
    await assertHttpError(createValidateVerifier(down.fetch).verify("t"), 503, "auth_unavailable");
    const broken = validateEndpoint(() => new Response("", { status: 502 }));
    await assertHttpError(createValidateVerifier(broken.fetch).verify("t"), 503, "auth_unavailable");
  });
});

describe("bearerToken", () => {
  async function tokenOf(authorization: string | undefined) {
    const app = await createHttpServer(createLogger("silent", "test"));
    app.get("/", async (request) => ({ token: bearerToken(request) }));
    const response = await app.inject({
      method: "GET",
      url: "/",
      headers: authorization === undefined ? {} : { authorization },
    });
    await app.close();
    return response;
  }

  test("the token of a Bearer header (any case, surrounding spaces)", async () => {
    for (const [header, token] of [
      ["Bearer abc.def.ghi", "abc.def.ghi"],
      ["bearer abc.def.ghi", "abc.def.ghi"],
      ["BEARER   abc.def.ghi  ", "abc.def.ghi"],
    ] as const) {
      const response = await tokenOf(header);
      assert.equal(response.statusCode, 200, header);
      assert.deepEqual(response.json(), { token }, header);
    }
  });

  test("a missing header is 401 Missing credentials, a malformed one 401 saying so", async () => {
    for (const header of [
      undefined,
      "",
      "Bearer",
      "Bearer ",
      "Basic YTpi",
      "Token abc",
      "Bearer a b",
      "abc",
    ]) {
      const response = await tokenOf(header);
      assert.equal(response.statusCode, 401, JSON.stringify(header));
      const body = response.json() as { error: { code: string; message: string } };
      assert.equal(body.error.code, "unauthorized");
      assert.match(body.error.message, /Bearer/);
      const missing = header === undefined || header.trim() === "";
      assert.equal(/^Missing credentials/.test(body.error.message), missing, JSON.stringify(header));
    }
  });

  test("a token that cannot be one (an error message sent as the token) is 403 malformed", async () => {
    for (const header of ["Bearer abc", 'Bearer {"error":{"code":"invalid_credentials"}}', "Bearer a.b"]) {
      const response = await tokenOf(header);
      assert.equal(response.statusCode, 403, header);
      const body = response.json() as { error: { code: string; message: string } };
      assert.equal(body.error.code, "invalid_token");
      assert.match(body.error.message, /malformed/);
    }
  });
});
