import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { decodeJwt } from "jose";
import { authApiRoutes } from "../../contracts/auth-api.ts";
import { documentedOnly } from "../../platform/openapi.ts";
import type { ServiceFetch } from "../../platform/service-fetch.ts";
import { authUnavailable, gatewayErrorResponse } from "../errors.ts";

const authUnavailableResponse = gatewayErrorResponse("The auth service is not reachable", "auth_unavailable");

const forwardedRequestHeaders = ["authorization", "accept", "content-type"] as const;
const forwardedResponseHeaders = [
  "content-type",
  "www-authenticate",
  "cache-control",
  "location",
  "retry-after",
] as const;

/**
 * Login and user management belong to the auth service; the gateway, the only public entry,
 * passes these requests through unchanged (status, body and the headers that matter).
 */
export function registerAuthProxyRoutes(
  app: FastifyInstance,
  authFetch: ServiceFetch,
  /** Told the id of an account whose tokens a forwarded request has just revoked (password, disabled). */
  onAccountChanged: (userId: string) => void = () => {},
): void {
  const forward = async (request: FastifyRequest, reply: FastifyReply) => {
    const headers: Record<string, string> = {};
    for (const name of forwardedRequestHeaders) {
      const value = request.headers[name];
      if (typeof value === "string") headers[name] = value;
    }
    // The client's address, for auth's failed-login throttle (set here, never taken from the client).
    headers["x-forwarded-for"] = request.ip;
    const hasBody = request.body !== undefined && request.method !== "GET";
    if (hasBody) headers["content-type"] = "application/json";
    let response: Response;
    try {
      response = await authFetch(request.url, {
        method: request.method,
        headers,
        body: hasBody ? JSON.stringify(request.body) : undefined,
      });
    } catch (error) {
      request.log.warn({ err: error }, "auth service unreachable");
      throw authUnavailable();
    }
    if (response.ok) {
      const changed = changedAccount(request);
      if (changed) onAccountChanged(changed);
    }
    for (const name of forwardedResponseHeaders) {
      const value = response.headers.get(name);
      if (value !== null) reply.header(name, value);
    }
    return reply.status(response.status).send(Buffer.from(await response.arrayBuffer()));
  };

  // The schemas document auth's API; the request reaches auth as sent (auth validates it), and the
  // answer is passed on as bytes, which Fastify never re-serialises.
  const routes = [
    ["POST", "/login", authApiRoutes.login],
    ["POST", "/register", authApiRoutes.register],
    ["POST", "/users", authApiRoutes.createUser],
    ["GET", "/users", authApiRoutes.listUsers],
    ["GET", "/users/:id", authApiRoutes.getUser],
    ["PATCH", "/users/:id", authApiRoutes.updateUser],
    ["GET", "/me", authApiRoutes.me],
    ["POST", "/me/password", authApiRoutes.changePassword],
  ] as const;
  for (const [method, url, schema] of routes) {
    app.route({
      method,
      url,
      schema: { ...schema, response: { ...schema.response, 503: authUnavailableResponse } },
      ...documentedOnly,
      // Auth verifies the token it is passed (and answers for it); verifying it here too would cost a check for nothing.
      config: { tokenVerifiedByAuth: true },
      handler: forward,
    });
  }
}

/**
 * The account whose tokens a successful request revoked, so this replica stops accepting them at
 * once (other replicas notice within their recheck time). The token's subject is read unverified:
 * auth has just accepted it, and the id only selects what to forget.
 */
function changedAccount(request: FastifyRequest): string | undefined {
  if (request.method === "PATCH" && request.routeOptions.url === "/users/:id") {
    return (request.params as { id?: string }).id;
  }
  if (request.routeOptions.url === "/me/password") {
    const token = /^Bearer\s+(\S+)/i.exec(request.headers.authorization ?? "")?.[1];
    try {
      return token ? decodeJwt(token).sub : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}
