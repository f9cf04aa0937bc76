/**
 * JSON Schemas of the auth service's HTTP API (login, users), for the OpenAPI documents of auth
 * and of the gateway, which forwards these routes unchanged. Requests are validated by auth with
 * zod (`src/auth/schemas.ts`, with friendlier messages); these schemas describe the same shapes.
 */

const email = { type: "string", format: "email", maxLength: 254 } as const;
const password = { type: "string", minLength: 8, maxLength: 1024 } as const;

/** `$ref: "User#"`: a user as clients see it (never the password hash). */
export const userSchema = {
  $id: "User",
  type: "object",
  properties: {
    id: { type: "string", format: "uuid" },
    email: { type: "string", format: "email" },
    admin: { type: "boolean" },
    disabled: { type: "boolean" },
    createdAt: { type: "string", format: "date-time" },
    updatedAt: { type: "string", format: "date-time" },
  },
  required: ["id", "email", "admin", "disabled", "createdAt", "updatedAt"],
} as const;

/** `$ref: "IssuedToken#"`: the answer to a login with `Accept: application/json`. */
export const issuedTokenSchema = {
  $id: "IssuedToken",
  type: "object",
  properties: {
    token: { type: "string", description: "The JWT" },
    expiresAt: { type: "string", format: "date-time" },
  },
  required: ["token", "expiresAt"],
} as const;

export const userListSchema = {
  type: "object",
  properties: {
    users: { type: "array", items: { $ref: "User#" } },
    total: { type: "integer", minimum: 0 },
  },
  required: ["users", "total"],
} as const;

export const newUserBody = {
  type: "object",
  properties: { email, password, admin: { type: "boolean", default: false } },
  required: ["email", "password"],
  additionalProperties: false,
} as const;

export const registrationBody = {
  type: "object",
  properties: { email, password },
  required: ["email", "password"],
  additionalProperties: false,
} as const;

export const userChangesBody = {
  type: "object",
  description: "At least one of the fields.",
  properties: { disabled: { type: "boolean" }, password, admin: { type: "boolean" } },
  minProperties: 1,
  additionalProperties: false,
} as const;

export const passwordChangeBody = {
  type: "object",
  properties: { currentPassword: password, newPassword: password },
  required: ["currentPassword", "newPassword"],
  additionalProperties: false,
} as const;

/** `GET /me`: the caller's own account. */
export const accountSchema = {
  type: "object",
  properties: {
    id: { type: "string", format: "uuid" },
    email: { type: "string", format: "email" },
    admin: { type: "boolean" },
  },
  required: ["id", "email", "admin"],
} as const;

export const userIdParams = {
  type: "object",
  properties: { id: { type: "string", format: "uuid" } },
  required: ["id"],
} as const;

export const userListQuery = {
  type: "object",
  properties: {
    limit: { type: "integer", minimum: 1, maximum: 100, default: 20 },
    offset: { type: "integer", minimum: 0, default: 0 },
  },
} as const;

export const sharedAuthApiSchemas = [userSchema, issuedTokenSchema];

const errorRef = (description: string) => ({ description, $ref: "Error#" }) as const;

/**
 * The route schemas (summary, request, responses) of the user routes, for auth itself and the
 * gateway's forwarded copies. Every one needs an administrator's token except `/register`.
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
    body: registrationBody,
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
      200: { description: "The caller's account", ...accountSchema },
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
    body: passwordChangeBody,
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
    body: newUserBody,
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
    querystring: userListQuery,
    response: {
      200: { description: "A page of users", ...userListSchema },
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
    params: userIdParams,
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
    params: userIdParams,
    body: userChangesBody,
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
