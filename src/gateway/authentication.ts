import type { FastifyInstance, FastifyRequest } from "fastify";
import { createLocalJWKSet, errors, type JSONWebKeySet, jwtVerify } from "jose";
import type { Account } from "../contracts/auth-api.ts";
import { issuedInFuture, TOKEN_AUDIENCE, TOKEN_ISSUER, TokenClaims } from "../contracts/tokens.ts";
import { HttpError } from "../platform/http.ts";
import type { ServiceFetch } from "../platform/service-fetch.ts";
import { authUnavailable, gatewayError, invalidToken } from "./errors.ts";
import { refusalFrom } from "./revocation-check.ts";

/** The authenticated user behind a request: the account as `GET /me` shows it. */
export type Caller = Account;

export interface TokenVerifier {
  /** Resolves the caller, or throws an HttpError (403 bad token, 503 auth unreachable). */
  verify(token: string): Promise<Caller>;
}

function toCaller(payload: unknown): Caller {
  const claims = TokenClaims.safeParse(payload);
  if (!claims.success || issuedInFuture(claims.data)) throw invalidToken();
  return { id: claims.data.sub, email: claims.data.username, admin: claims.data.admin };
}

const VERIFIED_CACHE_SIZE = 10_000;

/**
 * EdDSA: verify locally against auth's public keys, so an authenticated request costs no network
 * hop. The key set is cached; a token with an unknown `kid` (auth rotated its key) refetches it,
 * at most once per `refetchCooldownMs`, and a stale set is refreshed after `maxAgeMs`.
 */
export function createJwksVerifier(
  authFetch: ServiceFetch,
  options: { maxAgeMs?: number; refetchCooldownMs?: number } = {},
): TokenVerifier {
  const maxAgeMs = options.maxAgeMs ?? 10 * 60_000;
  const cooldownMs = options.refetchCooldownMs ?? 10_000;
  let keySet: ReturnType<typeof createLocalJWKSet> | undefined;
  let fetchedAt = 0;
  let inflight: Promise<void> | undefined;
  let staleRetryAt = 0;
  // Tokens verified in the last minute: a browser's burst of requests checks one signature once
  // (the signature check was a quarter of an authenticated read, bench/). Emptied whenever the key
  // set changes, so a withdrawn key stops working as soon as it is noticed.
  const verified = new Map<string, { caller: Caller; until: number }>();

  async function load(): Promise<void> {
    try {
      const response = await authFetch("/.well-known/jwks.json");
      if (!response.ok) throw new Error(`JWKS answered ${response.status}`);
      keySet = createLocalJWKSet((await response.json()) as JSONWebKeySet);
      fetchedAt = Date.now();
      verified.clear();
    } catch {
      throw authUnavailable();
    }
  }

  async function refresh(): Promise<void> {
    // Cleared in a later microtask, after the assignment: a fetch that fails at once (even one
    // that throws synchronously) must not leave a settled promise behind to be reused forever.
    inflight ??= load().finally(() => {
      inflight = undefined;
    });
    return inflight;
  }

  async function verifyWithCurrentKeys(token: string): Promise<Caller> {
    const now = Date.now();
    const recent = verified.get(token);
    if (recent && recent.until > now) return recent.caller;
    if (!keySet) throw invalidToken();
    const { payload } = await jwtVerify(token, keySet, {
      issuer: TOKEN_ISSUER,
      audience: TOKEN_AUDIENCE,
      algorithms: ["EdDSA"],
    });
    const caller = toCaller(payload);
    if (verified.size >= VERIFIED_CACHE_SIZE) verified.clear();
    verified.set(token, { caller, until: Math.min((payload.exp ?? 0) * 1000, now + 60_000) });
    return caller;
  }

  return {
    async verify(token) {
      if (!keySet) await refresh();
      else if (Date.now() - fetchedAt > maxAgeMs && Date.now() >= staleRetryAt) {
        // Stale keys still verify the tokens they signed: an auth outage must not lock users out,
        // nor make every request wait for it; the refresh is tried again after the cooldown.
        await refresh().catch(() => {
          staleRetryAt = Date.now() + cooldownMs;
        });
      }
      try {
        return await verifyWithCurrentKeys(token);
      } catch (error) {
        if (error instanceof errors.JWKSNoMatchingKey && Date.now() - fetchedAt > cooldownMs) {
          await refresh();
          try {
            return await verifyWithCurrentKeys(token);
          } catch {
            throw invalidToken();
          }
        }
        if (error instanceof HttpError) throw error;
        throw invalidToken();
      }
    },
  };
}

/** HS256 (`JWT_SECRET`): ask auth's `/validate`, as the original gateway did. */
export function createValidateVerifier(authFetch: ServiceFetch): TokenVerifier {
  return {
    async verify(token) {
      let response: Response;
      try {
        response = await authFetch("/validate", {
          method: "POST",
          headers: { authorization: `Bearer ${token}` },
        });
      } catch {
        throw authUnavailable();
      }
      if (response.status === 200) return toCaller(await response.json());
      if (response.status === 401 || response.status === 403) throw await refusalFrom(response);
      throw authUnavailable();
    },
  };
}

/** Three base64url parts separated by dots, as `POST /login` answers it. */
const JWT_SHAPE = /^[\w-]+\.[\w-]+\.[\w-]*$/;

/**
 * The bearer token of a request: 401 when there is none or the header is not `Bearer <token>`,
 * 403 when the token cannot be a token at all. Each says which, so a script that sent an error
 * message as its token (`TOKEN=$(curl -s …)` after a failed login) learns why.
 */
export function bearerToken(request: FastifyRequest): string {
  const header = request.headers.authorization?.trim();
  if (!header) {
    throw gatewayError(
      "unauthorized",
      "Missing credentials: send Authorization: Bearer <token> (get one from POST /login).",
    );
  }
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match?.[1]) {
    throw gatewayError(
      "unauthorized",
      "The Authorization header is not of the form Bearer <token>: send the token POST /login answered.",
    );
  }
  if (!JWT_SHAPE.test(match[1])) {
    throw gatewayError(
      "invalid_token",
      "The token is malformed: send the token POST /login answered (three parts separated by dots).",
    );
  }
  return match[1];
}

declare module "fastify" {
  interface FastifyRequest {
    /**
     * Who sent the request, set by the authentication hook (`authenticateRequests`) before the
     * input of every route that needs a token is looked at. Read only in such routes' handlers;
     * a signed download link carries no caller (see `isSignedDownload`).
     */
    caller: Caller;
  }
  interface FastifyContextConfig {
    /** The route passes the token on to auth, which verifies it: the gateway only checks one is there. */
    tokenVerifiedByAuth?: boolean;
  }
}

/**
 * The one place a gateway request's token is checked: a protected route without a token is 401
 * before its input is looked at (`GET /jobs/abc` without a token is 401, not 400), an invalid one
 * 403, and otherwise the handler finds the caller in `request.caller`. A signed download link
 * stands in for the token (see download-links.ts: the route checks it).
 */
export function authenticateRequests(app: FastifyInstance, verifier: TokenVerifier): void {
  app.decorateRequest("caller", undefined as unknown as Caller);
  app.addHook("onRequest", async (request) => {
    if (!needsToken(request.routeOptions.url) || isSignedDownload(request)) return;
    const token = bearerToken(request);
    if (request.routeOptions.config.tokenVerifiedByAuth) return;
    request.caller = await verifier.verify(token);
  });
}

/**
 * `GET|HEAD /download?…&signature=…` without an Authorization header: a signed link, which needs
 * no token. With a header the token counts, as on any other request.
 */
export function isSignedDownload(request: FastifyRequest): boolean {
  const query = request.query as Record<string, unknown> | undefined;
  return (
    request.routeOptions.url === "/download" &&
    typeof query?.signature === "string" &&
    request.headers.authorization === undefined
  );
}

/** Routes that need a token: checked for one before their input, so a request without one gets 401, never 400. */
const PROTECTED_PREFIXES = ["/jobs", "/download", "/upload", "/events", "/users", "/me", "/dead-letters"];

export function needsToken(routeUrl: string | undefined): boolean {
  if (routeUrl === undefined) return false;
  return PROTECTED_PREFIXES.some(
    (prefix) => routeUrl === prefix || routeUrl.startsWith(`${prefix}/`) || routeUrl.startsWith(`${prefix}?`),
  );
}
