import { Writable } from "node:stream";

/** What the stream needs of an open file (a `FileHandle` is one). */
export interface WritableFile {
  writev(buffers: Buffer[], position: number): Promise<{ bytesWritten: number }>;
  write(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  datasync(): Promise<void>;
}

/** How much is written between two background flushes: a few hundredths of a second of a disk's work. */
export const FLUSH_EVERY_BYTES = 8 * 1024 * 1024;

/**
 * A stream into an open file whose `finish` means "on disk": its end waits for `fdatasync`. While
 * the bytes still arrive it already asks the disk to take what it has (a `fdatasync` in the
 * background every `flushEveryBytes`, never two at once), as RocksDB's `bytes_per_sync` and
 * PostgreSQL's `backend_flush_after` do. So the disk writes while the network delivers, and the
 * flush at the end — which an upload's answer waits for — has only the last few MiB left instead of
 * the whole file. Writes are never held back by a flush in flight. The caller closes the handle.
 */
export function createDurableWriteStream(
  handle: WritableFile,
  { flushEveryBytes = FLUSH_EVERY_BYTES }: { flushEveryBytes?: number } = {},
): Writable {
  let position = 0;
  let unflushed = 0;
  let flushing: Promise<void> | undefined;
  let flushError: unknown;

  const flushInBackground = () => {
    unflushed = 0;
    flushing = handle
      .datasync()
      .catch((error: unknown) => {
        flushError ??= error;
      })
      .finally(() => {
        flushing = undefined;
      });
  };

  const writeAll = async (chunks: Buffer[]): Promise<void> => {
    if (flushError !== undefined) throw flushError;
    let { bytesWritten } = await handle.writev(chunks, position);
    const total = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
    // A short write (a full disk answers with one before ENOSPC) goes on from where it stopped.
    if (bytesWritten < total) {
      const all = Buffer.concat(chunks);
      while (bytesWritten < total) {
        const rest = all.subarray(bytesWritten);
        const { bytesWritten: more } = await handle.write(rest, 0, rest.length, position + bytesWritten);
        bytesWritten += more;
      }
    }
    position += total;
    unflushed += total;
    if (unflushed >= flushEveryBytes && flushing === undefined) flushInBackground();
  };

  return new Writable({
    // Chunks that arrive while a write is in flight go out together in one writev.
    highWaterMark: 256 * 1024,
    writev(entries, callback) {
      writeAll(entries.map(({ chunk }) => chunk as Buffer)).then(() => callback(), callback);
    },
    final(callback) {
      (async () => {
        await flushing;
        if (flushError !== undefined) throw flushError;
        await handle.datasync();
      })().then(() => callback(), callback);
    },
  });
}
