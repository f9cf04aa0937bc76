import { z } from "zod";
import { authError } from "./errors.ts";

/** Request shapes, with messages a client can act on ("password must be at least 8 characters"). */

const required = (type: string) => (issue: { input: unknown }) =>
  issue.input === undefined ? "is required" : `must be ${type}`;

export const emailField = z
  .string({ error: required("a string") })
  .trim()
  .toLowerCase()
  .max(254, { error: "must be at most 254 characters" })
  .pipe(z.email({ error: "must be a valid e-mail address" }));

// The upper bound only keeps absurd inputs out of the hash function; any real passphrase fits.
export const passwordField = z
  .string({ error: required("a string") })
  .min(8, { error: "must be at least 8 characters" })
  .max(1024, { error: "must be at most 1024 characters" });

const booleanField = z.boolean({ error: required("true or false") });

/** Objects reject unknown fields, so a typo (`disable`) is an error instead of silently ignored. */
function body<Shape extends z.ZodRawShape>(shape: Shape) {
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === "unrecognized_keys"
        ? `unknown field${issue.keys.length > 1 ? "s" : ""} ${issue.keys.join(", ")}`
        : "the body must be a JSON object",
  });
}

export const newUserBody = body({
  email: emailField,
  password: passwordField,
  admin: booleanField.optional(),
});

export const registrationBody = body({ email: emailField, password: passwordField });

export const passwordChangeBody = body({ currentPassword: passwordField, newPassword: passwordField });

export const userChangesBody = body({
  disabled: booleanField.optional(),
  password: passwordField.optional(),
  admin: booleanField.optional(),
}).refine((changes) => Object.keys(changes).length > 0, {
  error: "send at least one of disabled, password, admin",
});

export const userIdParams = z.object({
  id: z.uuid({ error: "must be a user id (a UUID)" }),
});

export const userListQuery = z.object({
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

/** The parsed value, or a 400 in the project's error format naming each problem. */
export function parseRequest<T extends z.ZodType>(schema: T, value: unknown): z.output<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) =>
    issue.path.length > 0 ? `${issue.path.join(".")} ${issue.message}` : issue.message,
  );
  throw authError("bad_request", `Invalid request: ${problems.join("; ")}.`);
}
