import type { z } from "zod";
import { authError } from "./errors.ts";

/** Auth's request shapes are API contracts: `src/contracts/auth-api.ts`. */

/** The parsed value, or a 400 in the project's error format naming each problem. */
export function parseRequest<T extends z.ZodType>(schema: T, value: unknown): z.output<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) =>
    issue.path.length > 0 ? `${issue.path.join(".")} ${issue.message}` : issue.message,
  );
  throw authError("bad_request", `Invalid request: ${problems.join("; ")}.`);
}
