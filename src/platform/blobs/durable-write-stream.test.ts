import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { type FileHandle, mkdtemp, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { after, before, describe, it } from "node:test";
import { createDurableWriteStream, type WritableFile } from "./durable-write-stream.ts";

/** A real file's handle that records, in order, what was asked of it. */
function recording(handle: FileHandle, overrides: Partial<WritableFile> = {}) {
  const calls: string[] = [];
  let written = 0;
  const wrapped: WritableFile = {
    writev: async (buffers, position) => {
      const result = await (overrides.writev ?? handle.writev.bind(handle))(buffers, position);
      written += result.bytesWritten;
      calls.push(`writev ${result.bytesWritten}`);
      return result;
    },
    write: async (buffer, offset, length, position) => {
      const result = await handle.write(buffer, offset, length, position);
      written += result.bytesWritten;
      calls.push(`write ${result.bytesWritten}`);
      return result;
    },
    datasync: async () => {
      calls.push(`datasync after ${written}`);
      await (overrides.datasync ?? handle.datasync.bind(handle))();
    },
  };
  return { wrapped, calls };
}

describe("durable write stream", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "durable-write-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const chunksOf = (count: number, size: number) => Array.from({ length: count }, () => randomBytes(size));

  it("writes every chunk in order and ends with a flush of the whole file", async () => {
    const file = path.join(dir, "order");
    const handle = await open(file, "wx");
    const { wrapped, calls } = recording(handle);
    const chunks = chunksOf(50, 10_000);
    await pipeline(Readable.from(chunks), createDurableWriteStream(wrapped, { flushEveryBytes: 1 << 30 }));
    await handle.close();
    assert.deepEqual(await readFile(file), Buffer.concat(chunks));
    // Nothing flushed in the background below the threshold; the last call is the flush at the end.
    assert.deepEqual(
      calls.filter((call) => call.startsWith("datasync")),
      ["datasync after 500000"],
    );
    assert.equal(calls.at(-1), "datasync after 500000");
  });

  it("flushes in the background while the bytes still arrive, one flush at a time", async () => {
    const file = path.join(dir, "background");
    const handle = await open(file, "wx");
    // The disk is slow: every flush waits until the source has sent its last chunk.
    let sourceDone = false;
    const waiting: (() => void)[] = [];
    const { wrapped, calls } = recording(handle, {
      datasync: async () => {
        if (!sourceDone) await new Promise<void>((resolve) => waiting.push(resolve));
        await handle.datasync();
      },
    });
    const chunks = chunksOf(64, 64 * 1024);
    // A source as a network is: each chunk a tick after the last.
    async function* slowly() {
      for (const chunk of chunks) {
        await new Promise((resolve) => setImmediate(resolve));
        yield chunk;
      }
      sourceDone = true;
      for (const resolve of waiting) resolve();
    }
    await pipeline(slowly(), createDurableWriteStream(wrapped, { flushEveryBytes: 512 * 1024 }));
    await handle.close();
    assert.deepEqual(await readFile(file), Buffer.concat(chunks));
    const flushes = calls.filter((call) => call.startsWith("datasync"));
    // One flush from 512 KiB on, held up until the end while the writes went on, never a second
    // one beside it; then the flush of the whole file.
    assert.equal(flushes.length, 2, calls.join(", "));
    const firstFlush = calls.findIndex((call) => call.startsWith("datasync"));
    const after = Number(calls[firstFlush]?.split(" ").at(-1));
    assert.ok(after >= 512 * 1024 && after < 64 * 64 * 1024, calls.join(", "));
    assert.ok(calls.slice(firstFlush + 1).some((call) => call.startsWith("writev")));
    assert.equal(calls.at(-1), `datasync after ${64 * 64 * 1024}`);
  });

  it("flushes again once the last flush is done", async () => {
    const file = path.join(dir, "again");
    const handle = await open(file, "wx");
    // A disk that flushes at once, so each flush is over before the next chunk comes.
    const { wrapped, calls } = recording(handle, { datasync: async () => {} });
    const chunks = chunksOf(32, 64 * 1024);
    async function* slowly() {
      for (const chunk of chunks) {
        await new Promise((resolve) => setTimeout(resolve, 1));
        yield chunk;
      }
    }
    await pipeline(slowly(), createDurableWriteStream(wrapped, { flushEveryBytes: 256 * 1024 }));
    await handle.close();
    assert.deepEqual(await readFile(file), Buffer.concat(chunks));
    assert.ok(calls.filter((call) => call.startsWith("datasync")).length >= 3, calls.join(", "));
  });

  it("goes on after a short write from where the disk stopped", async () => {
    const file = path.join(dir, "short");
    const handle = await open(file, "wx");
    const { wrapped, calls } = recording(handle, {
      // Writes at most 1000 bytes of whatever it is given, as a nearly full disk may.
      writev: (buffers, position) => {
        const first = Buffer.concat(buffers).subarray(0, 1000);
        return handle.writev([first], position);
      },
    });
    const chunks = chunksOf(5, 3000);
    await pipeline(Readable.from(chunks), createDurableWriteStream(wrapped));
    await handle.close();
    assert.deepEqual(await readFile(file), Buffer.concat(chunks));
    assert.ok(calls.some((call) => call.startsWith("write ")));
  });

  it("fails when a background flush fails, and when the final one does", async () => {
    for (const [name, failOn] of [
      ["background", 1],
      ["final", 2],
    ] as const) {
      const file = path.join(dir, `fails-${name}`);
      const handle = await open(file, "wx");
      let flushes = 0;
      const { wrapped } = recording(handle, {
        datasync: async () => {
          if (++flushes === failOn) throw Object.assign(new Error("EIO: i/o error"), { code: "EIO" });
        },
      });
      // Enough for exactly one background flush, whose failure shows at the next write or the end.
      const chunks = chunksOf(4, 1024);
      await assert.rejects(
        pipeline(Readable.from(chunks), createDurableWriteStream(wrapped, { flushEveryBytes: 2048 })),
        { code: "EIO" },
        name,
      );
      await handle.close();
    }
  });
});
