import Fastify, { type FastifyError, type FastifyInstance } from "fastify";
import { isDatabaseUnavailable } from "./database.ts";
import type { Logger } from "./logger.ts";

/** An error the client can act on: answered as `{error: {code, message}}` with its status. */
export class HttpError extends Error {
  override name = "HttpError";
  readonly statusCode: number;
  readonly code: string;
  constructor(statusCode: number, code: string, message: string) {
    super(message);
    this.statusCode = statusCode;
    this.code = code;
  }
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
  503: "unavailable",
};

/**
 * A Fastify instance with the project's defaults: pino logging, one error format for every
 * service, and server errors never leaking internals to the client.
 */
export function createHttpServer(logger: Logger, options: { bodyLimit?: number } = {}): FastifyInstance {
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: options.bodyLimit ?? 1024 * 1024,
    return503OnClosing: true,
    forceCloseConnections: "idle",
  }) as unknown as FastifyInstance;

  app.setErrorHandler((error: FastifyError | HttpError, request, reply) => {
    if (!(error instanceof HttpError) && isDatabaseUnavailable(error)) {
      request.log.warn({ err: error }, "database unavailable");
      return reply
        .status(503)
        .header("Retry-After", "5")
        .send(errorBody(503, "database_unavailable", "The database is not reachable; try again shortly."));
    }
    const status = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500;
    if (status >= 500 && !(error instanceof HttpError)) {
      request.log.error({ err: error }, "request failed");
      return reply.status(status).send(errorBody(status, "internal", "Something went wrong on our side."));
    }
    const code = error instanceof HttpError ? error.code : (codeByStatus[status] ?? "error");
    return reply.status(status).send(errorBody(status, code, error.message));
  });
  app.setNotFoundHandler((request, reply) =>
    reply
      .status(404)
      .send(errorBody(404, "not_found", `No route ${request.method} ${request.url.split("?")[0]}.`)),
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

/** `/healthz`: the process is alive. `/readyz`: every backend it needs answers (503 naming the ones that don't). */
export function registerHealthRoutes(app: FastifyInstance, checks: ReadinessCheck[]): void {
  app.get("/healthz", async () => ({ status: "ok" }));
  app.get("/readyz", async (_request, reply) => {
    const results = await Promise.all(
      checks.map(async ({ name, check }) => {
        try {
          await check();
          return { name, ok: true };
        } catch (error) {
          return { name, ok: false, error: (error as Error).message };
        }
      }),
    );
    const ready = results.every((r) => r.ok);
    return reply.status(ready ? 200 : 503).send({ status: ready ? "ready" : "unavailable", checks: results });
  });
}
