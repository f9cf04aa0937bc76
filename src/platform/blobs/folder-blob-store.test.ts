import assert from "node:assert/strict";
import {
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  realpath,
  rm,
  stat,
  symlink,
  utimes,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { blobStoreContract } from "../../../test/support/contracts/blob-store.ts";
import { createFolderBlobStore } from "./folder-blob-store.ts";

blobStoreContract("folder blob store", async () => {
  const root = await mkdtemp(path.join(tmpdir(), "folder-blobs-"));
  return {
    store: createFolderBlobStore(path.join(root, "blobs")),
    cleanup: () => rm(root, { recursive: true, force: true }),
  };
});

describe("folder blob store", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "folder-blobs-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const fresh = async (name: string) => {
    const root = path.join(dir, name);
    return { root, store: createFolderBlobStore(root) };
  };

  it("creates its folder only when first used, and keeps each blob at <root>/<key>", async () => {
    const { root, store } = await fresh("lazy");
    await assert.rejects(readdir(root), { code: "ENOENT" });
    await store.put("videos/abc", Readable.from([Buffer.from("hello")]));
    assert.equal(await readFile(path.join(root, "videos", "abc"), "utf8"), "hello");
    const local = await store.toLocalFile("videos/abc", dir);
    assert.equal(local.path, await realpath(path.join(root, "videos", "abc")));
  });

  it("putFile() renames a file of the same file system into place: no copy, nothing left behind", async () => {
    const { root, store } = await fresh("adopt");
    const file = path.join(dir, "adopt-source.mp3");
    await writeFile(file, "an MP3");
    const { ino } = await stat(file);
    assert.deepEqual(await store.putFile("mp3s/adopted", file), { size: 6 });
    await assert.rejects(stat(file), { code: "ENOENT" });
    const blob = await stat(path.join(root, "mp3s", "adopted"));
    assert.equal(blob.ino, ino, "the very same file, renamed");
  });

  it("sweepIncomplete() removes the temporary files a killed process left, older than the age", async () => {
    const { root, store } = await fresh("sweep");
    await mkdir(path.join(root, ".tmp"), { recursive: true });
    const abandoned = path.join(root, ".tmp", "abandoned.part");
    const writing = path.join(root, ".tmp", "writing.part");
    await writeFile(abandoned, "half a video");
    await writeFile(writing, "a video arriving");
    const hourAgo = new Date(Date.now() - 3_600_000);
    await utimes(abandoned, hourAgo, hourAgo);
    await store.put("videos/kept", Readable.from([Buffer.from("whole")]));

    assert.equal(await store.sweepIncomplete(60_000), 1);
    assert.deepEqual(await readdir(path.join(root, ".tmp")), ["writing.part"]);
    assert.equal(await readFile(path.join(root, "videos", "kept"), "utf8"), "whole");
  });

  it("cleans up its temporary file when a put fails", async () => {
    const { root, store } = await fresh("failed-put");
    async function* failing() {
      yield Buffer.from("partial");
      throw new Error("broken pipe");
    }
    await assert.rejects(store.put("videos/x", failing()), /broken pipe/);
    assert.deepEqual(await readdir(path.join(root, ".tmp")), []);
    assert.deepEqual(await readdir(path.join(root, "videos")), []);
  });

  it("refuses to follow a symlinked folder out of the root", async () => {
    const { root, store } = await fresh("symlinked-folder");
    const outside = path.join(dir, "outside-folder");
    await mkdir(outside);
    await writeFile(path.join(outside, "secret"), "top secret");
    await mkdir(root);
    await symlink(outside, path.join(root, "videos"));

    await assert.rejects(store.get("videos/secret"), /outside the blob folder/);
    await assert.rejects(store.stat("videos/secret"), /outside the blob folder/);
    await assert.rejects(store.toLocalFile("videos/secret", dir), /outside the blob folder/);
    await assert.rejects(store.delete("videos/secret"), /outside the blob folder/);
    await assert.rejects(
      store.put("videos/new", Readable.from([Buffer.from("x")])),
      /outside the blob folder/,
    );
    await assert.rejects(store.put("videos/deep/new", Readable.from([Buffer.from("x")])), /outside/);
    assert.deepEqual((await readdir(outside)).sort(), ["secret"]);
    assert.equal(await readFile(path.join(outside, "secret"), "utf8"), "top secret");
  });

  it("refuses a blob file that is a symlink out of the root", async () => {
    const { root, store } = await fresh("symlinked-file");
    const secret = path.join(dir, "outside-file");
    await writeFile(secret, "top secret");
    await mkdir(path.join(root, "mp3s"), { recursive: true });
    await symlink(secret, path.join(root, "mp3s", "x"));

    await assert.rejects(store.get("mp3s/x"), /outside the blob folder/);
    await assert.rejects(store.delete("mp3s/x"), /outside the blob folder/);
    assert.equal(await readFile(secret, "utf8"), "top secret");
  });

  it("works under a root that is itself reached through a symlink", async () => {
    const real = path.join(dir, "real-root");
    await mkdir(real);
    const linked = path.join(dir, "linked-root");
    await symlink(real, linked);
    const store = createFolderBlobStore(linked);
    await store.put("a/b", Readable.from([Buffer.from("via link")]));
    assert.equal(await readFile(path.join(real, "a", "b"), "utf8"), "via link");
    assert.deepEqual(await store.stat("a/b"), { size: 8 });
  });

  it("treats a folder where a blob would be as no blob", async () => {
    const { store } = await fresh("folder-not-blob");
    await store.put("videos/abc", Readable.from([Buffer.from("x")]));
    assert.equal(await store.stat("videos"), undefined);
    await assert.rejects(store.get("videos"), { name: "BlobNotFoundError" });
    await store.delete("videos");
  });

  it("fails its check when the root cannot be a writable folder", async () => {
    const file = path.join(dir, "a-file");
    await writeFile(file, "not a folder");
    await assert.rejects(createFolderBlobStore(file).check());
    await createFolderBlobStore(path.join(dir, "checked")).check();
  });
});
