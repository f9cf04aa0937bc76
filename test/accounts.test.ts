import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { importJWK, SignJWT } from "jose";
import { TOKEN_AUDIENCE, TOKEN_ISSUER } from "../src/contracts/tokens.ts";
import { gatewayClient } from "./support/client.ts";
import { type RunningServer, startServer } from "./support/server.ts";

/**
 * The caller's account (GET /me, POST /me/password) and revocation: tokens issued before a
 * password change, and every token of a disabled account, are refused; open event streams end.
 * Against the real server process, in both signing modes.
 */

const ADMIN = { email: "admin@example.com", password: "admin-password-1" };

for (const mode of ["EdDSA", "HS256"] as const) {
  describe(`accounts and revocation (${mode})`, () => {
    let dir: string;
    let server: RunningServer;
    let client: ReturnType<typeof gatewayClient>;
    let adminToken: string;

    const call = (token: string, url: string, init: RequestInit = {}) =>
      fetch(new URL(url, server.url), {
        ...init,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...init.headers },
      });
    const changePassword = (token: string, body: unknown) =>
      call(token, "/me/password", { method: "POST", body: JSON.stringify(body) });

    /** A new user and a token of theirs. */
    async function newUser(): Promise<{ id: string; email: string; password: string; token: string }> {
      const email = `${randomUUID()}@example.com`;
      const password = "first-password-1";
      const created = await client.createUser(adminToken, email, password);
      assert.equal(created.status, 201, await created.clone().text());
      const { id } = (await created.json()) as { id: string };
      return { id, email, password, token: await client.token(email, password) };
    }

    before(async () => {
      dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-accounts-"));
      server = await startServer(
        {
          DATA_DIR: dir,
          ADMIN_EMAIL: ADMIN.email,
          ADMIN_PASSWORD: ADMIN.password,
          ...(mode === "HS256" ? { JWT_SECRET: "s".repeat(40) } : {}),
        },
        { timeoutMs: 120_000 },
      );
      client = gatewayClient(server.url);
      adminToken = await client.token(ADMIN.email, ADMIN.password);
    });
    after(async () => {
      await server?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    test("GET /me tells the caller who they are; without a token it is 401", async () => {
      const user = await newUser();
      const me = await call(user.token, "/me");
      assert.equal(me.status, 200);
      assert.deepEqual(await me.json(), { id: user.id, email: user.email, admin: false });
      const anonymous = await fetch(new URL("/me", server.url));
      assert.equal(anonymous.status, 401);
      assert.equal(((await anonymous.json()) as { error: { code: string } }).error.code, "unauthorized");
    });

    test("POST /me/password: a wrong current password or a short new one changes nothing", async () => {
      const user = await newUser();
      const wrong = await changePassword(user.token, {
        currentPassword: "not-the-password",
        newPassword: "x".repeat(12),
      });
      assert.equal(wrong.status, 403);
      assert.equal(((await wrong.json()) as { error: { code: string } }).error.code, "wrong_password");
      const short = await changePassword(user.token, {
        currentPassword: user.password,
        newPassword: "short",
      });
      assert.equal(short.status, 400);
      assert.match(((await short.json()) as { error: { message: string } }).error.message, /newPassword/);
      const unknownField = await changePassword(user.token, { password: "second-password-2" });
      assert.equal(unknownField.status, 400);
      // Nothing changed: the token and the old password still work.
      assert.equal((await call(user.token, "/jobs")).status, 200);
      await client.token(user.email, user.password);
    });

    test("POST /me/password is 204; tokens issued before are refused, the new password logs in, others are untouched", async () => {
      const user = await newUser();
      const other = await newUser();
      const secondToken = await client.token(user.email, user.password);
      const changed = await changePassword(user.token, {
        currentPassword: user.password,
        newPassword: "second-password-2",
      });
      assert.equal(changed.status, 204);
      assert.equal(await changed.text(), "");
      for (const token of [user.token, secondToken]) {
        for (const url of ["/jobs", "/me"]) {
          const refused = await call(token, url);
          assert.equal(refused.status, 403, url);
          assert.equal(((await refused.json()) as { error: { code: string } }).error.code, "token_revoked");
        }
      }
      assert.equal((await client.login(user.email, user.password)).status, 401, "the old password is gone");
      const fresh = await client.token(user.email, "second-password-2");
      assert.equal((await call(fresh, "/jobs")).status, 200, "a token issued after the change works at once");
      assert.equal((await call(other.token, "/jobs")).status, 200, "another user keeps their session");
    });

    test("disabling a user refuses their tokens and ends their event stream; enabling again does not revive old tokens", async () => {
      const user = await newUser();
      const events = await call(user.token, "/events", { headers: { accept: "text/event-stream" } });
      assert.equal(events.status, 200);
      const reader = events.body?.getReader();
      assert.ok(reader);
      const disable = await call(adminToken, `/users/${user.id}`, {
        method: "PATCH",
        body: JSON.stringify({ disabled: true }),
      });
      assert.equal(disable.status, 200);
      const refused = await call(user.token, "/jobs");
      assert.equal(refused.status, 403);
      assert.match(
        ((await refused.json()) as { error: { code: string } }).error.code,
        /account_disabled|token_revoked/,
      );
      // The open stream ends with an error event (checked every 5 s; bounded wait).
      const text = await readUntilClosed(reader, 40_000);
      assert.match(text, /event: error\ndata: .*"code":"(account_disabled|token_revoked)"/);

      const enable = await call(adminToken, `/users/${user.id}`, {
        method: "PATCH",
        body: JSON.stringify({ disabled: false }),
      });
      assert.equal(enable.status, 200);
      assert.equal((await call(user.token, "/jobs")).status, 403, "the old token stays revoked");
      assert.equal((await call(await client.token(user.email, user.password), "/jobs")).status, 200);
      assert.equal((await call(adminToken, "/jobs")).status, 200, "the administrator was not affected");
    });

    test("an admin's password reset revokes the user's tokens", async () => {
      const user = await newUser();
      const reset = await call(adminToken, `/users/${user.id}`, {
        method: "PATCH",
        body: JSON.stringify({ password: "reset-password-3" }),
      });
      assert.equal(reset.status, 200);
      assert.equal((await call(user.token, "/me")).status, 403);
      assert.equal((await call(await client.token(user.email, "reset-password-3"), "/me")).status, 200);
    });

    /** A token for `user` signed with the server's own key, with the given iat and exp (seconds). */
    async function signedToken(
      user: { id: string; email: string },
      iat: number,
      exp: number,
    ): Promise<string> {
      const jwk =
        mode === "EdDSA"
          ? JSON.parse(await readFile(path.join(dir, "auth", "signing-key.jwk.json"), "utf8"))
          : undefined;
      const key = jwk ? await importJWK(jwk, "EdDSA") : new TextEncoder().encode("s".repeat(40));
      return new SignJWT({ username: user.email, admin: false, gen: 0 })
        .setProtectedHeader({ alg: mode, ...(jwk?.kid ? { kid: jwk.kid } : {}) })
        .setSubject(user.id)
        .setIssuer(TOKEN_ISSUER)
        .setAudience(TOKEN_AUDIENCE)
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .setJti(randomUUID())
        .sign(key);
    }

    test("a token whose iat lies in the future is refused, though correctly signed", async () => {
      const user = await newUser();
      const now = Math.floor(Date.now() / 1000);
      const token = await signedToken(user, now + 3600, now + 7200);
      const refused = await call(token, "/jobs");
      assert.equal(refused.status, 403);
      assert.equal((await call(user.token, "/jobs")).status, 200, "the user's real token still works");
    });

    test("an event stream ends when its token expires, and the user's other requests go on", async () => {
      const user = await newUser();
      const now = Math.floor(Date.now() / 1000);
      const shortLived = await signedToken(user, now, now + 3);
      const events = await call(shortLived, "/events");
      assert.equal(events.status, 200);
      const reader = events.body?.getReader();
      assert.ok(reader);
      // Rechecked every 5 s: the stream ends within a few seconds of the expiry (bounded wait).
      const text = await readUntilClosed(reader, 30_000);
      assert.ok(Date.now() >= (now + 3) * 1000, "not before the token expired");
      assert.match(text, /event: error\ndata: .*"code":"invalid_token"/);
      assert.equal((await call(shortLived, "/jobs")).status, 403);
      assert.equal((await call(user.token, "/jobs")).status, 200, "the user's other token still works");
    });

    test("at most 10 event streams per user: the 11th is 429, other users are unaffected, a closed one frees a place", async () => {
      const user = await newUser();
      const other = await newUser();
      const open = async (token: string) => {
        const controller = new AbortController();
        const response = await call(token, "/events", { signal: controller.signal });
        return { response, close: () => controller.abort() };
      };
      const streams = [];
      for (let i = 0; i < 10; i++) {
        const stream = await open(user.token);
        assert.equal(stream.response.status, 200);
        streams.push(stream);
      }
      const eleventh = await open(user.token);
      assert.equal(eleventh.response.status, 429);
      assert.equal(
        ((await eleventh.response.json()) as { error: { code: string } }).error.code,
        "too_many_streams",
      );
      const others = await open(other.token);
      assert.equal(others.response.status, 200);
      others.close();
      streams.pop()?.close();
      let again: Awaited<ReturnType<typeof open>> | undefined;
      for (let i = 0; i < 50; i++) {
        again = await open(user.token);
        if (again.response.status === 200) break;
        await again.response.body?.cancel();
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(again?.response.status, 200);
      again?.close();
      for (const stream of streams) stream.close();
    });
  });
}

/** Everything a stream sends until the server closes it, which must happen within `timeoutMs`. */
async function readUntilClosed(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  timeoutMs: number,
): Promise<string> {
  let text = "";
  const decoder = new TextDecoder();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return text + decoder.decode();
    text += decoder.decode(value, { stream: true });
    assert.ok(Date.now() < deadline, "the stream ended in time");
  }
}
