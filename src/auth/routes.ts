import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { jsonSchemaOf } from "../contracts/api-components.ts";
import { authApiRoutes, type User as PublicUser } from "../contracts/auth-api.ts";
import { TokenClaims } from "../contracts/tokens.ts";
import type { Config } from "../platform/config.ts";
import type { HttpError, ZodTypeProvider } from "../platform/http.ts";
import { errorResponse, malformedRequest } from "../platform/openapi.ts";
import { parseBasicCredentials, parseBearerToken } from "./credentials.ts";
import { authError } from "./errors.ts";
import type { PasswordAttempts } from "./password-attempts.ts";
import { hashPassword, verifyLogin, verifyPassword } from "./passwords.ts";
import { type AuthClaims, InvalidTokenError, type TokenService } from "./tokens.ts";
import { DuplicateEmailError, type User, type UsersRepository } from "./users.ts";

export interface AuthRouteDeps {
  config: Pick<Config, "registrationOpen">;
  users: UsersRepository;
  tokens: TokenService;
  attempts: PasswordAttempts;
}

/** What clients see of a user: never the password hash. */
export function toPublicUser(user: User): PublicUser {
  return {
    id: user.id,
    email: user.email,
    admin: user.admin,
    disabled: user.disabled,
    createdAt: user.createdAt,
    updatedAt: user.updatedAt,
  };
}

const REALM = "vid2mp3";

// One answer for every failed login: it must not tell an unknown e-mail from a wrong password or a disabled account.
const LOGIN_FAILED = "Invalid e-mail or password.";

export function registerAuthRoutes(fastify: FastifyInstance, deps: AuthRouteDeps): void {
  const { users, tokens, config, attempts } = deps;
  const app = fastify.withTypeProvider<ZodTypeProvider>();

  /** The caller behind the bearer token: 401 without a token, 403 for a bad one or a disabled account. */
  async function authenticate(
    request: FastifyRequest,
    reply: FastifyReply,
  ): Promise<{ claims: AuthClaims; user: User }> {
    const token = parseBearerToken(request.headers.authorization);
    if (token === undefined) {
      reply.header("WWW-Authenticate", `Bearer realm="${REALM}"`);
      throw authError("unauthorized", "Send your token as Authorization: Bearer <token>.");
    }
    let claims: AuthClaims;
    try {
      claims = await tokens.verify(token);
    } catch (error) {
      if (error instanceof InvalidTokenError) throw authError("invalid_token", error.message);
      throw error;
    }
    // A token outlives a change to its account; the account's current state decides.
    const user = await users.findById(claims.sub);
    if (!user || user.disabled) {
      throw authError("account_disabled", "The token's account is disabled or no longer exists.");
    }
    if ((claims.gen ?? 0) !== user.tokenGeneration) {
      throw authError(
        "token_revoked",
        "The token was revoked (the password was changed or the account disabled); log in again.",
      );
    }
    return { claims, user };
  }

  // Login and validation read only headers. Clients send all kinds of bodies with them (curl with
  // a JSON content type and nothing after it, forms); none of that may turn into a 400 or 415.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser("*", { parseAs: "buffer" }, (_request, _body, done) => done(null, undefined));

    scope.post("/login", { schema: authApiRoutes.login }, async (request, reply) => {
      reply.header("Cache-Control", "no-store");
      const credentials = parseBasicCredentials(request.headers.authorization);
      // request.ip: the client's address as the gateway forwarded it, believed only from TRUST_PROXY.
      const attempt = credentials && attempts.begin(credentials.email, request.ip, reply);
      let user: User | undefined;
      let passwordOk = false;
      if (credentials) {
        user = await users.findByEmail(credentials.email);
        // Always one argon2 verification (against a dummy hash for unknown e-mails): equal timing.
        passwordOk = await verifyLogin(user?.passwordHash, credentials.password);
      }
      if (!user || !passwordOk || user.disabled) {
        reply.header("WWW-Authenticate", `Basic realm="${REALM}", charset="UTF-8"`);
        throw authError("unauthorized", LOGIN_FAILED);
      }
      attempt?.succeeded();
      const issued = await tokens.sign(user);
      request.log.info({ userId: user.id }, "user logged in");
      if (acceptsJson(request.headers.accept)) return issued;
      return reply.type("text/plain; charset=utf-8").send(issued.token);
    });

    scope.post(
      "/validate",
      { schema: validateSchema },
      async (request, reply) => (await authenticate(request, reply)).claims,
    );
  });

  // The caller's own account: any valid token, no admin rights needed. The token is checked
  // before the request's input, so a request without one is 401 whatever else is wrong with it.
  const signedIn = new WeakMap<FastifyRequest, User>();
  const callerOf = (request: FastifyRequest): User => signedIn.get(request) as User;
  app.register(async (plugin) => {
    const account = plugin.withTypeProvider<ZodTypeProvider>();
    account.addHook("onRequest", async (request, reply) => {
      signedIn.set(request, (await authenticate(request, reply)).user);
    });

    account.get("/me", { schema: authApiRoutes.me }, async (request, reply) => {
      const user = callerOf(request);
      reply.header("Cache-Control", "no-store");
      return { id: user.id, email: user.email, admin: user.admin };
    });

    account.post("/me/password", { schema: authApiRoutes.changePassword }, async (request, reply) => {
      const user = callerOf(request);
      const { currentPassword, newPassword } = request.body;
      // A stolen token must not become a way to guess the password: the login throttle counts these too.
      const attempt = attempts.begin(user.email, request.ip, reply);
      if (!(await verifyPassword(user.passwordHash, currentPassword))) {
        throw authError("wrong_password", "The current password is not right.");
      }
      attempt.succeeded();
      // The generation moves on with the hash: every token issued so far, this one included, is refused.
      await users.update(user.id, { passwordHash: await hashPassword(newPassword) });
      request.log.info({ userId: user.id }, "user changed their password");
      return reply.code(204).send();
    });
  });

  app.get("/.well-known/jwks.json", { schema: jwksSchema }, async (_request, reply) => {
    reply.header("Cache-Control", "public, max-age=300");
    return tokens.jwks();
  });

  app.post(
    "/register",
    {
      schema: authApiRoutes.register,
      // Closed registration is said before the body is looked at.
      preValidation: async () => {
        if (!config.registrationOpen) {
          throw authError(
            "registration_closed",
            "Self-registration is closed on this server; ask an administrator for an account.",
          );
        }
      },
    },
    async (request, reply) => {
      const { email, password } = request.body;
      const user = await createUser(email, password, false);
      request.log.info({ userId: user.id }, "user registered");
      return reply.code(201).header("Location", `/users/${user.id}`).send(toPublicUser(user));
    },
  );

  // Admin only: every route in this scope first checks the bearer token for a current admin.
  // The administrator's id is kept per request for the audit log lines.
  const adminIds = new WeakMap<FastifyRequest, string>();
  app.register(async (plugin) => {
    const admin = plugin.withTypeProvider<ZodTypeProvider>();
    admin.addHook("onRequest", async (request, reply) => {
      const { user } = await authenticate(request, reply);
      if (!user.admin) throw authError("forbidden", "Only an administrator can manage users.");
      adminIds.set(request, user.id);
    });

    admin.post("/users", { schema: authApiRoutes.createUser }, async (request, reply) => {
      const { body } = request;
      const user = await createUser(body.email, body.password, body.admin ?? false);
      request.log.info({ userId: user.id, admin: user.admin, by: adminIds.get(request) }, "user created");
      return reply.code(201).header("Location", `/users/${user.id}`).send(toPublicUser(user));
    });

    admin.get("/users", { schema: authApiRoutes.listUsers }, async (request) => {
      const { users: list, total } = await users.list(request.query);
      return { users: list.map(toPublicUser), total };
    });

    admin.get("/users/:id", { schema: authApiRoutes.getUser }, async (request) => {
      const { id } = request.params;
      return toPublicUser(await findUserOr404(id));
    });

    admin.patch("/users/:id", { schema: authApiRoutes.updateUser }, async (request) => {
      const { id } = request.params;
      const changes = request.body;
      // Guard against the one mistake an admin cannot undo alone: locking themselves out.
      if (id === adminIds.get(request) && (changes.disabled === true || changes.admin === false)) {
        throw authError(
          "self_lockout",
          "You cannot disable your own account or remove your own admin rights; ask another administrator.",
        );
      }
      const updated = await users.update(id, {
        disabled: changes.disabled,
        admin: changes.admin,
        passwordHash: changes.password === undefined ? undefined : await hashPassword(changes.password),
      });
      if (!updated) throw notFound(id);
      request.log.info(
        { userId: id, by: adminIds.get(request), changed: Object.keys(changes).sort() },
        "user updated",
      );
      return toPublicUser(updated);
    });
  });

  async function createUser(email: string, password: string, isAdmin: boolean): Promise<User> {
    try {
      return await users.create({ email, passwordHash: await hashPassword(password), admin: isAdmin });
    } catch (error) {
      if (error instanceof DuplicateEmailError) throw authError("email_taken", error.message);
      throw error;
    }
  }

  async function findUserOr404(id: string): Promise<User> {
    const user = await users.findById(id);
    if (!user) throw notFound(id);
    return user;
  }
}

const validateSchema = {
  operationId: "validateToken",
  summary: "Check a token: its decoded claims",
  description:
    "What the gateway asks when tokens are HS256-signed (JWT_SECRET); with EdDSA it verifies locally.",
  tags: ["auth"],
  security: [{ bearerAuth: [] }],
  response: {
    // Every claim is passed on, those not listed too.
    200: { description: "The token's claims", ...jsonSchemaOf(TokenClaims), additionalProperties: true },
    401: errorResponse("No token"),
    403: errorResponse("Invalid or expired token, or a disabled account"),
  },
} as const;

const jwksSchema = {
  operationId: "getJwks",
  summary: "The public keys that verify tokens (JWKS)",
  tags: ["auth"],
  security: [],
  response: {
    200: {
      description: "A JSON Web Key Set (empty with HS256)",
      type: "object",
      properties: { keys: { type: "array", items: { type: "object", additionalProperties: true } } },
      required: ["keys"],
      additionalProperties: true,
    },
    ...malformedRequest,
  },
} as const;

function notFound(id: string): HttpError {
  return authError("not_found", `No user with id ${id}.`);
}

/** True when the client lists application/json among the types it accepts (curl's default is text). */
function acceptsJson(accept: string | undefined): boolean {
  return (accept ?? "")
    .split(",")
    .some((range) => range.split(";")[0]?.trim().toLowerCase() === "application/json");
}
