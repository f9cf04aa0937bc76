import path from "node:path";
import { z } from "zod";

/**
 * Configuration comes from environment variables only (twelve-factor), validated once at start.
 * The variable names are a contract (see docs/architecture.md); a wrong value stops the process
 * with one line that names the variable.
 */

/** Plain decimal digits only: " " or "0x1F90" are mistakes, not numbers. */
const wholeNumber = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .regex(/^\d+$/, "must be a whole number")
    .transform(Number)
    .pipe(z.number().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));
const port = wholeNumber(0, 65535);
const positiveInt = wholeNumber(1);
const nonNegativeNumber = z
  .string()
  .regex(/^\d+(\.\d+)?$/, "must be a number")
  .transform(Number);
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === "" ? undefined : v));
const url = z.url();
function urlWithScheme(schemes: string[]) {
  return z.url().refine((v) => schemes.includes(new URL(v).protocol.slice(0, -1)), {
    message: `must be a URL starting with ${schemes.map((s) => `${s}://`).join(" or ")}`,
  });
}

const schema = {
  HOST: z.string().min(1).optional(),
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
  JWT_VERIFICATION_KEYS: optionalString,
  JWT_TTL_SECONDS: positiveInt.default(24 * 3600),
  FFMPEG_PATH: optionalString,
  FFMPEG_TIMEOUT_SECONDS: positiveInt.default(3600),
  CONVERTER_CONCURRENCY: positiveInt.default(1),
  CONVERTER_DRAIN_SECONDS: wholeNumber(0).default(0),
  // Segmented encoding of long inputs on several cores: "auto" uses the cores other conversions
  // of this converter leave free; a number is the encoder processes per conversion (1 = never).
  CONVERTER_SEGMENT_WORKERS: z
    .union([z.literal("auto"), wholeNumber(1, 64)], {
      error: 'must be "auto" or a whole number from 1 to 64',
    })
    .default("auto"),
  CONVERTER_SEGMENT_MIN_SECONDS: nonNegativeNumber.default(180),
  // Segments of one long conversion offered at once to the other converters (0: none; every
  // converter with more than 0 also helps the others).
  CONVERTER_SEGMENT_FANOUT: wholeNumber(0, 64).default(0),
  // A week: long enough to come back for a file, short enough that storage does not grow for ever.
  RETENTION_HOURS: nonNegativeNumber.default(168),
  // 0 switches a limit off. Four hours of audio covers films and long podcasts; its MP3 stays under 600 MB.
  MAX_AUDIO_SECONDS: wholeNumber(0).default(4 * 3600),
  MAX_ACTIVE_JOBS_PER_USER: wholeNumber(0).default(5),
  USER_QUOTA_BYTES: wholeNumber(0).default(10 * 1024 ** 3),
  TRUST_PROXY: z
    .string()
    .transform((v) =>
      v
        .split(",")
        .map((entry) => entry.trim())
        .filter((entry) => entry !== ""),
    )
    .pipe(
      z.array(
        z.union(
          [z.ipv4(), z.ipv6(), z.cidrv4(), z.cidrv6()],
          "must be IP addresses or CIDRs, comma-separated",
        ),
      ),
    )
    .default([]),
  METRICS_TOKEN: z.string().min(16, "must be at least 16 characters").optional(),
  VIDEO_QUEUE: z.string().min(1).default("video"),
  MP3_QUEUE: z.string().min(1).default("mp3"),
  JOB_EVENTS_QUEUE: z.string().min(1).default("job-events"),
  SEGMENT_QUEUE: z.string().min(1).default("video-segments"),
  RETRY_DELAY_MS: nonNegativeNumber.default(5000),
  MAX_ATTEMPTS: positiveInt.default(5),
  RETRY_MAX_DELAY_MS: nonNegativeNumber.default(30 * 60_000),
  MAIL_MAX_ATTEMPTS: positiveInt.default(12),
  JOB_SWEEP_INTERVAL_SECONDS: nonNegativeNumber.default(60),
  JOB_STALE_SECONDS: nonNegativeNumber.default(600),
  INCOMPLETE_UPLOAD_MAX_AGE_HOURS: nonNegativeNumber.default(24),
  // Distributed backends: each one unset means its embedded default.
  DATABASE_URL: urlWithScheme(["mysql", "mariadb"]).optional(),
  MIGRATE_ON_START: z.enum(["true", "false"]).default("true"),
  MYSQL_HOST: optionalString,
  MYSQL_PORT: port.default(3306),
  MYSQL_USER: z.string().min(1).default("root"),
  MYSQL_PASSWORD: z.string().default(""),
  MYSQL_DB: optionalString,
  AMQP_URL: urlWithScheme(["amqp", "amqps"]).optional(),
  S3_BUCKET: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "must be a valid S3 bucket name")
    .optional(),
  AWS_ENDPOINT_URL_S3: url.optional(),
  AWS_REGION: z.string().min(1).default("us-east-1"),
  AWS_ACCESS_KEY_ID: optionalString,
  AWS_SECRET_ACCESS_KEY: optionalString,
  S3_FORCE_PATH_STYLE: z.enum(["true", "false"]).default("false"),
  SMTP_URL: urlWithScheme(["smtp", "smtps"]).optional(),
  AUTH_SVC_ADDRESS: z
    .string()
    .transform((v) => (/^https?:\/\//.test(v) ? v : `http://${v}`))
    .pipe(url)
    .optional(),
} as const;

/** Every environment variable loadConfig reads (deploy manifests are checked against it). */
export const configVariableNames = Object.freeze(Object.keys(schema)) as readonly (keyof typeof schema)[];

type Schema = typeof schema;
type Raw = { [K in keyof Schema]: z.output<Schema[K]> };

export interface Config {
  /** Undefined means "the service's own default": 127.0.0.1 for `serve all`, 0.0.0.0 for one service. */
  host: string | undefined;
  /** Undefined means "the service's own default" (gateway 8080, auth 5000). */
  port: number | undefined;
  dataDir: string;
  logLevel: Raw["LOG_LEVEL"];
  admin: { email: string | undefined; password: string | undefined };
  registrationOpen: boolean;
  maxUploadBytes: number;
  publicUrl: string | undefined;
  mailFrom: string;
  jwt: {
    secret: string | undefined;
    privateKey: string | undefined;
    /** More Ed25519 keys (a JSON array of JWKs) published and accepted besides the signing key: key rotation. */
    verificationKeys: string | undefined;
    ttlSeconds: number;
  };
  ffmpeg: { path: string | undefined; timeoutSeconds: number };
  converterConcurrency: number;
  /** On shutdown, how long conversions in hand may go on before they are stopped (0: at once). */
  converterDrainSeconds: number;
  /**
   * Segmented encoding: encoder processes per long conversion ("auto": the free cores), from which
   * audio length, and how many segments at once are offered to the other converters (0: none).
   */
  converterSegments: { workers: number | "auto"; minSeconds: number; fanout: number };
  retentionHours: number;
  limits: {
    /** Longest audio converted, in seconds; 0 = no limit. */
    maxAudioSeconds: number;
    /** Queued plus converting jobs one user may have; 0 = no limit. */
    maxActiveJobsPerUser: number;
    /** Bytes one user may hold (MP3s kept and uploads waiting); 0 = no limit. */
    userQuotaBytes: number;
  };
  /** Proxies (addresses, CIDRs) whose X-Forwarded-For is believed; empty = the peer is the client. */
  trustProxy: string[];
  /** Bearer token for `GET /metrics`; undefined = /metrics answers only on loopback. */
  metricsToken: string | undefined;
  /** `segments`: a long conversion's segments offered to the other converters (CONVERTER_SEGMENT_FANOUT). */
  queues: { video: string; mp3: string; jobEvents: string; segments: string };
  /** Failed messages: first delay (doubling), the longest delay, deliveries before the dead-letter queue (mails: `mailMaxAttempts`). */
  retry: { delayMs: number; maxAttempts: number; maxDelayMs: number; mailMaxAttempts: number };
  /** The gateway's sweep of unfinished jobs whose message was lost (see gateway/job-lifecycle.ts). */
  jobSweep: { everyMs: number; queuedAfterMs: number; convertingAfterMs: number };
  /** Incomplete uploads (S3 multipart uploads, the folder store's temp files) older than this are removed by the gateway. */
  incompleteUploadMaxAgeMs: number;
  /** MySQL/MariaDB URL (from DATABASE_URL or the original's MYSQL_*); undefined = SQLite under DATA_DIR. */
  databaseUrl: string | undefined;
  /** Migrate the schema at start (default), or only check it (migrations run apart: `vid2mp3 migrate`). */
  migrateOnStart: boolean;
  /** RabbitMQ URL; undefined = the in-process broker. */
  amqpUrl: string | undefined;
  /** S3-compatible storage; undefined = a folder under DATA_DIR. */
  s3:
    | {
        bucket: string;
        endpoint: string | undefined;
        region: string;
        forcePathStyle: boolean;
        credentials: { accessKeyId: string; secretAccessKey: string } | undefined;
      }
    | undefined;
  /** SMTP server URL (smtp:// or smtps://, credentials in the URL); undefined = the outbox folder. */
  smtpUrl: string | undefined;
  /** The auth service's base URL for a gateway running alone; undefined = in the same process. */
  authServiceAddress: string | undefined;
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
  if ((r.AWS_ACCESS_KEY_ID === undefined) !== (r.AWS_SECRET_ACCESS_KEY === undefined)) {
    throw new ConfigError(
      "Invalid environment variable AWS_SECRET_ACCESS_KEY: set it together with AWS_ACCESS_KEY_ID",
    );
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
    jwt: {
      secret: r.JWT_SECRET,
      privateKey: r.JWT_PRIVATE_KEY,
      verificationKeys: r.JWT_VERIFICATION_KEYS,
      ttlSeconds: r.JWT_TTL_SECONDS,
    },
    ffmpeg: { path: r.FFMPEG_PATH, timeoutSeconds: r.FFMPEG_TIMEOUT_SECONDS },
    converterConcurrency: r.CONVERTER_CONCURRENCY,
    converterDrainSeconds: r.CONVERTER_DRAIN_SECONDS,
    converterSegments: {
      workers: r.CONVERTER_SEGMENT_WORKERS,
      minSeconds: r.CONVERTER_SEGMENT_MIN_SECONDS,
      fanout: r.CONVERTER_SEGMENT_FANOUT,
    },
    retentionHours: r.RETENTION_HOURS,
    limits: {
      maxAudioSeconds: r.MAX_AUDIO_SECONDS,
      maxActiveJobsPerUser: r.MAX_ACTIVE_JOBS_PER_USER,
      userQuotaBytes: r.USER_QUOTA_BYTES,
    },
    trustProxy: r.TRUST_PROXY,
    metricsToken: r.METRICS_TOKEN,
    queues: {
      video: r.VIDEO_QUEUE,
      mp3: r.MP3_QUEUE,
      jobEvents: r.JOB_EVENTS_QUEUE,
      segments: r.SEGMENT_QUEUE,
    },
    retry: {
      delayMs: r.RETRY_DELAY_MS,
      maxAttempts: r.MAX_ATTEMPTS,
      maxDelayMs: r.RETRY_MAX_DELAY_MS,
      mailMaxAttempts: r.MAIL_MAX_ATTEMPTS,
    },
    jobSweep: {
      everyMs: Math.max(1, r.JOB_SWEEP_INTERVAL_SECONDS * 1000),
      queuedAfterMs: r.JOB_STALE_SECONDS * 1000,
      // A running conversion may send no event for as long as ffmpeg may run (no known duration,
      // no progress): only after that is a converting job surely abandoned.
      convertingAfterMs: Math.max(r.JOB_STALE_SECONDS, r.FFMPEG_TIMEOUT_SECONDS + 300) * 1000,
    },
    incompleteUploadMaxAgeMs: r.INCOMPLETE_UPLOAD_MAX_AGE_HOURS * 3_600_000,
    databaseUrl: r.DATABASE_URL ?? mysqlUrlFromOriginalVariables(r),
    migrateOnStart: r.MIGRATE_ON_START === "true",
    amqpUrl: r.AMQP_URL,
    s3: r.S3_BUCKET
      ? {
          bucket: r.S3_BUCKET,
          endpoint: r.AWS_ENDPOINT_URL_S3,
          region: r.AWS_REGION,
          forcePathStyle: r.S3_FORCE_PATH_STYLE === "true",
          credentials:
            r.AWS_ACCESS_KEY_ID && r.AWS_SECRET_ACCESS_KEY
              ? { accessKeyId: r.AWS_ACCESS_KEY_ID, secretAccessKey: r.AWS_SECRET_ACCESS_KEY }
              : undefined,
        }
      : undefined,
    smtpUrl: r.SMTP_URL,
    authServiceAddress: r.AUTH_SVC_ADDRESS?.replace(/\/+$/, ""),
  };
}

/** The original system's MYSQL_HOST/PORT/USER/PASSWORD/DB, as one URL (only when MYSQL_HOST is set). */
function mysqlUrlFromOriginalVariables(r: Raw): string | undefined {
  if (!r.MYSQL_HOST) return undefined;
  const url = new URL("mysql://placeholder");
  url.hostname = r.MYSQL_HOST;
  url.port = String(r.MYSQL_PORT);
  url.username = r.MYSQL_USER;
  url.password = r.MYSQL_PASSWORD;
  url.pathname = `/${r.MYSQL_DB ?? "vid2mp3"}`;
  return url.toString();
}
