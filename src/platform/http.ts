import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  type FastifySchemaCompiler,
  type FastifyTypeProvider,
} from "fastify";
import type { z } from "zod";
import { isDatabaseUnavailable } from "./database.ts";
import { errorMessage } from "./error-message.ts";
import {
  clientErrorHandler,
  type HttpTimeouts,
  registerRequestDeadline,
  timeoutServerOptions,
} from "./http-timeouts.ts";
import type { Logger } from "./logger.ts";
import { registerMetrics, type ServiceMetrics } from "./metrics.ts";
import { malformedRequest, type OpenApiInfo, registerOpenApi } from "./openapi.ts";
import { registerSecurityHeaders } from "./security-headers.ts";
import { unavailableCause } from "./unavailable.ts";

/** An error the client can act on: answered as `{error: {code, message}}` with its status. */
export class HttpError extends Error {
  override name = "HttpError";
  readonly statusCode: number;
  readonly code: string;
  /** Headers to send with the answer (`Retry-After`). */
  readonly headers: Readonly<Record<string, string>>;
  constructor(statusCode: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.statusCode = statusCode;
    this.code = code;
    this.headers = headers;
  }
}

/**
 * A service's error codes, each with its status and when a client gets it: written once per
 * service (`src/<service>/errors.ts`), so the codes a client can meet are listed in one place.
 * Clients and tests depend on both code and status: never change either.
 */
export type ErrorCatalogue = Readonly<Record<string, { readonly status: number; readonly when: string }>>;

/** The constructor of a catalogue's errors: `fail("not_found", "No job with this id.")`, with the code's status. */
export function errorConstructor<Code extends string>(
  catalogue: Readonly<Record<Code, { readonly status: number; readonly when: string }>>,
) {
  return (code: Code, message: string, headers?: Record<string, string>): HttpError =>
    new HttpError(catalogue[code].status, code, message, headers);
}

/**
 * The one way requests are validated, in every service: a route's `querystring`, `params`,
 * `body` and `headers` are zod schemas (most from `src/contracts`), checked with zod before the
 * handler runs, which then gets the parsed value (coerced, defaults filled in). A refusal is
 * `400 bad_request` naming each problem. The OpenAPI document shows them as JSON Schema
 * (openapi.ts), and `app.withTypeProvider<ZodTypeProvider>()` types the handler's request from them.
 */
export const zodValidatorCompiler: FastifySchemaCompiler<z.ZodType> =
  ({ schema }) =>
  (data) => {
    const result = schema.safeParse(data);
    return result.success ? { value: result.data } : { error: invalidRequest(result.error) };
  };

export interface ZodTypeProvider extends FastifyTypeProvider {
  validator: this["schema"] extends z.ZodType ? z.output<this["schema"]> : unknown;
  serializer: this["schema"] extends z.ZodType ? z.input<this["schema"]> : unknown;
}

/** `400 bad_request` with every problem of a request, each as "<field> <what is wrong>". */
export function invalidRequest(error: z.ZodError): HttpError {
  const problems = error.issues.map((issue) =>
    issue.path.length > 0 ? `${issue.path.join(".")} ${issue.message}` : issue.message,
  );
  return new HttpError(400, "bad_request", `Invalid request: ${problems.join("; ")}.`);
}

export interface ErrorBody {
  error: { code: string; message: string };
}

const codeByStatus: Record<number, string> = {
  400: "bad_request",
  401: "unauthorized",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  409: "conflict",
  413: "payload_too_large",
  415: "unsupported_media_type",
  416: "range_not_satisfiable",
  429: "too_many_requests",
  408: "request_timeout",
  414: "uri_too_long",
  431: "headers_too_large",
  503: "unavailable",
};

/** How a 503's message names an `UnavailableError`'s backend. */
const backendNames: Record<string, string> = {
  database: "database",
  storage: "file storage",
  queue: "job queue",
  mail: "mail server",
  auth: "auth service",
};

/**
 * What the client is told for an error Fastify itself raised (a malformed URL, JSON or content
 * type): a fixed sentence per status, since Fastify's own messages quote the input back.
 */
const messageByStatus: Record<number, string> = {
  400: "The request is malformed.",
  404: "No such route.",
  405: "This method is not allowed here.",
  408: "The request took too long to arrive.",
  413: "The request body is too large.",
  414: "The URL is too long.",
  415: "This content type is not accepted here; send JSON.",
  431: "The request headers are too large.",
};

/** The JSON schema of `ErrorBody`, shared by every service as `{ $ref: "Error#" }`. */
export const errorSchema = {
  $id: "Error",
  type: "object",
  description: "Every error: a machine-readable code and a sentence the user can act on.",
  properties: {
    error: {
      type: "object",
      properties: {
        code: { type: "string", examples: ["not_found"] },
        message: { type: "string", examples: ["No job with this id."] },
      },
      required: ["code", "message"],
    },
  },
  required: ["error"],
} as const;

export interface RegisteredRoute {
  methods: string[];
  url: string;
}

const routesByApp = new WeakMap<FastifyInstance, RegisteredRoute[]>();

/** Every route added to a server made by `createHttpServer` (Fastify's automatic HEAD routes included). */
export function registeredRoutes(app: FastifyInstance): readonly RegisteredRoute[] {
  return routesByApp.get(app) ?? [];
}

export interface HttpServerOptions {
  bodyLimit?: number;
  /** Request durations and `GET /metrics`. */
  metrics?: ServiceMetrics;
  /** METRICS_TOKEN: the bearer token `GET /metrics` needs; unset = loopback only. */
  metricsToken?: string | undefined;
  /** `GET /openapi.json`, generated from the routes' schemas (only routes with tags are listed). */
  openapi?: OpenApiInfo;
  /** Routes exempt from the whole-request deadline (uploads: they take as long as the file needs). */
  unboundedBody?: (request: FastifyRequest) => boolean;
  /** Addresses or CIDRs (TRUST_PROXY) whose X-Forwarded-For sets `request.ip`; none = the peer's address. */
  trustProxy?: string[];
  /** Tests only: shorter timeouts (see http-timeouts.ts). */
  timeouts?: Partial<HttpTimeouts>;
}

/**
 * A Fastify instance with the project's defaults: pino logging, one error format for every
 * service, server errors never leaking internals to the client, and (with the options) metrics
 * and the OpenAPI document. Async because the OpenAPI plugin must be loaded before any route
 * is added.
 */
export async function createHttpServer(
  logger: Logger,
  options: HttpServerOptions = {},
): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    return503OnClosing: true,
    forceCloseConnections: "idle",
    ...timeoutServerOptions(options.timeouts),
    trustProxy: options.trustProxy && options.trustProxy.length > 0 ? options.trustProxy : false,
    clientErrorHandler,
    // A URL that does not decode: Fastify's default answer quotes it back in another shape.
    frameworkErrors: (_error, _request, reply) => {
      (reply as unknown as FastifyReply)
        .code(400)
        .send(errorBody(400, "bad_request", "The URL is malformed."));
    },
  }) as unknown as FastifyInstance;
  app.setValidatorCompiler(zodValidatorCompiler);
  registerSecurityHeaders(app);
  registerRequestDeadline(app, { requestMs: options.timeouts?.requestMs, unbounded: options.unboundedBody });
  app.addSchema(errorSchema);
  const routes: RegisteredRoute[] = [];
  routesByApp.set(app, routes);
  app.addHook("onRoute", (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    routes.push({ methods: [...methods], url: route.url });
  });
  if (options.openapi) await registerOpenApi(app, options.openapi);
  if (options.metrics) registerMetrics(app, options.metrics, { token: options.metricsToken });

  app.setErrorHandler((error: FastifyError | HttpError, request, reply) => {
    const backend =
      error instanceof HttpError
        ? undefined
        : (unavailableCause(error)?.backend ?? (isDatabaseUnavailable(error) ? "database" : undefined));
    if (backend !== undefined) {
      request.log.warn({ err: error, backend }, "backend unavailable");
      return reply
        .status(503)
        .header("Retry-After", "5")
        .send(
          errorBody(
            503,
            `${backend}_unavailable`,
            `The ${backendNames[backend] ?? backend} is not reachable; try again shortly.`,
          ),
        );
    }
    const status = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500;
    if (status >= 500 && !(error instanceof HttpError)) {
      request.log.error({ err: error }, "request failed");
      return reply.status(status).send(errorBody(status, "internal", "Something went wrong on our side."));
    }
    if (error instanceof HttpError) {
      return reply
        .status(status)
        .headers(error.headers)
        .send(errorBody(status, error.code, error.message));
    }
    const code = codeByStatus[status] ?? "bad_request";
    // Schema validation messages name the field and the rule, never the value sent.
    const message = error.validation
      ? `Invalid request: ${error.message}.`
      : (messageByStatus[status] ?? "The request cannot be served.");
    return reply.status(status).send(errorBody(status, code, message));
  });
  app.setNotFoundHandler((_request, reply) =>
    reply.status(404).send(errorBody(404, "not_found", messageByStatus[404] as string)),
  );
  return app;
}

export function errorBody(_status: number, code: string, message: string): ErrorBody {
  return { error: { code, message } };
}

export interface ReadinessCheck {
  name: string;
  check(): Promise<void>;
}

/** How long one backend check may take in `/readyz`: a silent backend must not make the probe time out. */
const READINESS_CHECK_TIMEOUT_MS = 2000;

/**
 * `/healthz`: the process is alive. `/readyz`: this pod can serve (started, not shutting down):
 * 200 with each backend check's result in the body (`degraded` when one fails); while the server
 * closes, Fastify answers every new request, this one too, with 503. A backend outage does not make the pod unready: every replica shares the same
 * backends, so taking them all out of the Service would replace the app's JSON 503s
 * (`database_unavailable`, `queue_unavailable`, ...) by a proxy's error page.
 */
export function registerHealthRoutes(app: FastifyInstance, checks: ReadinessCheck[]): void {
  app.get(
    "/healthz",
    {
      schema: {
        operationId: "getHealth",
        summary: "Liveness: the process answers",
        tags: ["operations"],
        security: [],
        response: {
          200: {
            description: "Alive",
            type: "object",
            properties: { status: { type: "string", const: "ok" } },
            required: ["status"],
          },
          ...malformedRequest,
        },
      },
    },
    async () => ({ status: "ok" }),
  );
  const readiness = {
    type: "object",
    properties: {
      status: { type: "string", enum: ["ready", "degraded"] },
      checks: {
        type: "array",
        items: {
          type: "object",
          properties: {
            name: { type: "string" },
            ok: { type: "boolean" },
            error: { type: "string", description: "Why the check failed" },
          },
          required: ["name", "ok"],
        },
      },
    },
    required: ["status", "checks"],
  } as const;
  app.get(
    "/readyz",
    {
      schema: {
        operationId: "getReadiness",
        summary: "Readiness: this pod can serve (backend outages are reported, answered by the app's 503s)",
        tags: ["operations"],
        security: [],
        response: {
          200: {
            description: "Ready; `degraded` when a backend does not answer (the checks say which)",
            ...readiness,
          },
          ...malformedRequest,
        },
      },
    },
    async (_request, reply) => {
      const results = await Promise.all(
        checks.map(async ({ name, check }) => {
          try {
            await withTimeout(
              check(),
              READINESS_CHECK_TIMEOUT_MS,
              `no answer within ${READINESS_CHECK_TIMEOUT_MS} ms`,
            );
            return { name, ok: true };
          } catch (error) {
            return { name, ok: false, error: errorMessage(error) };
          }
        }),
      );
      return reply.send({ status: results.every((r) => r.ok) ? "ready" : "degraded", checks: results });
    },
  );
}

function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
