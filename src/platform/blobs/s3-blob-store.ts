import { randomUUID } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { finished, Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { setTimeout as sleep } from "node:timers/promises";
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { errorMessage } from "../error-message.ts";
import type { Logger } from "../logger.ts";
import { UnavailableError } from "../unavailable.ts";
import { assertValidKey, BlobNotFoundError, type BlobStore } from "./blob-store.ts";

export interface S3BlobStoreOptions {
  bucket: string;
  /** An S3-compatible endpoint (MinIO, Ceph, Garage, s3rver); undefined = AWS itself. */
  endpoint?: string | undefined;
  region: string;
  /** `http://host/bucket/key` instead of `http://bucket.host/key`, as most self-hosted stores want. */
  forcePathStyle: boolean;
  /** Undefined = the SDK's default chain (environment, web identity / IRSA, instance metadata). */
  credentials?: { accessKeyId: string; secretAccessKey: string } | undefined;
  logger?: Logger | undefined;
  /**
   * Multipart part size in bytes, at least 5 MiB (S3's minimum) and the default. An upload holds
   * about `partSize × (queueSize + 2)` bytes in memory (parts in flight, the part filling, the
   * chunker's copy), briefly up to two parts more, whatever the file size: 20–30 MiB with the
   * defaults. S3 allows 10 000 parts, so 5 MiB parts allow objects up to 48 GiB.
   */
  partSize?: number;
  /** Parts uploaded in parallel (default 2: one uploading while the next one fills). */
  queueSize?: number;
  /** Waits before each new try to abort a failed multipart upload (default 1, 5, 30 s). */
  abortRetryDelaysMs?: number[];
}

export interface S3BlobStore extends BlobStore {
  /** Creates the bucket when it does not exist yet (service start); an existing bucket is fine. */
  ensureBucket(): Promise<void>;
  /** Closes the client's idle connections. */
  close(): void;
}

const MiB = 1024 * 1024;

/**
 * The distributed blob store: one S3 object per key in one bucket, on AWS or any S3-compatible
 * server. Uploads stream through lib-storage's multipart upload with a bounded part size and queue,
 * so memory stays flat for any file size; downloads stream the response body.
 */
export function createS3BlobStore(options: S3BlobStoreOptions): S3BlobStore {
  const { bucket, logger } = options;
  const partSize = options.partSize ?? 5 * MiB;
  const queueSize = options.queueSize ?? 2;
  const where = `S3 bucket ${bucket}${options.endpoint ? ` at ${options.endpoint}` : ""}`;

  const client = new S3Client({
    region: options.region,
    ...(options.endpoint !== undefined && { endpoint: options.endpoint }),
    forcePathStyle: options.forcePathStyle,
    ...(options.credentials !== undefined && { credentials: options.credentials }),
    // Since 3.729 the SDK adds CRC32 checksums to every upload and validates them on downloads by
    // default ("WHEN_SUPPORTED"). Many S3-compatible servers (s3rver, older MinIO, Ceph, Garage)
    // reject the new checksum headers or trailers, or send none back. Only when an operation
    // requires a checksum is one computed; the transport (TLS, TCP) and S3's own MD5/ETag checks
    // still guard the bytes.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    // Standard retry mode with exponential backoff and jitter: a connection refused or a 5xx/503
    // SlowDown is tried three times in about a second, then surfaces to the caller (the gateway
    // answers 503; the broker redelivers a converter's message later).
    maxAttempts: 3,
    retryMode: "standard",
    requestHandler: {
      // Reaching the server at all.
      connectionTimeout: 5_000,
      // From sending the request (including one part's body) to the response headers: 5 MiB in
      // 60 s is 87 kB/s, far slower than any store next to the cluster.
      requestTimeout: 60_000,
      throwOnRequestTimeout: true,
      // A response that stalls this long mid-body is dead. A slow HTTP client downloading through
      // the gateway only pauses the stream for as long as its own socket is blocked.
      socketTimeout: 120_000,
      httpAgent: { keepAlive: true, maxSockets: 64 },
      httpsAgent: { keepAlive: true, maxSockets: 64 },
    },
  });

  async function put(
    key: string,
    body: Readable | AsyncIterable<Uint8Array>,
    putOptions?: { contentType?: string },
  ): Promise<{ size: number }> {
    assertValidKey(key);
    const source = body instanceof Readable ? body : Readable.from(body);
    // The first error is the one reported: the body's own (the client went away; the caller tells
    // it apart through `stream.errored`) as it is, else the first failed S3 request.
    let failure: { error: unknown; fromBody: boolean } | undefined;
    let size = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        size += chunk.length;
        callback(null, chunk);
      },
    });
    const stop = (error: unknown, fromBody: boolean) => {
      failure ??= { error, fromBody };
      source.unpipe(counter);
      counter.destroy(error as Error);
    };
    // Also a body destroyed without an error ("premature close"): otherwise the upload would wait
    // for its end forever.
    finished(source, (error) => {
      if (error) stop(error, true);
    });
    source.pipe(counter);

    // Upload sends all its requests through this client: the first one that fails stops the body at
    // once, so the other part uploaders, waiting for a slow client's next part, fail now instead of
    // whenever that part would be complete.
    const watched = Object.create(client) as S3Client;
    const send = client.send.bind(client) as (command: unknown, options?: unknown) => Promise<unknown>;
    Object.assign(watched, {
      send: (command: unknown, sendOptions?: unknown) =>
        send(command, sendOptions).catch((error: unknown) => {
          stop(error, false);
          throw error;
        }),
    });

    const upload = new Upload({
      client: watched,
      params: {
        Bucket: bucket,
        Key: key,
        Body: counter,
        ...(putOptions?.contentType !== undefined && { ContentType: putOptions.contentType }),
      },
      partSize,
      queueSize,
      // On failure Upload aborts the multipart upload, so no parts are left behind.
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (error) {
      if (failure !== undefined && error !== failure.error && upload.uploadId !== undefined) {
        // Upload's AbortMultipartUpload failed (the server is gone, say): the object was never
        // completed, so nothing is visible, but its parts stay stored. Tried again in the
        // background; after that the sweep (`sweepIncomplete`) and the bucket's lifecycle rule
        // (AbortIncompleteMultipartUpload) remove them.
        logger?.warn(
          { err: error, key, uploadId: upload.uploadId },
          "could not abort a failed multipart upload; trying again later",
        );
        void abortLater(key, upload.uploadId);
      }
      // Release the body (a file's descriptor, a paused request) without marking it as errored:
      // the caller must still see that the failure was not the body's.
      if (!source.readableEnded && !source.destroyed) source.destroy();
      if (failure?.fromBody) throw failure.error;
      throw storageError(`could not store ${key} in ${where}`, failure?.error ?? error);
    }
    logger?.debug({ key, size, multipartUploadId: upload.uploadId }, "blob stored");
    return { size };
  }

  /** Retries the abort of a failed multipart upload a few times, spaced out; never rejects. */
  async function abortLater(key: string, uploadId: string): Promise<void> {
    for (const delayMs of options.abortRetryDelaysMs ?? [1_000, 5_000, 30_000]) {
      await sleep(delayMs, undefined, { ref: false });
      try {
        await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }));
        logger?.info({ key, uploadId }, "aborted a failed multipart upload");
        return;
      } catch (error) {
        if (errorName(error) === "NoSuchUpload") return;
        logger?.debug(
          { err: errorMessage(error), key, uploadId },
          "abort of a failed multipart upload failed again",
        );
      }
    }
    logger?.warn({ key, uploadId }, "gave up aborting a failed multipart upload; the sweep will");
  }

  /** The S3 error as it is, or as an UnavailableError when the store could not be reached or answered 5xx. */
  function storageError(what: string, error: unknown): Error {
    const message = `${what}: ${errorMessage(error)}`;
    if (isUnreachable(error)) return new UnavailableError("storage", message, { cause: error });
    return new Error(message, { cause: error });
  }

  async function get(key: string, range?: { start: number; end: number }): Promise<Readable> {
    assertValidKey(key);
    if (range) assertRange(range);
    try {
      const response = await client.send(
        new GetObjectCommand({
          Bucket: bucket,
          Key: key,
          ...(range && { Range: `bytes=${range.start}-${range.end}` }),
        }),
      );
      if (!(response.Body instanceof Readable)) throw new Error(`${where} answered ${key} without a body`);
      return range ? exactly(response.Body, range, response.ContentRange) : response.Body;
    } catch (error) {
      if (isNotFound(error)) throw new BlobNotFoundError(key);
      if (errorName(error) === "InvalidRange") {
        throw new RangeError(`byte range ${range?.start}-${range?.end} lies outside ${key}`);
      }
      throw storageError(`could not read ${key} from ${where}`, error);
    }
  }

  return {
    put,
    get,

    async stat(key) {
      assertValidKey(key);
      try {
        const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return { size: head.ContentLength ?? 0 };
      } catch (error) {
        if (isNotFound(error)) return undefined;
        throw storageError(`could not look up ${key} in ${where}`, error);
      }
    },

    async delete(key) {
      assertValidKey(key);
      // S3 answers 204 for a key that does not exist, so this is idempotent as it is.
      try {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
      } catch (error) {
        if (!isNotFound(error)) throw storageError(`could not delete ${key} from ${where}`, error);
      }
    },

    async list(prefix) {
      assertValidKey(prefix);
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await client
          .send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/`, ContinuationToken: token }))
          .catch((error: unknown) => {
            throw storageError(`could not list ${prefix}/ in ${where}`, error);
          });
        for (const object of page.Contents ?? []) if (object.Key) keys.push(object.Key);
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return keys;
    },

    // Uploaded like any body: the file stays the caller's.
    async putFile(key, file, putOptions) {
      assertValidKey(key);
      return put(key, createReadStream(file), putOptions);
    },

    async toLocalFile(key, tmpDir) {
      const body = await get(key);
      await mkdir(tmpDir, { recursive: true });
      const file = path.join(tmpDir, `${randomUUID()}-${key.replaceAll("/", "_")}`);
      try {
        // Streamed to disk: never the whole object in memory.
        await pipeline(body, createWriteStream(file, { flags: "wx", mode: 0o600 }));
      } catch (error) {
        body.destroy();
        await rm(file, { force: true });
        throw isUnreachable(error) ? storageError(`could not read ${key} from ${where}`, error) : error;
      }
      return { path: file, release: () => rm(file, { force: true }) };
    },

    async check() {
      try {
        await client.send(new HeadBucketCommand({ Bucket: bucket }));
      } catch (error) {
        const reason = isNotFound(error) ? "the bucket does not exist" : errorMessage(error);
        throw new Error(`${where} is not usable: ${reason}`, { cause: error });
      }
    },

    async sweepIncomplete(olderThanMs) {
      const before = Date.now() - olderThanMs;
      let aborted = 0;
      let keyMarker: string | undefined;
      let uploadIdMarker: string | undefined;
      for (;;) {
        const page = await client
          .send(
            new ListMultipartUploadsCommand({
              Bucket: bucket,
              KeyMarker: keyMarker,
              UploadIdMarker: uploadIdMarker,
            }),
          )
          .catch((error: unknown) => {
            throw storageError(`could not list the incomplete uploads of ${where}`, error);
          });
        for (const upload of page.Uploads ?? []) {
          if (!upload.Key || !upload.UploadId) continue;
          if ((upload.Initiated?.getTime() ?? Number.POSITIVE_INFINITY) > before) continue;
          try {
            await client.send(
              new AbortMultipartUploadCommand({ Bucket: bucket, Key: upload.Key, UploadId: upload.UploadId }),
            );
            aborted++;
          } catch (error) {
            if (errorName(error) !== "NoSuchUpload") {
              throw storageError(`could not abort an incomplete upload of ${upload.Key}`, error);
            }
          }
        }
        if (!page.IsTruncated) break;
        keyMarker = page.NextKeyMarker;
        uploadIdMarker = page.NextUploadIdMarker;
      }
      if (aborted > 0) logger?.info({ aborted, olderThanMs }, "aborted incomplete multipart uploads");
      return aborted;
    },

    async ensureBucket() {
      try {
        await client.send(new HeadBucketCommand({ Bucket: bucket }));
        return;
      } catch (error) {
        if (!isNotFound(error))
          throw new Error(`${where} is not usable: ${errorMessage(error)}`, { cause: error });
      }
      try {
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
        logger?.info({ bucket }, "bucket created");
      } catch (error) {
        // Another replica starting at the same moment created it first.
        if (errorName(error) !== "BucketAlreadyOwnedByYou") {
          throw new Error(`could not create ${where}: ${errorMessage(error)}`, { cause: error });
        }
      }
    },

    close() {
      client.destroy();
    },
  };
}

function assertRange(range: { start: number; end: number }): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new RangeError(`invalid byte range ${start}-${end}`);
  }
}

/**
 * The requested bytes, even from a server that widens the range or ignores it (s3rver answers
 * `bytes=0-0` with the whole object; a plain HTTP 200 has no Content-Range). Passed through
 * untouched when the server sent what was asked for.
 */
function exactly(
  body: Readable,
  range: { start: number; end: number },
  contentRange: string | undefined,
): Readable {
  const served = /^bytes (\d+)-(\d+)\/(?:\d+|\*)$/.exec(contentRange ?? "");
  const servedStart = served ? Number(served[1]) : 0;
  const servedEnd = served ? Number(served[2]) : Number.POSITIVE_INFINITY;
  if (servedStart === range.start && servedEnd <= range.end) return body;
  if (servedStart > range.start) {
    body.destroy();
    throw new Error(`the server sent bytes from ${servedStart} for a range from ${range.start}`);
  }
  async function* slice(skip: number, length: number) {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      const part = chunk.subarray(skip, skip + length);
      skip = Math.max(0, skip - chunk.length);
      length -= part.length;
      if (part.length > 0) yield part;
      // Leaving the loop destroys the response: the rest is not downloaded.
      if (length === 0) return;
    }
  }
  return Readable.from(slice(range.start - servedStart, range.end - range.start + 1), { objectMode: false });
}

/**
 * The store could not be reached, or answered that it cannot serve now (5xx, after the SDK's own
 * retries): worth waiting for, not the request's fault.
 */
function isUnreachable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  if (status !== undefined) return status >= 500;
  const code = (error as NodeJS.ErrnoException).code;
  return (
    error.name === "TimeoutError" ||
    error.name === "RequestTimeout" ||
    error instanceof AggregateError ||
    (code !== undefined && /^E(CONN|TIMEDOUT|PIPE|HOST|NET|AI_AGAIN|NOTFOUND)/.test(code))
  );
}

function errorName(error: unknown): string | undefined {
  return error instanceof Error ? error.name : undefined;
}

/**
 * A missing key: `NoSuchKey` from GET, a bodyless 404 (`NotFound`) from HEAD. A missing bucket on
 * GET/DELETE (`NoSuchBucket`) is a broken configuration, not a missing blob; on HEAD it cannot be
 * told apart.
 */
function isNotFound(error: unknown): boolean {
  const name = errorName(error);
  if (name === "NoSuchBucket") return false;
  if (name === "NoSuchKey" || name === "NotFound") return true;
  return (
    (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode === 404
  );
}
