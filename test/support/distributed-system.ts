import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { gatewayClient } from "./client.ts";
import { createTestDatabase } from "./mariadb.ts";
import { makeVideo } from "./media.ts";
import { createTestVhost } from "./rabbitmq.ts";
import { startS3Server } from "./s3-server.ts";
import { type RunningServer, startServer } from "./server.ts";
import { startSmtpServer } from "./smtp-server.ts";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.ts";

export const ADMIN = { email: "admin@example.com", password: "admin-password-1" };

export interface DistributedSystemOptions {
  /** Names the temporary folder, the RabbitMQ vhost and the S3 bucket (`faults`, `distributed`). */
  name: string;
  /** Test videos made in the folder before anything starts: file name → seconds. */
  videos: Record<string, number>;
  /** Settings every service gets on top of the backends' (retry budgets, limits). */
  env: Record<string, string>;
  /** Puts the gateway's database behind a TCP proxy the test can pause (`proxy`). */
  proxyGatewayDatabase?: boolean;
  /** Longest wait for a process to be ready (a busy machine loads slowly). */
  startTimeoutMs?: number;
}

/**
 * The distributed system as separate OS processes, like pods, on the real backends: MariaDB (a
 * database for auth and one for the gateway), RabbitMQ (a vhost of its own), an S3 server and an
 * SMTP server, with auth, a gateway and the notification service started and the admin logged in.
 * Converters (and more gateways) are started by each test with `start`.
 */
export interface DistributedSystem {
  /** The temporary folder; `media(name)` is a file in it. */
  dir: string;
  media(name: string): string;
  /** Every process started so far, in order. */
  processes: RunningServer[];
  /** Starts a service with the common settings, a data dir of its own and `env`. */
  start(service: string, env?: Record<string, string>): Promise<RunningServer>;
  /** Runs `cleanup` when the system stops (before the backends it may use are removed). */
  defer(cleanup: () => Promise<unknown>): void;
  gateway: RunningServer;
  /** The gateway's own settings (database and auth address), for starting replicas. */
  gatewayEnv: Record<string, string>;
  /** The gateway's database, directly (not through the proxy). */
  gatewayDbUrl: string;
  /** Present with `proxyGatewayDatabase`. */
  proxy: TcpProxy | undefined;
  vhost: string;
  bucket: string;
  s3: Awaited<ReturnType<typeof startS3Server>>;
  smtp: Awaited<ReturnType<typeof startSmtpServer>>;
  client: ReturnType<typeof gatewayClient>;
  /** The admin's token. */
  token: string;
  /** Uploads `file` as the admin; the job's id (the upload must be accepted). */
  upload(file: string): Promise<string>;
  /** Conversions of the job run to the end, as `servers` (by default every process) logged them. */
  finishedConversions(jobId: string, servers?: RunningServer[]): number;
  /** An ffmpeg that reads its input at playback speed, so a conversion lasts as long as the video. */
  realtimeFfmpeg(): Promise<string>;
  /** Kills every process and removes everything the system made. */
  stop(): Promise<void>;
}

export async function startDistributedSystem(options: DistributedSystemOptions): Promise<DistributedSystem> {
  const dir = await mkdtemp(path.join(tmpdir(), `vid2mp3-${options.name}-`));
  const media = (name: string) => path.join(dir, name);
  const cleanups: (() => Promise<unknown>)[] = [];
  const processes: RunningServer[] = [];
  let common: Record<string, string> = {};
  const stop = async () => {
    await Promise.all(processes.map((p) => p.stop("SIGKILL")));
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  };
  const start = async (service: string, env: Record<string, string> = {}) => {
    const server = await startServer(
      { ...common, DATA_DIR: await mkdtemp(path.join(dir, `${service}-`)), ...env },
      { service, timeoutMs: options.startTimeoutMs },
    );
    processes.push(server);
    return server;
  };

  try {
    await Promise.all(
      Object.entries(options.videos).map(([name, seconds]) => makeVideo(media(name), { seconds })),
    );
    const [authDb, gatewayDb, testVhost, s3] = await Promise.all([
      createTestDatabase(),
      createTestDatabase(),
      createTestVhost(options.name),
      startS3Server(),
    ]);
    const smtp = await startSmtpServer();
    cleanups.push(authDb.drop, gatewayDb.drop, testVhost.delete, s3.stop, smtp.stop);
    let gatewayDbProxied = gatewayDb.url;
    let proxy: TcpProxy | undefined;
    if (options.proxyGatewayDatabase) {
      const url = new URL(gatewayDb.url);
      const started = await startTcpProxy(Number(url.port || 3306));
      proxy = started;
      cleanups.push(() => started.close());
      url.port = String(started.port);
      gatewayDbProxied = url.toString();
    }
    const bucket = `vid2mp3-${options.name}-${randomUUID().slice(0, 8)}`;
    common = {
      AMQP_URL: testVhost.url,
      S3_BUCKET: bucket,
      AWS_ENDPOINT_URL_S3: s3.endpoint,
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
      S3_FORCE_PATH_STYLE: "true",
      SMTP_URL: smtp.url,
      ...options.env,
    };
    const auth = await start("auth", {
      DATABASE_URL: authDb.url,
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
    });
    const gatewayEnv = { DATABASE_URL: gatewayDbProxied, AUTH_SVC_ADDRESS: auth.url };
    const gateway = await start("gateway", gatewayEnv);
    await start("notification");
    const client = gatewayClient(gateway.url);
    const token = await client.token(ADMIN.email, ADMIN.password);
    let realtimeFfmpeg: string | undefined;

    return {
      dir,
      media,
      processes,
      start,
      defer: (cleanup) => cleanups.push(cleanup),
      gateway,
      gatewayEnv,
      gatewayDbUrl: gatewayDb.url,
      proxy,
      vhost: testVhost.vhost,
      bucket,
      s3,
      smtp,
      client,
      token,
      async upload(file) {
        const response = await client.upload(token, file);
        assert.equal(response.status, 202, await response.clone().text());
        return ((await response.json()) as { jobId: string }).jobId;
      },
      finishedConversions: (jobId, servers = processes) =>
        servers
          .flatMap((server) => server.output().split("\n"))
          .filter((line) => line.includes(jobId) && line.includes('"conversion finished"')).length,
      async realtimeFfmpeg() {
        if (realtimeFfmpeg === undefined) {
          realtimeFfmpeg = media("realtime-ffmpeg");
          await writeFile(
            realtimeFfmpeg,
            '#!/bin/sh\ncase "$1" in -version) ;; *) set -- -re "$@" ;; esac\nexec ffmpeg "$@"\n',
          );
          await chmod(realtimeFfmpeg, 0o755);
        }
        return realtimeFfmpeg;
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
