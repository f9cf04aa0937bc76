import { z } from "zod";
import { jsonSchemaOf } from "./api-components.ts";
import { PageQuery, required } from "./requests.ts";

/**
 * The auth service's HTTP API (login, users), written once in zod: auth validates requests with
 * these schemas (their messages are for the client: "password must be at least 8 characters"),
 * its answers and the command line take their types from here, and the OpenAPI documents of auth
 * and of the gateway (which forwards these routes unchanged) are made from them.
 */

/** A user as clients see it (never the password hash). */
export const User = z
  .object({
    id: z.uuid(),
    email: z.email(),
    admin: z.boolean(),
    disabled: z.boolean(),
    createdAt: z.iso.datetime(),
    updatedAt: z.iso.datetime(),
  })
  .meta({ id: "User", description: "A user account (never its password)." });
export type User = z.infer<typeof User>;

/** The answer to a login with `Accept: application/json`. */
export const IssuedToken = z
  .object({
    token: z.string().meta({ description: "The JWT" }),
    /** ISO-8601 time of `exp`. */
    expiresAt: z.iso.datetime(),
  })
  .meta({ id: "IssuedToken", description: "A token and when it expires." });
export type IssuedToken = z.infer<typeof IssuedToken>;

/** `GET /me`: the caller's own account. */
export const Account = z.object({ id: z.uuid(), email: z.email(), admin: z.boolean() });
export type Account = z.infer<typeof Account>;

/** A page of `GET /users`. */
export const UserPage = z.object({ users: z.array(User), total: z.number().int().min(0) });
export type UserPage = z.infer<typeof UserPage>;

// Requests. Every message completes "<field> …" (see src/contracts/requests.ts).

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

export const NewUserBody = body({
  email: emailField,
  password: passwordField,
  admin: booleanField.optional(),
});

export const RegistrationBody = body({ email: emailField, password: passwordField });

export const PasswordChangeBody = body({ currentPassword: passwordField, newPassword: passwordField });

export const UserChangesBody = body({
  disabled: booleanField.optional(),
  password: passwordField.optional(),
  admin: booleanField.optional(),
})
  .refine((changes) => Object.keys(changes).length > 0, {
    error: "send at least one of disabled, password, admin",
  })
  .meta({ description: "At least one of the fields." });

export const UserIdParams = z.object({ id: z.uuid({ error: "must be a user id (a UUID)" }) });

export const UserListQuery = PageQuery;

const errorRef = (description: string) => ({ description, $ref: "Error#" }) as const;

/**
 * The route schemas (summary, request, responses) of the user routes, for auth itself and the
 * gateway's forwarded copies. Every one needs an administrator's token except `/register`. The
 * request parts are the zod schemas above: auth validates with them, the documents show them.
 */
export const authApiRoutes = {
  login: {
    operationId: "login",
    summary: "Log in: e-mail and password (HTTP Basic) for a JWT",
    description:
      "Answers the token as `text/plain` (as the original did), or `{token, expiresAt}` with `Accept: application/json`.",
    tags: ["auth"],
    security: [{ basicAuth: [] }],
    response: {
      200: {
        description: "The token",
        content: {
          "text/plain": { schema: { type: "string", description: "The JWT" } },
          "application/json": { schema: { $ref: "IssuedToken#" } },
        },
      },
      401: errorRef("Missing or wrong credentials, or a disabled account"),
      429: errorRef("Too many failed logins for this e-mail from this address; see Retry-After"),
    },
  },
  register: {
    operationId: "register",
    summary: "Create your own account (only when the server runs with REGISTRATION=open)",
    tags: ["auth"],
    security: [],
    body: RegistrationBody,
    response: {
      201: { description: "Created; `Location: /users/<id>`", $ref: "User#" },
      400: errorRef("Invalid e-mail or password"),
      403: errorRef("Self-registration is closed"),
      409: errorRef("The e-mail is taken"),
    },
  },
  me: {
    operationId: "getMe",
    summary: "Your own account",
    tags: ["account"],
    security: [{ bearerAuth: [] }],
    response: {
      200: { description: "The caller's account", ...jsonSchemaOf(Account) },
      401: errorRef("No token"),
      403: errorRef("Invalid, expired or revoked token, or a disabled account"),
    },
  },
  changePassword: {
    operationId: "changePassword",
    summary: "Change your own password",
    description:
      "Every token issued before, the one sent included, is refused afterwards (within a minute at most): log in again.",
    tags: ["account"],
    security: [{ bearerAuth: [] }],
    body: PasswordChangeBody,
    response: {
      204: { description: "Changed", type: "null" },
      400: errorRef("Invalid request (a password must be 8 to 1024 characters)"),
      401: errorRef("No token"),
      403: errorRef(
        "Invalid, expired or revoked token, a disabled account, or a wrong current password (`wrong_password`)",
      ),
      429: errorRef("Too many wrong passwords from this address; see Retry-After"),
    },
  },
  createUser: {
    operationId: "createUser",
    summary: "Create a user (administrators)",
    tags: ["users"],
    security: [{ bearerAuth: [] }],
    body: NewUserBody,
    response: {
      201: { description: "Created; `Location: /users/<id>`", $ref: "User#" },
      400: errorRef("Invalid request"),
      401: errorRef("No token"),
      403: errorRef("Invalid token, or not an administrator"),
      409: errorRef("The e-mail is taken"),
    },
  },
  listUsers: {
    operationId: "listUsers",
    summary: "List users (administrators)",
    tags: ["users"],
    security: [{ bearerAuth: [] }],
    querystring: UserListQuery,
    response: {
      200: { description: "A page of users", ...jsonSchemaOf(UserPage) },
      400: errorRef("Invalid paging"),
      401: errorRef("No token"),
      403: errorRef("Invalid token, or not an administrator"),
    },
  },
  getUser: {
    operationId: "getUser",
    summary: "One user (administrators)",
    tags: ["users"],
    security: [{ bearerAuth: [] }],
    params: UserIdParams,
    response: {
      200: { description: "The user", $ref: "User#" },
      400: errorRef("Not a user id"),
      401: errorRef("No token"),
      403: errorRef("Invalid token, or not an administrator"),
      404: errorRef("No such user"),
    },
  },
  updateUser: {
    operationId: "updateUser",
    summary: "Disable or enable a user, set a password, grant or revoke admin (administrators)",
    tags: ["users"],
    security: [{ bearerAuth: [] }],
    params: UserIdParams,
    body: UserChangesBody,
    response: {
      200: { description: "The changed user", $ref: "User#" },
      400: errorRef("Invalid changes"),
      401: errorRef("No token"),
      403: errorRef("Invalid token, or not an administrator"),
      404: errorRef("No such user"),
      409: errorRef("You cannot disable yourself or remove your own admin rights"),
    },
  },
} as const;
