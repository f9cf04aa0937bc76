/** Reading the two Authorization schemes the auth service speaks. Both return undefined for anything malformed. */

export interface BasicCredentials {
  email: string;
  password: string;
}

/** `Basic base64(email:password)`; the password may contain colons (RFC 7617 splits at the first). */
export function parseBasicCredentials(header: string | undefined): BasicCredentials | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header ?? "");
  if (!match?.[1]) return undefined;
  const decoded = Buffer.from(match[1], "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon <= 0) return undefined;
  const password = decoded.slice(colon + 1);
  if (password === "") return undefined;
  return { email: decoded.slice(0, colon), password };
}

/** `Bearer <token>`. */
export function parseBearerToken(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  return match?.[1];
}
