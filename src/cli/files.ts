import { randomBytes } from "node:crypto";
import { constants, createWriteStream, rmSync } from "node:fs";
import { copyFile, link, mkdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { parse as parseContentDisposition } from "content-disposition";
import { onInterrupt } from "./interrupt.ts";

/** A file the command refuses to overwrite. */
export class FileExistsError extends Error {
  override name = "FileExistsError";
  readonly file: string;
  constructor(file: string) {
    super(`${file} already exists; use --force to overwrite it.`);
    this.file = file;
  }
}

/**
 * The file name a download should be saved as: the server's Content-Disposition name, reduced to
 * a plain base name (no directories, no control characters, no leading dots), else `fallback`.
 */
export function downloadFileName(contentDisposition: string | null, fallback: string): string {
  let name: string | undefined;
  if (contentDisposition) {
    try {
      name = parseContentDisposition(contentDisposition).parameters.filename;
    } catch {
      name = undefined;
    }
  }
  return safeFileName(name) ?? fallback;
}

export function safeFileName(name: string | undefined): string | undefined {
  if (name === undefined) return undefined;
  const cleaned = path
    .basename(name.replaceAll("\\", "/"))
    .replace(/[\p{Cc}\u200E\u200F\u202A-\u202E\u2066-\u2069]/gu, "")
    .replace(/^[.\s]+/, "")
    .trim();
  return cleaned === "" ? undefined : cleaned;
}

/** `holiday.mov` → `holiday.mp3`, as the gateway names the MP3 of an upload. */
export function mp3NameFor(uploadName: string): string {
  return `${path.parse(uploadName).name || "audio"}.mp3`;
}

export async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

/**
 * Streams `body` into `destination` through a temporary file beside it, so a broken download
 * never leaves a partial MP3 under the real name. Without `force` an existing file is never
 * replaced, not even one that appeared while downloading (the final step is a hard link, which
 * fails if the name is taken).
 */
export async function saveStream(
  body: ReadableStream<Uint8Array>,
  destination: string,
  options: { force?: boolean; onBytes?: (received: number) => void } = {},
): Promise<void> {
  const dir = path.dirname(destination);
  await mkdir(dir, { recursive: true });
  if (!options.force && (await exists(destination))) throw new FileExistsError(destination);
  const temp = path.join(dir, `.${path.basename(destination)}.${randomBytes(4).toString("hex")}.part`);
  const forget = onInterrupt(() => rmSync(temp, { force: true }));
  let received = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      options.onBytes?.(received);
      callback(null, chunk);
    },
  });
  try {
    await pipeline(
      Readable.fromWeb(body as import("node:stream/web").ReadableStream<Uint8Array>),
      counter,
      createWriteStream(temp, { flags: "wx", mode: 0o644 }),
    );
    if (options.force) {
      await rename(temp, destination);
      return;
    }
    try {
      await link(temp, destination);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EEXIST") throw new FileExistsError(destination);
      // A file system without hard links: copy, still refusing to replace.
      try {
        await copyFile(temp, destination, constants.COPYFILE_EXCL);
      } catch (copyError) {
        if ((copyError as NodeJS.ErrnoException).code === "EEXIST") throw new FileExistsError(destination);
        throw copyError;
      }
    }
  } finally {
    await rm(temp, { force: true });
    forget();
  }
}
