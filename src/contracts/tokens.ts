import { z } from "zod";

/** What auth signs and the gateway checks: the original's claim names plus the standard ones. */
export const TOKEN_ISSUER = "vid2mp3-auth";
export const TOKEN_AUDIENCE = "vid2mp3";

export const TokenClaims = z.object({
  sub: z.string().min(1),
  username: z.email(),
  admin: z.boolean(),
  iss: z.literal(TOKEN_ISSUER),
  aud: z.union([z.literal(TOKEN_AUDIENCE), z.array(z.string()).refine((a) => a.includes(TOKEN_AUDIENCE))]),
  iat: z.number(),
  exp: z.number(),
  jti: z.string().min(1),
});
export type TokenClaims = z.infer<typeof TokenClaims>;
