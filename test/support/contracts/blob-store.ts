import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { BlobNotFoundError, type BlobStore } from "../../../src/platform/blobs/blob-store.ts";

/**
 * The behaviour every `BlobStore` must show, as node:test suites. Each adapter's test file calls
 * this with a factory, so the folder and the S3 store are held to the very same tests.
 */
export function blobStoreContract(
  name: string,
  open: () => Promise<{ store: BlobStore; cleanup(): Promise<void> }>,
): void {
  describe(`${name}: BlobStore contract`, { timeout: 20_000 }, () => {
    let store: BlobStore;
    let cleanup: () => Promise<void>;
    let tmpDir: string;

    before(async () => {
      tmpDir = await mkdtemp(path.join(tmpdir(), "blob-contract-"));
    });
    after(async () => {
      await rm(tmpDir, { recursive: true, force: true });
    });
    beforeEach(async () => {
      ({ store, cleanup } = await open());
    });
    afterEach(async () => {
      await cleanup();
    });

    it("is reachable", async () => {
      await store.check();
    });

    it("streams a multi-megabyte body in and out unchanged", async () => {
      const key = uniqueKey();
      const size = 5 * 1024 * 1024 + 123;
      const put = await store.put(key, pattern(size), { contentType: "video/mp4" });
      assert.deepEqual(put, { size });

      const expected = createHash("sha256");
      for await (const chunk of pattern(size)) expected.update(chunk);
      const actual = createHash("sha256");
      let received = 0;
      for await (const chunk of await store.get(key)) {
        received += (chunk as Buffer).length;
        actual.update(chunk as Buffer);
      }
      assert.equal(received, size);
      assert.equal(actual.digest("hex"), expected.digest("hex"));
      assert.deepEqual(await store.stat(key), { size });
    });

    it("stores an empty body", async () => {
      const key = uniqueKey();
      assert.deepEqual(await store.put(key, Readable.from([])), { size: 0 });
      assert.deepEqual(await store.stat(key), { size: 0 });
      assert.equal((await buffer(await store.get(key))).length, 0);
    });

    it("overwrites a blob put again under the same key", async () => {
      const key = uniqueKey();
      await store.put(key, Readable.from([Buffer.from("first version, longer")]));
      await store.put(key, Readable.from([Buffer.from("second")]));
      assert.equal((await buffer(await store.get(key))).toString(), "second");
      assert.deepEqual(await store.stat(key), { size: 6 });
    });

    it("streams inclusive byte ranges", async () => {
      const key = uniqueKey();
      const size = 100_000;
      await store.put(key, pattern(size));
      const expected = bytesAt(0, size);

      for (const [start, end] of [
        [0, 0],
        [0, 9],
        [12_345, 67_890],
        [size - 1, size - 1],
        [0, size - 1],
      ] as const) {
        const got = await buffer(await store.get(key, { start, end }));
        assert.ok(got.equals(expected.subarray(start, end + 1)), `range ${start}-${end}`);
      }
      // An end past the last byte is cut short, as HTTP and S3 do.
      const tail = await buffer(await store.get(key, { start: size - 10, end: size + 1000 }));
      assert.ok(tail.equals(expected.subarray(size - 10)));
    });

    it("rejects a malformed range", async () => {
      const key = uniqueKey();
      await store.put(key, Readable.from([Buffer.from("0123456789")]));
      for (const range of [
        { start: 5, end: 4 },
        { start: -1, end: 4 },
        { start: 0.5, end: 4 },
      ]) {
        await assert.rejects(store.get(key, range), RangeError);
      }
    });

    it("stats a blob, and says undefined for a missing one", async () => {
      const key = uniqueKey();
      await store.put(key, Readable.from([Buffer.from("12345")]));
      assert.deepEqual(await store.stat(key), { size: 5 });
      assert.equal(await store.stat(uniqueKey()), undefined);
    });

    it("deletes idempotently", async () => {
      const key = uniqueKey();
      await store.put(key, Readable.from([Buffer.from("bye")]));
      await store.delete(key);
      assert.equal(await store.stat(key), undefined);
      await assert.rejects(store.get(key), BlobNotFoundError);
      await store.delete(key);
      await store.delete(uniqueKey());
    });

    it("lists the keys under a folder, nested ones too, and nothing of its neighbours", async () => {
      const folder = `contract/${randomUUID()}`;
      const keys = [`${folder}/a.mp3`, `${folder}/b/c.f32`, `${folder}/b/d`];
      for (const key of keys) await store.put(key, Readable.from([Buffer.from(key)]));
      // A neighbour whose name starts like the folder's is not in it.
      await store.put(`${folder}x/e`, Readable.from([Buffer.from("e")]));
      assert.deepEqual((await store.list(folder)).sort(), keys);
      assert.deepEqual((await store.list(`${folder}/b`)).sort(), keys.slice(1));
      assert.deepEqual(await store.list(`contract/${randomUUID()}`), []);
      for (const key of keys) await store.delete(key);
      assert.deepEqual(await store.list(folder), []);
    });

    it("throws BlobNotFoundError for a missing blob", async () => {
      const key = uniqueKey();
      await assert.rejects(
        store.get(key),
        (error) => error instanceof BlobNotFoundError && error.key === key,
      );
      await assert.rejects(store.get(key, { start: 0, end: 1 }), BlobNotFoundError);
      await assert.rejects(store.toLocalFile(key, tmpDir), BlobNotFoundError);
    });

    it("leaves nothing behind when the body stream fails", async () => {
      const key = uniqueKey();
      async function* failing() {
        yield Buffer.alloc(256 * 1024, 1);
        throw new Error("client went away");
      }
      await assert.rejects(store.put(key, failing()), /client went away/);
      assert.equal(await store.stat(key), undefined);
      await assert.rejects(store.get(key), BlobNotFoundError);
    });

    it("leaves nothing behind when the body stream is destroyed, and keeps an older blob whole", async () => {
      const key = uniqueKey();
      await store.put(key, Readable.from([Buffer.from("the good old bytes")]));

      const body = new Readable({ read() {} });
      body.push(Buffer.alloc(64 * 1024, 2));
      setTimeout(() => body.destroy(new Error("upload aborted")), 20);
      await assert.rejects(store.put(key, body), /upload aborted/);

      assert.equal((await buffer(await store.get(key))).toString(), "the good old bytes");
    });

    it("rejects invalid keys in every method", async () => {
      const invalid = [
        "",
        "../x",
        "/etc/passwd",
        "a//b",
        "A",
        "a/../b",
        "a/",
        "./a",
        ".tmp/x",
        "a\\b",
        "x".repeat(201),
      ];
      for (const key of invalid) {
        const label = `key ${JSON.stringify(key)}`;
        await assert.rejects(store.put(key, Readable.from([Buffer.from("x")])), /invalid blob key/, label);
        await assert.rejects(store.putFile(key, path.join(tmpDir, "any")), /invalid blob key/, label);
        await assert.rejects(store.get(key), /invalid blob key/, label);
        await assert.rejects(store.stat(key), /invalid blob key/, label);
        await assert.rejects(store.delete(key), /invalid blob key/, label);
        await assert.rejects(store.list(key), /invalid blob key/, label);
        await assert.rejects(store.toLocalFile(key, tmpDir), /invalid blob key/, label);
      }
    });

    it("stores a local file whole (putFile), which is then gone or left as it was", async () => {
      const key = uniqueKey();
      const bytes = bytesAt(3, 2 * 1024 * 1024 + 17);
      const file = path.join(tmpDir, `local-${randomUUID()}`);
      await writeFile(file, bytes);
      assert.deepEqual(await store.putFile(key, file, { contentType: "audio/mpeg" }), { size: bytes.length });
      assert.ok((await buffer(await store.get(key))).equals(bytes));
      const left = await readFile(file).catch(() => undefined);
      assert.ok(left === undefined || left.equals(bytes), "the file is taken over or untouched");
      await rm(file, { force: true });

      // Again under the same key: replaced whole.
      await writeFile(file, "shorter");
      assert.deepEqual(await store.putFile(key, file), { size: 7 });
      assert.equal((await buffer(await store.get(key))).toString(), "shorter");
      await rm(file, { force: true });
    });

    it("rejects putFile of a missing file, and stores nothing", async () => {
      const key = uniqueKey();
      await assert.rejects(store.putFile(key, path.join(tmpDir, "no-such-file")), { code: "ENOENT" });
      assert.equal(await store.stat(key), undefined);
    });

    it("hands out a readable local file with the blob's bytes", async () => {
      const key = uniqueKey();
      const bytes = bytesAt(7, 300_000);
      await store.put(key, Readable.from([bytes]));
      const local = await store.toLocalFile(key, tmpDir);
      try {
        assert.ok((await readFile(local.path)).equals(bytes));
      } finally {
        await local.release();
      }
      assert.deepEqual(await store.stat(key), { size: bytes.length }, "release() leaves the blob alone");
    });
  });
}

function uniqueKey(): string {
  return `contract/${randomUUID()}.bin`;
}

/** A deterministic byte pattern that does not repeat every 256 bytes, so misplaced ranges show. */
function bytesAt(offset: number, length: number): Buffer {
  const bytes = Buffer.allocUnsafe(length);
  for (let i = 0; i < length; i++) bytes[i] = ((offset + i) * 7 + Math.floor((offset + i) / 251)) & 0xff;
  return bytes;
}

/** `size` bytes of the pattern as a stream of 64 KiB chunks, never all in memory at once. */
async function* pattern(size: number): AsyncGenerator<Buffer> {
  const chunk = 64 * 1024;
  for (let offset = 0; offset < size; offset += chunk) yield bytesAt(offset, Math.min(chunk, size - offset));
}
