import { z } from "zod";

/** What auth signs and the gateway checks: the original's claim names plus the standard ones. */
export const TOKEN_ISSUER = "vid2mp3-auth";
export const TOKEN_AUDIENCE = "vid2mp3";

export const TokenClaims = z.object({
  sub: z.string().min(1).meta({ description: "User id" }),
  username: z.email().meta({ description: "The user's e-mail (the original's name)" }),
  admin: z.boolean(),
  iss: z.literal(TOKEN_ISSUER),
  aud: z.union([z.literal(TOKEN_AUDIENCE), z.array(z.string()).refine((a) => a.includes(TOKEN_AUDIENCE))]),
  iat: z.number(),
  exp: z.number(),
  jti: z.string().min(1),
  /**
   * The account's token generation when the token was signed. Auth bumps it when the password
   * changes or the account is disabled, which revokes every token signed before. Absent = 0.
   */
  gen: z.number().int().min(0).optional().meta({
    description: "The account's token generation (a password change or disabling moves it on)",
  }),
});
export type TokenClaims = z.infer<typeof TokenClaims>;

/** How far a token's `iat` may lie ahead of this clock (clocks drift); further means it was not issued by us now. */
export const MAX_CLOCK_SKEW_SECONDS = 60;

/** True when the token claims to be issued in the future: refused, whoever signed it. */
export function issuedInFuture(claims: { iat: number }, now: Date = new Date()): boolean {
  return claims.iat > now.getTime() / 1000 + MAX_CLOCK_SKEW_SECONDS;
}
