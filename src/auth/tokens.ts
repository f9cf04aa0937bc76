import { randomUUID } from "node:crypto";
import { link, mkdir, readFile, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import {
  type CryptoKey,
  calculateJwkThumbprint,
  createLocalJWKSet,
  errors,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
  jwtVerify,
  SignJWT,
} from "jose";
import type { IssuedToken } from "../contracts/auth-api.ts";
import { issuedInFuture, TOKEN_AUDIENCE, TOKEN_ISSUER, TokenClaims } from "../contracts/tokens.ts";
import type { Config } from "../platform/config.ts";

// `iss`, `aud` and the claims' shape live in the shared contracts, so the gateway checks exactly what is signed here.
export { TOKEN_AUDIENCE, TOKEN_ISSUER };

/** Where the generated signing key lives when `JWT_PRIVATE_KEY` is not set. */
export function signingKeyFile(dataDir: string): string {
  return path.join(dataDir, "auth", "signing-key.jwk.json");
}

/** The claims of a valid token. `username` and `admin` keep the Python original's names. */
export type AuthClaims = TokenClaims;

export interface TokenSubject {
  id: string;
  email: string;
  admin: boolean;
  /** The account's current token generation (see `TokenClaims.gen`). */
  tokenGeneration: number;
}

export interface TokenService {
  readonly algorithm: "EdDSA" | "HS256";
  sign(subject: TokenSubject): Promise<IssuedToken>;
  /** The token's claims, or an InvalidTokenError saying why it is not accepted. */
  verify(token: string): Promise<AuthClaims>;
  /** The public keys that verify tokens (empty under HS256: a shared secret is never published). */
  jwks(): JSONWebKeySet;
}

export class InvalidTokenError extends Error {
  override name = "InvalidTokenError";
}

export interface TokenServiceOptions {
  /** The clock tokens are issued and checked against; tests move it. */
  now?: () => Date;
}

/**
 * Signs and verifies the service's JWTs. Default EdDSA (Ed25519) with a `kid`, so the gateway can
 * verify locally against the JWKS; `config.jwt.secret` set selects HS256 as the original did.
 */
export async function createTokenService(
  config: Pick<Config, "dataDir" | "jwt">,
  options: TokenServiceOptions = {},
): Promise<TokenService> {
  const now = options.now ?? (() => new Date());
  const { ttlSeconds } = config.jwt;
  const signer =
    config.jwt.secret !== undefined ? hmacSigner(config.jwt.secret) : await ed25519Signer(config);

  return {
    algorithm: signer.alg,
    async sign(subject) {
      const iat = Math.floor(now().getTime() / 1000);
      const exp = iat + ttlSeconds;
      const token = await new SignJWT({
        username: subject.email,
        admin: subject.admin,
        gen: subject.tokenGeneration,
      })
        .setProtectedHeader({ alg: signer.alg, typ: "JWT", ...(signer.kid ? { kid: signer.kid } : {}) })
        .setSubject(subject.id)
        .setIssuer(TOKEN_ISSUER)
        .setAudience(TOKEN_AUDIENCE)
        .setIssuedAt(iat)
        .setExpirationTime(exp)
        .setJti(randomUUID())
        .sign(signer.privateKey);
      return { token, expiresAt: new Date(exp * 1000).toISOString() };
    },
    async verify(token) {
      let payload: JWTPayload;
      try {
        ({ payload } = await signer.verify(token, {
          issuer: TOKEN_ISSUER,
          audience: TOKEN_AUDIENCE,
          algorithms: [signer.alg],
          currentDate: now(),
          requiredClaims: ["sub", "iat", "exp", "jti"],
        }));
      } catch (error) {
        if (error instanceof errors.JWTExpired) throw new InvalidTokenError("The token has expired.");
        throw new InvalidTokenError("The token is invalid.", { cause: error });
      }
      const claims = TokenClaims.safeParse(payload);
      if (!claims.success) throw new InvalidTokenError("The token is invalid: its claims are malformed.");
      if (issuedInFuture(claims.data, now()))
        throw new InvalidTokenError("The token is invalid: issued in the future.");
      return claims.data;
    },
    jwks: () => ({ keys: signer.publicJwks.map((k) => ({ ...k })) }),
  };
}

type VerifyOptions = NonNullable<Parameters<typeof jwtVerify>[2]>;

interface Signer {
  alg: "EdDSA" | "HS256";
  kid: string | undefined;
  privateKey: CryptoKey | Uint8Array;
  verify(token: string, options: VerifyOptions): Promise<{ payload: JWTPayload }>;
  publicJwks: JWK[];
}

function hmacSigner(secret: string): Signer {
  const key = new TextEncoder().encode(secret);
  return {
    alg: "HS256",
    kid: undefined,
    privateKey: key,
    verify: (token, options) => jwtVerify(token, key, options),
    publicJwks: [],
  };
}

async function ed25519Signer(config: Pick<Config, "dataDir" | "jwt">): Promise<Signer> {
  const privateJwk =
    config.jwt.privateKey !== undefined
      ? parseEd25519PrivateJwk(config.jwt.privateKey, "JWT_PRIVATE_KEY")
      : await loadOrCreateKeyFile(signingKeyFile(config.dataDir));
  const publicJwk = await publicHalf(privateJwk);
  const kid = publicJwk.kid as string;
  // The JWKS is also what this service verifies against: one code path. Key rotation adds keys
  // here (JWT_VERIFICATION_KEYS): first the next key, so every gateway knows it before any token
  // is signed with it; then, after the switch, the previous one until its tokens have expired.
  const publicJwks = [publicJwk, ...(await verificationKeys(config.jwt.verificationKeys))];
  const keySet = createLocalJWKSet({ keys: publicJwks });
  return {
    alg: "EdDSA",
    kid,
    // Only the key material: a supplied JWK's own alg/use/key_ops must not contradict how it is used here.
    privateKey: (await importJWK(
      { kty: "OKP", crv: "Ed25519", x: privateJwk.x, d: privateJwk.d },
      "EdDSA",
    )) as CryptoKey,
    verify: (token, options) => jwtVerify(token, keySet, options),
    publicJwks,
  };
}

/** The public JWK of an Ed25519 key (private or public), with its kid (the thumbprint when it has none). */
async function publicHalf(jwk: Pick<Ed25519PrivateJwk, "x" | "kid">): Promise<JWK> {
  const kid = jwk.kid ?? (await calculateJwkThumbprint({ kty: "OKP", crv: "Ed25519", x: jwk.x }));
  return { kty: "OKP", crv: "Ed25519", x: jwk.x, kid, alg: "EdDSA", use: "sig" };
}

function isEd25519Jwk(value: unknown): value is Pick<Ed25519PrivateJwk, "kty" | "crv" | "x" | "kid"> & JWK {
  const k = value as Partial<Ed25519PrivateJwk> | null;
  return (
    k !== null && typeof k === "object" && k.kty === "OKP" && k.crv === "Ed25519" && typeof k.x === "string"
  );
}

/** JWT_VERIFICATION_KEYS: a JSON array of Ed25519 JWKs; only their public halves are kept. */
async function verificationKeys(text: string | undefined): Promise<JWK[]> {
  if (text === undefined) return [];
  let keys: unknown;
  try {
    keys = JSON.parse(text);
  } catch {
    throw new Error("JWT_VERIFICATION_KEYS is not valid JSON: expected an array of Ed25519 JWKs");
  }
  if (!Array.isArray(keys)) throw new Error("JWT_VERIFICATION_KEYS must be a JSON array of Ed25519 JWKs");
  return Promise.all(
    keys.map((key) => {
      if (!isEd25519Jwk(key)) {
        throw new Error(
          'JWT_VERIFICATION_KEYS: every key must be an Ed25519 JWK (kty "OKP", crv "Ed25519", x)',
        );
      }
      return publicHalf({ x: key.x, kid: key.kid });
    }),
  );
}

interface Ed25519PrivateJwk extends JWK {
  kty: "OKP";
  crv: "Ed25519";
  x: string;
  d: string;
}

function parseEd25519PrivateJwk(text: string, source: string): Ed25519PrivateJwk {
  let jwk: unknown;
  try {
    jwk = JSON.parse(text);
  } catch {
    throw new Error(`${source} is not valid JSON: expected an Ed25519 private key as a JWK`);
  }
  const j = jwk as Partial<Ed25519PrivateJwk> | null;
  if (!isEd25519Jwk(j) || typeof j.d !== "string") {
    throw new Error(`${source} must be an Ed25519 private key as a JWK (kty "OKP", crv "Ed25519", x, d)`);
  }
  return j as Ed25519PrivateJwk;
}

/**
 * A new Ed25519 private key as a JWK (JSON) with its thumbprint as `kid`: what JWT_PRIVATE_KEY
 * takes, and what a first start writes to the data dir.
 */
export async function generateSigningKey(): Promise<string> {
  const { privateKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
  const jwk = await exportJWK(privateKey);
  const kid = await calculateJwkThumbprint(jwk);
  return JSON.stringify({ ...jwk, kid, alg: "EdDSA", use: "sig" });
}

/**
 * Reuses the key from an earlier start, or makes one. The new key is written to a temporary file
 * and hard-linked into place: the link fails if another process got there first, so two services
 * starting together on one data dir still end up with one key and nobody reads a half-written file.
 */
async function loadOrCreateKeyFile(file: string): Promise<Ed25519PrivateJwk> {
  try {
    return parseEd25519PrivateJwk(await readFile(file, "utf8"), file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const temporary = `${file}.${randomUUID()}.tmp`;
  await writeFile(temporary, `${await generateSigningKey()}\n`, { mode: 0o600 });
  try {
    await link(temporary, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  } finally {
    await unlink(temporary);
  }
  return parseEd25519PrivateJwk(await readFile(file, "utf8"), file);
}
