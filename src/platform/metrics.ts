import { timingSafeEqual } from "node:crypto";
import type { FastifyInstance, FastifyRequest } from "fastify";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { HttpError } from "./http.ts";
import { malformedRequest } from "./openapi.ts";

/**
 * Prometheus metrics, one registry per service instance (never prom-client's global one: several
 * services run in one process in `serve all` and in tests). Every series carries the label
 * `service`, so the merged `/metrics` of `serve all` tells the services apart.
 *
 * Services get a `ServiceMetrics` as a dependency and declare their counters through it; they
 * never touch prom-client themselves.
 */

type Labels<L extends string> = Partial<Record<L, string | number>>;

export interface CounterMetric<L extends string = string> {
  inc(labels?: Labels<L>, value?: number): void;
}

export interface GaugeMetric<L extends string = string> {
  inc(labels?: Labels<L>, value?: number): void;
  dec(labels?: Labels<L>, value?: number): void;
  set(labels: Labels<L>, value: number): void;
}

export interface HistogramMetric<L extends string = string> {
  observe(labels: Labels<L>, value: number): void;
}

interface MetricOptions<L extends string> {
  name: string;
  help: string;
  labelNames?: readonly L[];
  /** Label combinations reported as 0 before they first happen, so rates and alerts see them from the start. */
  initial?: Labels<L>[];
}

export interface ServiceMetrics {
  readonly service: string;
  counter<L extends string = never>(options: MetricOptions<L>): CounterMetric<L>;
  gauge<L extends string = never>(options: MetricOptions<L>): GaugeMetric<L>;
  histogram<L extends string = never>(options: MetricOptions<L> & { buckets: number[] }): HistogramMetric<L>;
  /** Also shows another service's metrics on this one's `/metrics` (`serve all`: all of them on the gateway's port). */
  include(other: ServiceMetrics): void;
  /** The Prometheus text exposition of this service and the ones included. */
  exposition(): Promise<string>;
  readonly contentType: string;
}

/** Request durations in seconds: API calls take milliseconds, uploads and downloads minutes. */
const HTTP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

/**
 * A registry labelled `service`. `processMetrics` adds prom-client's default process and Node.js
 * metrics (CPU, memory, event loop lag, GC); in `serve all` only one registry should have them.
 */
export function createServiceMetrics(
  service: string,
  options: { processMetrics?: boolean } = {},
): ServiceMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  const included: ServiceMetrics[] = [];

  return {
    service,
    contentType: registry.contentType,
    counter<L extends string>({ name, help, labelNames = [], initial }: MetricOptions<L>): CounterMetric<L> {
      const counter = new Counter<L>({ name, help, labelNames, registers: [registry] });
      for (const labels of initial ?? []) counter.inc(labels, 0);
      return {
        inc: (labels = {}, value = 1) => counter.inc(labels, value),
      };
    },
    gauge<L extends string>({ name, help, labelNames = [], initial }: MetricOptions<L>): GaugeMetric<L> {
      const gauge = new Gauge<L>({ name, help, labelNames, registers: [registry] });
      for (const labels of initial ?? []) gauge.set(labels, 0);
      return {
        inc: (labels = {}, value = 1) => gauge.inc(labels, value),
        dec: (labels = {}, value = 1) => gauge.dec(labels, value),
        set: (labels, value) => gauge.set(labels, value),
      };
    },
    histogram<L extends string>({
      name,
      help,
      labelNames = [],
      initial,
      buckets,
    }: MetricOptions<L> & { buckets: number[] }): HistogramMetric<L> {
      const histogram = new Histogram<L>({ name, help, labelNames, buckets, registers: [registry] });
      for (const labels of initial ?? []) histogram.zero(labels as Record<L, string | number>);
      return { observe: (labels, value) => histogram.observe(labels, value) };
    },
    include(other) {
      if (other !== this && !included.includes(other)) included.push(other);
    },
    async exposition() {
      const texts = [await registry.metrics()];
      for (const other of included) texts.push(await other.exposition());
      return mergeExpositions(texts);
    },
  };
}

/**
 * Several registries' text expositions as one: a metric family that several services report
 * (`http_request_duration_seconds`, the process metrics) must appear once, with one HELP and TYPE
 * line and all its samples together; the `service` label keeps the samples apart.
 */
export function mergeExpositions(texts: string[]): string {
  const families = new Map<string, { header: string[]; samples: string[] }>();
  for (const text of texts) {
    let current: { header: string[]; samples: string[] } | undefined;
    for (const line of text.split("\n")) {
      if (line === "") continue;
      const meta = /^# (HELP|TYPE) (\S+)/.exec(line);
      if (meta) {
        const name = meta[2] as string;
        let family = families.get(name);
        const isNew = family === undefined;
        if (!family) {
          family = { header: [], samples: [] };
          families.set(name, family);
        }
        current = family;
        if (isNew || !family.header.some((h) => h.startsWith(`# ${meta[1]} `))) family.header.push(line);
        continue;
      }
      if (line.startsWith("#")) continue;
      current?.samples.push(line);
    }
  }
  let out = "";
  for (const { header, samples } of families.values()) out += `${[...header, ...samples].join("\n")}\n`;
  return out;
}

/**
 * Request durations by method, route pattern (never the raw URL: ids would make a series each)
 * and status code, and `GET /metrics` with this service's metrics.
 */
export function registerMetrics(
  app: FastifyInstance,
  metrics: ServiceMetrics,
  access: { token?: string | undefined } = {},
): void {
  const duration = metrics.histogram<"method" | "route" | "status_code">({
    name: "http_request_duration_seconds",
    help: "HTTP requests by method, route pattern and status code: how long until the response ended.",
    labelNames: ["method", "route", "status_code"],
    buckets: HTTP_BUCKETS,
  });
  app.addHook("onResponse", async (request, reply) => {
    duration.observe(
      {
        method: request.method,
        route: request.routeOptions.url ?? "unmatched",
        status_code: reply.statusCode,
      },
      reply.elapsedTime / 1000,
    );
  });
  app.get(
    "/metrics",
    {
      schema: {
        operationId: "getMetrics",
        summary: "Prometheus metrics",
        description: "This service's metrics in the Prometheus text format (all services' in `serve all`).",
        tags: ["operations"],
        security: [],
        response: {
          403: {
            description: "Neither the METRICS_TOKEN nor a direct request from this machine",
            $ref: "Error#",
          },
          200: {
            description: "Prometheus text exposition format 0.0.4",
            content: { "text/plain": { schema: { type: "string" } } },
          },
          ...malformedRequest,
        },
      },
    },
    async (request, reply) => {
      if (!mayReadMetrics(request, access.token)) {
        throw new HttpError(
          403,
          "forbidden",
          "Metrics are not public: send Authorization: Bearer <METRICS_TOKEN>, or ask from this machine.",
        );
      }
      return reply.type(metrics.contentType).send(await metrics.exposition());
    },
  );
}

/**
 * `/metrics` is for the operator's Prometheus, not the public: with METRICS_TOKEN set it needs
 * that bearer token (Prometheus: `authorization: {credentials: …}`); without, only a direct request
 * from this machine (loopback, through no proxy) is answered.
 */
function mayReadMetrics(request: FastifyRequest, token: string | undefined): boolean {
  if (token !== undefined) {
    const sent = Buffer.from(/^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? "")?.[1] ?? "");
    const expected = Buffer.from(token);
    return sent.length === expected.length && timingSafeEqual(sent, expected);
  }
  const peer = request.raw.socket?.remoteAddress ?? "";
  const loopback = peer === "::1" || peer.startsWith("127.") || peer.startsWith("::ffff:127.");
  return (
    loopback && request.headers["x-forwarded-for"] === undefined && request.headers.forwarded === undefined
  );
}
