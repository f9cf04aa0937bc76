import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { after, describe, it } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { CreateMultipartUploadCommand, UploadPartCommand } from "@aws-sdk/client-s3";
import { pino } from "pino";
import { blobStoreContract } from "../../../test/support/contracts/blob-store.ts";
import {
  adminClient,
  deleteBucket,
  listKeys,
  listMultipartUploads,
  type RunningS3Server,
  startS3Server,
} from "../../../test/support/s3-server.ts";
import { startTcpProxy } from "../../../test/support/tcp-proxy.ts";
import { UnavailableError } from "../unavailable.ts";
import { createS3BlobStore, type S3BlobStore, type S3BlobStoreOptions } from "./s3-blob-store.ts";

const MiB = 1024 * 1024;

// One s3rver process for the whole file, started on first use; a fresh bucket for every test.
let shared: Promise<RunningS3Server> | undefined;
const server = () => {
  shared ??= startS3Server();
  return shared;
};
after(async () => {
  if (shared) await (await shared).stop();
});

function storeOn(s3: RunningS3Server, options: Partial<S3BlobStoreOptions> = {}): S3BlobStore {
  return createS3BlobStore({
    bucket: `test-${randomUUID()}`,
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    logger: pino({ level: "silent" }),
    ...options,
  });
}

/** A store on its own new bucket, and the clean-up that deletes the bucket with its objects. */
async function freshStore(s3: RunningS3Server, options: Partial<S3BlobStoreOptions> = {}) {
  const bucket = `test-${randomUUID()}`;
  const store = storeOn(s3, { ...options, bucket });
  await store.ensureBucket();
  return {
    bucket,
    store,
    cleanup: async () => {
      store.close();
      await deleteBucket(s3, bucket);
    },
  };
}

blobStoreContract("S3 blob store (s3rver)", async () => freshStore(await server()));

/** `size` bytes in fresh 64 KiB chunks, never all in memory, hashed on the way. */
function generated(size: number, hash = createHash("sha256")) {
  async function* chunks() {
    const chunk = 64 * 1024;
    for (let offset = 0; offset < size; offset += chunk) {
      const bytes = Buffer.alloc(Math.min(chunk, size - offset), offset % 251);
      hash.update(bytes);
      yield bytes;
    }
  }
  return { body: chunks(), digest: () => hash.digest("hex") };
}

describe("S3 blob store", { timeout: 60_000 }, () => {
  it("streams a large upload as a multipart upload with flat memory", async () => {
    const s3 = await server();
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: "debug" }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const { store, cleanup } = await freshStore(s3, { partSize: 5 * MiB, queueSize: 1, logger });
    try {
      // Well above what the store may hold (about 3 parts, and the measure lags a little behind
      // freed buffers), so a store that buffered the whole body could not pass.
      const size = 64 * MiB;
      const { body, digest } = generated(size);
      const baseline = inUse();
      let peak = 0;
      const sampler = setInterval(() => {
        peak = Math.max(peak, inUse() - baseline);
      }, 10);
      const key = "videos/big";
      const put = await store
        .put(key, body, { contentType: "video/mp4" })
        .finally(() => clearInterval(sampler));
      assert.deepEqual(put, { size });
      assert.ok(
        peak < 40 * MiB,
        `memory in use grew by ${(peak / MiB).toFixed(1)} MiB for a ${size / MiB} MiB upload`,
      );

      const stored = lines.find((line) => line.msg === "blob stored" && line.key === key);
      assert.equal(typeof stored?.multipartUploadId, "string", "stored by a multipart upload");
      const hash = createHash("sha256");
      for await (const chunk of await store.get(key)) hash.update(chunk as Buffer);
      assert.equal(hash.digest("hex"), digest());
    } finally {
      await cleanup();
    }
  });

  it("rejects a body that fails after several parts with the body's error, and keeps no object", async () => {
    const s3 = await server();
    const { bucket, store, cleanup } = await freshStore(s3, { partSize: 5 * MiB, queueSize: 2 });
    try {
      async function* failing() {
        for (let i = 0; i < 12 * 16; i++) yield Buffer.alloc(64 * 1024, i);
        throw new Error("client went away");
      }
      await assert.rejects(store.put("videos/partial", failing()), /^Error: client went away$/);
      assert.equal(await store.stat("videos/partial"), undefined);
      assert.deepEqual(await listKeys(s3, bucket), []);
    } finally {
      await cleanup();
    }
  });

  it("rejects an upload promptly when the server dies mid-stream, and stops reading the body", async () => {
    const s3 = await startS3Server();
    const { store } = await freshStore(s3, { partSize: 5 * MiB, queueSize: 2 });
    let produced = 0;
    let bodyClosed = false;
    async function* endless() {
      try {
        for (;;) {
          produced += 64 * 1024;
          yield Buffer.alloc(64 * 1024, 7);
          // A client trickling in its upload, slower than the server.
          if (produced > 6 * MiB) await new Promise((resolve) => setTimeout(resolve, 5));
        }
      } finally {
        bodyClosed = true;
      }
    }
    try {
      const body = Readable.from(endless());
      const putting = store.put("videos/doomed", body);
      putting.catch(() => {});
      // Once the first part is on its way.
      while (produced < 6 * MiB) await new Promise((resolve) => setTimeout(resolve, 10));
      await new Promise((resolve) => setTimeout(resolve, 50));
      const killedAt = Date.now();
      await s3.kill();
      await assert.rejects(putting, (error: Error) => {
        assert.ok(error instanceof UnavailableError && error.backend === "storage", String(error));
        assert.match(
          error.message,
          /^could not store videos\/doomed in S3 bucket test-\S+ at http:\/\/127\.0\.0\.1:\d+: /,
        );
        return true;
      });
      assert.ok(Date.now() - killedAt < 5_000, `rejected after ${Date.now() - killedAt} ms`);
      assert.equal(body.errored, null, "the body is not blamed for the store's failure");
      await new Promise((resolve) => setImmediate(resolve));
      assert.ok(body.destroyed && bodyClosed, "the body is released");
      await assert.rejects(store.check(), /is not usable/);
    } finally {
      // The bucket goes with the server's data folder.
      store.close();
      await s3.stop();
    }
  });

  it("sweepIncomplete() aborts the incomplete multipart uploads older than the age, and only those", async () => {
    const s3 = await server();
    const { bucket, store, cleanup } = await freshStore(s3);
    const admin = adminClient(s3);
    try {
      async function startUpload(key: string): Promise<string> {
        const { UploadId } = await admin.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
        await admin.send(
          new UploadPartCommand({
            Bucket: bucket,
            Key: key,
            UploadId,
            PartNumber: 1,
            Body: Buffer.alloc(1024, 1),
          }),
        );
        return String(UploadId);
      }
      await startUpload("videos/abandoned");
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const recent = await startUpload("videos/in-progress");
      assert.equal(await store.sweepIncomplete(1000), 1);
      assert.deepEqual(await listMultipartUploads(s3, bucket), [
        { key: "videos/in-progress", uploadId: recent },
      ]);
      assert.equal(await store.sweepIncomplete(0), 1);
      assert.deepEqual(await listMultipartUploads(s3, bucket), []);
    } finally {
      admin.destroy();
      await cleanup();
    }
  });

  it("tries again to abort a failed multipart upload whose abort failed, once the store is back", async () => {
    const s3 = await server();
    const proxy = await startTcpProxy(Number(new URL(s3.endpoint).port));
    const bucket = `test-${randomUUID()}`;
    const store = storeOn(s3, {
      bucket,
      endpoint: `http://127.0.0.1:${proxy.port}`,
      partSize: 5 * MiB,
      abortRetryDelaysMs: [300, 1000, 3000],
    });
    await store.ensureBucket();
    try {
      let produced = 0;
      async function* trickle() {
        for (;;) {
          produced += 64 * 1024;
          yield Buffer.alloc(64 * 1024, 3);
          if (produced > 6 * MiB) await new Promise((resolve) => setTimeout(resolve, 5));
        }
      }
      const putting = store.put("videos/cut-off", Readable.from(trickle()));
      putting.catch(() => {});
      while (produced < 7 * MiB) await new Promise((resolve) => setTimeout(resolve, 10));
      await proxy.pause();
      await assert.rejects(putting, UnavailableError);
      assert.equal((await listMultipartUploads(s3, bucket)).length, 1, "the abort could not reach the store");
      await proxy.resume();
      const deadline = Date.now() + 8000;
      while ((await listMultipartUploads(s3, bucket)).length > 0) {
        assert.ok(Date.now() < deadline, "the abort was tried again");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } finally {
      store.close();
      await proxy.close();
      await deleteBucket(s3, bucket);
    }
  });

  it("check() names a missing bucket, ensureBucket() creates it and is idempotent", async () => {
    const s3 = await server();
    const store = storeOn(s3);
    const bucket = `test-${randomUUID()}`;
    const named = storeOn(s3, { bucket });
    try {
      await assert.rejects(store.check(), /is not usable: the bucket does not exist/);
      await named.ensureBucket();
      await named.ensureBucket();
      await named.check();
    } finally {
      store.close();
      named.close();
      await deleteBucket(s3, bucket);
    }
  });

  it("turns a range that starts past the end into a RangeError", async () => {
    const { store, cleanup } = await freshStore(await server());
    try {
      await store.put("mp3s/short", Readable.from([Buffer.from("0123456789")]));
      await assert.rejects(store.get("mp3s/short", { start: 10, end: 20 }), RangeError);
    } finally {
      await cleanup();
    }
  });

  it("removes the temporary copy on release", async () => {
    const { store, cleanup } = await freshStore(await server());
    const { mkdtemp, readdir, rm } = await import("node:fs/promises");
    const { tmpdir } = await import("node:os");
    const path = await import("node:path");
    const dir = await mkdtemp(path.join(tmpdir(), "s3-local-"));
    try {
      await store.put("videos/copy", Readable.from([Buffer.from("bytes")]));
      const local = await store.toLocalFile("videos/copy", path.join(dir, "nested"));
      assert.deepEqual(await readdir(path.join(dir, "nested")), [path.basename(local.path)]);
      await local.release();
      assert.deepEqual(await readdir(path.join(dir, "nested")), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
      await cleanup();
    }
  });
});

// A full garbage collection before each sample, so the samples show live memory, not garbage.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

function inUse(): number {
  gc();
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return heapUsed + arrayBuffers;
}
