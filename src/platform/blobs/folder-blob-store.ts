import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, open, readdir, realpath, rename, rm, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { assertValidKey, BlobNotFoundError, type BlobStore } from "./blob-store.ts";
import { createDurableWriteStream } from "./durable-write-stream.ts";

/**
 * The embedded blob store: each blob is the file `<root>/<key>`. Writes go to `<root>/.tmp/` first
 * and are renamed into place (same file system, so the rename is atomic); no valid key can name
 * `.tmp`, because keys start with a letter or digit.
 */
export function createFolderBlobStore(root: string): BlobStore {
  const rootPath = path.resolve(root);
  const tmpPath = path.join(rootPath, ".tmp");

  /** The key's file, checked lexically to lie inside the root (defence in depth behind the key syntax). */
  function fileOf(key: string): string {
    assertValidKey(key);
    const file = path.join(rootPath, key);
    if (!isInside(rootPath, file)) throw outsideRoot(key);
    return file;
  }

  /** The root with symlinks resolved, created on first use. */
  async function realRoot(): Promise<string> {
    await mkdir(rootPath, { recursive: true });
    return realpath(rootPath);
  }

  /**
   * The blob's real path and size, or undefined when there is no such file. A symlink that leads
   * out of the root is refused rather than followed.
   */
  async function find(key: string): Promise<{ file: string; size: number } | undefined> {
    const file = fileOf(key);
    const rootReal = await realRoot();
    const real = await realpathIfExists(file);
    if (real === undefined) return undefined;
    if (!isInside(rootReal, real)) throw outsideRoot(key);
    const stats = await stat(real).catch(undefinedIfMissing);
    return stats?.isFile() ? { file: real, size: stats.size } : undefined;
  }

  /** Creates the folders above `file`, after checking that the deepest existing one is really inside the root. */
  async function makeParent(key: string, file: string): Promise<void> {
    const rootReal = await realRoot();
    let existing = path.dirname(file);
    let real = await realpathIfExists(existing);
    while (real === undefined) {
      existing = path.dirname(existing);
      real = await realpathIfExists(existing);
    }
    if (real !== rootReal && !isInside(rootReal, real)) throw outsideRoot(key);
    await mkdir(path.dirname(file), { recursive: true });
  }

  const store: BlobStore = {
    // contentType is not kept: nothing reads it back from a folder (downloads set their own type).
    async put(key, body) {
      const file = fileOf(key);
      await makeParent(key, file);
      await mkdir(tmpPath, { recursive: true });
      const tmp = path.join(tmpPath, `${randomUUID()}.part`);
      // Opened before any byte flows: a body failing at once must not race the open, which could
      // otherwise create the file after the clean-up below has run.
      const handle = await open(tmp, "wx");
      try {
        // On disk before the rename, so a crash after it cannot leave a blob with holes.
        await pipeline(body, createDurableWriteStream(handle));
        const { size } = await handle.stat();
        await handle.close();
        await renameDurably(tmp, file);
        return { size };
      } catch (error) {
        await handle.close().catch(() => {});
        await rm(tmp, { force: true });
        throw error;
      }
    },

    // The file becomes the blob where it can (one file system): flushed, then renamed into place,
    // no byte copied. Across file systems it is copied as `put` copies a stream.
    async putFile(key, source) {
      const file = fileOf(key);
      await makeParent(key, file);
      const handle = await open(source, "r+");
      let size: number;
      try {
        await handle.datasync();
        ({ size } = await handle.stat());
      } finally {
        await handle.close();
      }
      try {
        await renameDurably(source, file);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EXDEV") throw error;
        return store.put(key, createReadStream(source));
      }
      return { size };
    },

    async get(key, range) {
      if (range) assertRange(range);
      const blob = await find(key);
      if (!blob) throw new BlobNotFoundError(key);
      // Opened here, not lazily by the stream, so a blob deleted meanwhile is a BlobNotFoundError
      // for the caller rather than an error event on the stream.
      const handle = await open(blob.file, "r").catch(undefinedIfMissing);
      if (!handle) throw new BlobNotFoundError(key);
      return handle.createReadStream(range ? { start: range.start, end: range.end } : {});
    },

    async stat(key) {
      const blob = await find(key);
      return blob && { size: blob.size };
    },

    async delete(key) {
      const blob = await find(key);
      if (blob) await unlink(blob.file).catch(undefinedIfMissing);
    },

    async list(prefix) {
      const folder = fileOf(prefix);
      const real = await realpathIfExists(folder);
      // A folder that leads out of the root (a symlink) holds no blobs of this store.
      if (real === undefined || !isInside(await realRoot(), real)) return [];
      const entries = await readdir(real, { recursive: true, withFileTypes: true }).catch(
        (error: unknown) => undefinedIfMissing(error) ?? [],
      );
      return entries
        .filter((entry) => entry.isFile())
        .map((entry) =>
          path.relative(real, path.join(entry.parentPath, entry.name)).split(path.sep).join("/"),
        )
        .map((name) => `${prefix}/${name}`);
    },

    // The blob's own file: nothing to copy, nothing to release.
    async toLocalFile(key) {
      const blob = await find(key);
      if (!blob) throw new BlobNotFoundError(key);
      return { path: blob.file, release: async () => {} };
    },

    // A process killed mid-write leaves its `.part` file; a live write touches its file all along.
    async sweepIncomplete(olderThanMs) {
      const names = await readdir(tmpPath).catch(() => [] as string[]);
      let removed = 0;
      for (const name of names) {
        const file = path.join(tmpPath, name);
        const info = await stat(file).catch(undefinedIfMissing);
        if (info?.isFile() && Date.now() - info.mtimeMs >= olderThanMs) {
          await rm(file, { force: true });
          removed++;
        }
      }
      return removed;
    },

    async check() {
      await mkdir(tmpPath, { recursive: true });
      const probe = path.join(tmpPath, `check-${randomUUID()}`);
      await writeFile(probe, "");
      await rm(probe);
    },
  };
  return store;
}

/**
 * Renames `from` to `to`, then flushes `to`'s folder: the new name itself is only kept on disk
 * once its folder is. Windows cannot open a folder, nor needs to.
 */
async function renameDurably(from: string, to: string): Promise<void> {
  await rename(from, to);
  if (process.platform === "win32") return;
  const handle = await open(path.dirname(to), "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function isInside(folder: string, file: string): boolean {
  return file.startsWith(folder + path.sep);
}

function outsideRoot(key: string): Error {
  return new Error(`blob key ${JSON.stringify(key)} leads outside the blob folder`);
}

function assertRange(range: { start: number; end: number }): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new RangeError(`invalid byte range ${start}-${end}`);
  }
}

async function realpathIfExists(file: string): Promise<string | undefined> {
  return realpath(file).catch(undefinedIfMissing);
}

/** A catch handler that turns "no such file" (also "a parent is not a folder") into undefined. */
function undefinedIfMissing(error: unknown): undefined {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT" || code === "ENOTDIR") return undefined;
  throw error;
}
