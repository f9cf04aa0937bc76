import type { Readable } from "node:stream";

/**
 * Where videos and MP3s live: streams in and out, never a whole file in memory.
 * Keys are slash-separated lowercase names (`videos/<uuid>`); see `assertValidKey`.
 */
export interface BlobStore {
  /** Streams `body` into `key`. The blob appears whole or not at all; a failed put leaves nothing. */
  put(
    key: string,
    body: Readable | AsyncIterable<Uint8Array>,
    options?: { contentType?: string },
  ): Promise<{ size: number }>;
  /**
   * Stores the local file `file` as `key`, whole or not at all, as `put` does. The file may be
   * taken over rather than copied (a folder store on the same file system renames it into
   * place): afterwards it is either gone or still the caller's to remove.
   */
  putFile(key: string, file: string, options?: { contentType?: string }): Promise<{ size: number }>;
  /** Streams the blob out, or the inclusive byte range. Throws `BlobNotFoundError`. */
  get(key: string, range?: { start: number; end: number }): Promise<Readable>;
  /** Size of the blob, or undefined when there is none. */
  stat(key: string): Promise<{ size: number } | undefined>;
  /** Removes the blob; removing a missing blob is not an error. */
  delete(key: string): Promise<void>;
  /**
   * The keys of the blobs under the folder `prefix` (`segments/<jobId>` lists
   * `segments/<jobId>/…`), in no particular order; none when there are none.
   */
  list(prefix: string): Promise<string[]>;
  /**
   * A file on local disk with the blob's bytes, for tools that must seek in their input (ffmpeg on
   * MP4). A folder store hands out its own file; a remote store streams a temporary copy into
   * `tmpDir`. `release()` removes any temporary copy.
   */
  toLocalFile(key: string, tmpDir: string): Promise<LocalFile>;
  /** Throws when the store cannot be reached (readiness checks). */
  check(): Promise<void>;
  /**
   * Removes what writes that never finished left behind, older than `olderThanMs` (a folder's
   * temporary files, S3's incomplete multipart uploads and their parts); returns how many.
   */
  sweepIncomplete(olderThanMs: number): Promise<number>;
}

export interface LocalFile {
  path: string;
  release(): Promise<void>;
}

export class BlobNotFoundError extends Error {
  override name = "BlobNotFoundError";
  readonly key: string;
  constructor(key: string) {
    super(`no blob with key ${key}`);
    this.key = key;
  }
}

const KEY = /^[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9_-]+)*(?:\/[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9_-]+)*)*$/;

/** Keys can never name a parent folder, an absolute path or anything outside the store. */
export function assertValidKey(key: string): void {
  if (key.length > 200 || !KEY.test(key)) throw new Error(`invalid blob key: ${JSON.stringify(key)}`);
}
