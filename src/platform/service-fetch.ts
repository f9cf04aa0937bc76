import type { FastifyInstance } from "fastify";

/**
 * How one service calls another: a `fetch` bound to the other service. Over the network it is
 * plain HTTP to its address; in the all-in-one process it is `inject()` into the other service's
 * Fastify instance, so the same code path runs without a port or a socket.
 */
export type ServiceFetch = (
  path: string,
  init?: { method?: string; headers?: Record<string, string>; body?: string },
) => Promise<Response>;

export function httpServiceFetch(baseUrl: string, timeoutMs = 5000): ServiceFetch {
  return (path, init = {}) =>
    fetch(new URL(path, baseUrl), { ...init, signal: AbortSignal.timeout(timeoutMs) });
}

export function injectServiceFetch(app: FastifyInstance): ServiceFetch {
  return async (path, init = {}) => {
    const response = await app.inject({
      method: (init.method ?? "GET") as "GET",
      url: path,
      headers: init.headers,
      payload: init.body,
    });
    const headers = new Headers();
    for (const [name, value] of Object.entries(response.headers)) {
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [String(value)]) headers.append(name, v);
    }
    const nullBody = response.statusCode === 204 || response.statusCode === 304 || init.method === "HEAD";
    return new Response(nullBody ? null : response.rawPayload, { status: response.statusCode, headers });
  };
}
