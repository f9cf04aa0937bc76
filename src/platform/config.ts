import path from "node:path";
import { z } from "zod";

/**
 * Configuration comes from environment variables only (twelve-factor), validated once at start.
 * The variable names are a contract (see docs/architecture.md); a wrong value stops the process
 * with one line that names the variable.
 */

const port = z.coerce.number().int().min(0).max(65535);
const positiveInt = z.coerce.number().int().positive();
const nonNegativeNumber = z.coerce.number().nonnegative();
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === "" ? undefined : v));
const url = z.url();

const schema = {
  HOST: z.string().min(1).default("0.0.0.0"),
  PORT: port.optional(),
  DATA_DIR: z.string().min(1).default("./data"),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  ADMIN_EMAIL: z.email().optional(),
  ADMIN_PASSWORD: z.string().min(8, "must be at least 8 characters").optional(),
  REGISTRATION: z.enum(["open", "closed"]).default("closed"),
  MAX_UPLOAD_BYTES: positiveInt.default(2 * 1024 ** 3),
  PUBLIC_URL: url.optional(),
  MAIL_FROM: z.string().min(3).default("vid2mp3 <no-reply@vid2mp3.localhost>"),
  JWT_SECRET: z.string().min(32, "must be at least 32 characters (HS256 needs a 256-bit secret)").optional(),
  JWT_PRIVATE_KEY: optionalString,
  JWT_TTL_SECONDS: positiveInt.default(24 * 3600),
  FFMPEG_PATH: optionalString,
  FFMPEG_TIMEOUT_SECONDS: positiveInt.default(3600),
  CONVERTER_CONCURRENCY: positiveInt.default(1),
  RETENTION_HOURS: nonNegativeNumber.default(0),
  VIDEO_QUEUE: z.string().min(1).default("video"),
  MP3_QUEUE: z.string().min(1).default("mp3"),
  JOB_EVENTS_QUEUE: z.string().min(1).default("job-events"),
  RETRY_DELAY_MS: nonNegativeNumber.default(5000),
  MAX_ATTEMPTS: positiveInt.default(5),
} as const;

type Schema = typeof schema;
type Raw = { [K in keyof Schema]: z.output<Schema[K]> };

export interface Config {
  host: string;
  /** Undefined means "the service's own default" (gateway 8080, auth 5000). */
  port: number | undefined;
  dataDir: string;
  logLevel: Raw["LOG_LEVEL"];
  admin: { email: string | undefined; password: string | undefined };
  registrationOpen: boolean;
  maxUploadBytes: number;
  publicUrl: string | undefined;
  mailFrom: string;
  jwt: { secret: string | undefined; privateKey: string | undefined; ttlSeconds: number };
  ffmpeg: { path: string | undefined; timeoutSeconds: number };
  converterConcurrency: number;
  retentionHours: number;
  queues: { video: string; mp3: string; jobEvents: string };
  retry: { delayMs: number; maxAttempts: number };
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const raw = {} as Record<string, unknown>;
  for (const [name, parser] of Object.entries(schema)) {
    const value = env[name] === "" ? undefined : env[name];
    const result = (parser as z.ZodType).safeParse(value);
    if (!result.success) {
      const reason = result.error.issues[0]?.message ?? "invalid value";
      throw new ConfigError(`Invalid environment variable ${name}=${JSON.stringify(value)}: ${reason}`);
    }
    raw[name] = result.data;
  }
  const r = raw as Raw;
  if (r.ADMIN_PASSWORD !== undefined && r.ADMIN_EMAIL === undefined) {
    throw new ConfigError("Invalid environment variable ADMIN_PASSWORD: set ADMIN_EMAIL with it");
  }
  return {
    host: r.HOST,
    port: r.PORT,
    dataDir: path.resolve(r.DATA_DIR),
    logLevel: r.LOG_LEVEL,
    admin: { email: r.ADMIN_EMAIL, password: r.ADMIN_PASSWORD },
    registrationOpen: r.REGISTRATION === "open",
    maxUploadBytes: r.MAX_UPLOAD_BYTES,
    publicUrl: r.PUBLIC_URL?.replace(/\/+$/, ""),
    mailFrom: r.MAIL_FROM,
    jwt: { secret: r.JWT_SECRET, privateKey: r.JWT_PRIVATE_KEY, ttlSeconds: r.JWT_TTL_SECONDS },
    ffmpeg: { path: r.FFMPEG_PATH, timeoutSeconds: r.FFMPEG_TIMEOUT_SECONDS },
    converterConcurrency: r.CONVERTER_CONCURRENCY,
    retentionHours: r.RETENTION_HOURS,
    queues: { video: r.VIDEO_QUEUE, mp3: r.MP3_QUEUE, jobEvents: r.JOB_EVENTS_QUEUE },
    retry: { delayMs: r.RETRY_DELAY_MS, maxAttempts: r.MAX_ATTEMPTS },
  };
}
