import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { stripVTControlCharacters } from "node:util";
import {
  DeleteBucketCommand,
  DeleteObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from "@aws-sdk/client-s3";

const require = createRequire(import.meta.url);
const self = fileURLToPath(import.meta.url);

export interface RunningS3Server {
  /** `http://127.0.0.1:<port>`; use it with `forcePathStyle: true`. */
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  process: ChildProcess;
  /** Everything the server printed so far (colours removed). */
  output(): string;
  /** SIGTERM, wait for the exit, remove the data folder. Safe to call twice and after `kill()`. */
  stop(): Promise<void>;
  /** SIGKILL (a crash), wait for the exit; the data folder stays until `stop()`. */
  kill(): Promise<void>;
}

/**
 * Starts s3rver (a real S3-compatible HTTP server) as a separate OS process on a free port, with
 * its own temporary data folder. s3rver accepts only its fixed key pair S3RVER/S3RVER. s3rver
 * answers ListMultipartUploads and AbortMultipartUpload with NotImplemented (and no S3 server on
 * npm implements the first), so the child adds the two operations on s3rver's own multipart store
 * (see `multipartExtensions`), enough for the sweep of incomplete uploads to run against it.
 */
export async function startS3Server(timeoutMs = 60_000): Promise<RunningS3Server> {
  const dir = await mkdtemp(path.join(tmpdir(), "s3rver-"));
  // This very file is the child's program (see the end): stdin is a pipe, so the child exits
  // when the test process dies without stopping it, instead of lingering.
  const child = spawn(process.execPath, [self, dir], { stdio: ["pipe", "pipe", "pipe"] });
  const exited = once(child, "exit");
  let output = "";
  const onData = (chunk: Buffer) => {
    output += stripVTControlCharacters(chunk.toString());
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);

  let port: string;
  try {
    port = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`s3rver not ready in ${timeoutMs} ms:\n${output}`)),
        timeoutMs,
      );
      child.stdout.on("data", () => {
        const match = /S3rver listening on port (\d+)/.exec(output);
        if (match?.[1]) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      child.on("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`s3rver exited with ${code} before it was ready:\n${output}`));
      });
    });
  } catch (error) {
    child.kill("SIGKILL");
    await exited;
    await rm(dir, { recursive: true, force: true });
    throw error;
  }

  const running = () => child.exitCode === null && child.signalCode === null;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    region: "us-east-1",
    accessKeyId: "S3RVER",
    secretAccessKey: "S3RVER",
    process: child,
    output: () => output,
    async stop() {
      if (running()) child.kill("SIGTERM");
      // s3rver waits for open keep-alive connections; do not let a forgotten client hang the suite.
      const impatient = setTimeout(() => child.kill("SIGKILL"), 3_000);
      await exited;
      clearTimeout(impatient);
      await rm(dir, { recursive: true, force: true });
    },
    async kill() {
      if (running()) child.kill("SIGKILL");
      await exited;
    },
  };
}

/** An S3 client for test set-up and inspection (bucket listing, clean-up), not the code under test. */
export function adminClient(server: RunningS3Server): S3Client {
  return new S3Client({
    endpoint: server.endpoint,
    region: server.region,
    forcePathStyle: true,
    credentials: { accessKeyId: server.accessKeyId, secretAccessKey: server.secretAccessKey },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });
}

/** Deletes every object in the bucket, then the bucket; a missing bucket is fine. */
export async function deleteBucket(server: RunningS3Server, bucket: string): Promise<void> {
  const client = adminClient(server);
  try {
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      for (const object of page.Contents ?? []) {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: object.Key }));
      }
      token = page.NextContinuationToken;
    } while (token);
    await client.send(new DeleteBucketCommand({ Bucket: bucket }));
  } catch (error) {
    if ((error as Error).name !== "NoSuchBucket") throw error;
  } finally {
    client.destroy();
  }
}

/** The bucket's keys (to prove that a failed upload left nothing). */
export async function listKeys(server: RunningS3Server, bucket: string): Promise<string[]> {
  const client = adminClient(server);
  try {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
    return (page.Contents ?? []).map((object) => object.Key ?? "");
  } finally {
    client.destroy();
  }
}

interface S3rverInstance {
  run(): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
  middleware: KoaMiddleware[];
  store: { getResourcePath(bucket: string, key: string | undefined, resource: string): string };
}

interface KoaContext {
  method: string;
  path: string;
  query: Record<string, string | undefined>;
  status: number;
  body: unknown;
  type: string;
}
type KoaMiddleware = (ctx: KoaContext, next: () => Promise<void>) => Promise<void>;

/**
 * ListMultipartUploads (`GET /<bucket>?uploads`) and AbortMultipartUpload
 * (`DELETE /<bucket>/<key>?uploadId=…`) over s3rver's store: an upload is the folder
 * `<bucket>/._S3rver_uploads/<uploadId>/` holding its `key`, `metadata` and parts; its folder's
 * time is its initiation. Path-style requests only; no signature check (a local test server).
 */
function multipartExtensions(server: S3rverInstance): KoaMiddleware {
  return async (ctx, next) => {
    const [bucket, ...keyParts] = ctx.path.split("/").filter((part) => part !== "");
    if (!bucket) return next();
    const uploadsDir = server.store.getResourcePath(bucket, undefined, "uploads");
    if (ctx.method === "GET" && keyParts.length === 0 && "uploads" in ctx.query) {
      const ids = await readdir(uploadsDir).catch(() => [] as string[]);
      const uploads = await Promise.all(
        ids.map(async (id) => {
          const dir = path.join(uploadsDir, id);
          const [key, info] = await Promise.all([readFile(path.join(dir, "key"), "utf8"), stat(dir)]);
          return { id, key, initiated: info.mtime.toISOString() };
        }),
      );
      const xml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
      ctx.type = "application/xml";
      ctx.body =
        `<?xml version="1.0" encoding="UTF-8"?><ListMultipartUploadsResult><Bucket>${xml(bucket)}</Bucket>` +
        "<IsTruncated>false</IsTruncated>" +
        uploads
          .map(
            (u) =>
              `<Upload><Key>${xml(u.key)}</Key><UploadId>${xml(u.id)}</UploadId><Initiated>${u.initiated}</Initiated></Upload>`,
          )
          .join("") +
        "</ListMultipartUploadsResult>";
      return;
    }
    const uploadId = ctx.query.uploadId;
    if (ctx.method === "DELETE" && keyParts.length > 0 && uploadId && /^[0-9a-f]+$/.test(uploadId)) {
      const dir = path.join(uploadsDir, uploadId);
      const exists = await stat(dir).then(
        () => true,
        () => false,
      );
      if (!exists) {
        ctx.status = 404;
        ctx.type = "application/xml";
        ctx.body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchUpload</Code><Message>The specified upload does not exist.</Message></Error>`;
        return;
      }
      await rm(dir, { recursive: true, force: true });
      ctx.status = 204;
      return;
    }
    return next();
  };
}

/** The bucket's incomplete multipart uploads (to prove that a sweep aborted them). */
export async function listMultipartUploads(
  server: RunningS3Server,
  bucket: string,
): Promise<{ key: string; uploadId: string }[]> {
  const client = adminClient(server);
  try {
    const page = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
    return (page.Uploads ?? []).map((u) => ({ key: u.Key ?? "", uploadId: u.UploadId ?? "" }));
  } finally {
    client.destroy();
  }
}

// The child process: `node s3-server.ts <data folder> [<port>]` (a free port by default).
if (import.meta.main) {
  const S3rver = require("s3rver") as new (options: object) => S3rverInstance;
  const directory = process.argv[2];
  if (!directory) throw new Error("usage: s3-server.ts <data folder> [<port>]");
  const port = Number(process.argv[3] ?? 0);
  const server = new S3rver({ address: "127.0.0.1", port, silent: true, directory });
  server.middleware.unshift(multipartExtensions(server));
  const listening = await server.run();
  process.stdout.write(`S3rver listening on port ${listening.port}\n`);
  const exit = () => {
    server.close().finally(() => process.exit(0));
  };
  process.on("SIGTERM", exit);
  // The parent died or closed our stdin: nobody will stop us, so stop now.
  process.stdin.on("close", exit);
  process.stdin.resume();
}
