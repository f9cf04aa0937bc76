import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Kysely } from "kysely";

/**
 * Short-lived signed download URLs: `/download?fid=<mp3Id>&expires=<unix s>&signature=<hmac>`.
 * A browser's `<audio>` element cannot send the bearer header, but it can fetch a URL, and then
 * it streams and seeks with Range requests on its own. The signature (HMAC-SHA256 with a key kept
 * in the gateway's database, so every replica shares it) binds the fid and the expiry: the URL
 * opens that one MP3, read-only, until it expires, and nothing else.
 */

/** How long a link works: long enough to listen to a long MP3 with pauses; the page asks anew after. */
export const DOWNLOAD_LINK_TTL_SECONDS = 60 * 60;

export interface SignedLink {
  url: string;
  expiresAt: string;
}

export interface DownloadLinks {
  sign(mp3Id: string, now?: Date): SignedLink;
  /** "valid", or why not: a wrong signature and an expired one are told apart for the user. */
  check(fid: string, expires: string, signature: string, now?: Date): "valid" | "expired" | "invalid";
}

export function createDownloadLinks(key: Buffer, ttlSeconds = DOWNLOAD_LINK_TTL_SECONDS): DownloadLinks {
  const mac = (fid: string, expires: string): Buffer =>
    createHmac("sha256", key).update(`download\n${fid}\n${expires}`).digest();
  return {
    sign(mp3Id, now = new Date()) {
      const expires = String(Math.floor(now.getTime() / 1000) + ttlSeconds);
      const signature = mac(mp3Id, expires).toString("base64url");
      const query = new URLSearchParams({ fid: mp3Id, expires, signature });
      return { url: `/download?${query}`, expiresAt: new Date(Number(expires) * 1000).toISOString() };
    },
    check(fid, expires, signature, now = new Date()) {
      if (!/^\d{1,12}$/.test(expires)) return "invalid";
      const given = Buffer.from(signature, "base64url");
      const expected = mac(fid, expires);
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) return "invalid";
      return Number(expires) * 1000 <= now.getTime() ? "expired" : "valid";
    },
  };
}

interface SecretsTable {
  name: string;
  value: string;
}

/** The key of the download links, made once by the migration that creates the table. */
export async function loadDownloadLinkKey(db: Kysely<{ gateway_secrets: SecretsTable }>): Promise<Buffer> {
  const row = await db
    .selectFrom("gateway_secrets")
    .select("value")
    .where("name", "=", DOWNLOAD_LINK_SECRET)
    .executeTakeFirstOrThrow();
  return Buffer.from(row.value, "hex");
}

export const DOWNLOAD_LINK_SECRET = "download-links";

/** A new random key, as hex, for the migration. */
export const newSecret = (): string => randomBytes(32).toString("hex");
