import { z } from "zod";

/**
 * Pieces of request schemas shared by the APIs. Every message completes "<field> …", as the
 * services answer a refused request with "Invalid request: limit must be at most 100."
 */

/** The message of a missing or mistyped field. */
export const required = (type: string) => (issue: { input: unknown }) =>
  issue.input === undefined ? "is required" : `must be ${type}`;

/** `?limit=20&offset=0` of a list, newest first: at most 100 at a time. */
export const PageQuery = z.object({
  limit: z.coerce
    .number({ error: "must be a number" })
    .int({ error: "must be a whole number" })
    .min(1, { error: "must be at least 1" })
    .max(100, { error: "must be at most 100" })
    .default(20),
  offset: z.coerce
    .number({ error: "must be a number" })
    .int({ error: "must be a whole number" })
    .min(0, { error: "must be at least 0" })
    .default(0),
});
