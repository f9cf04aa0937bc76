import { setFlagsFromString } from "node:v8";

/**
 * Makes a process that streams files through it (uploads, downloads) collect its garbage as
 * often as its heap needs, not once per 64 MiB streamed.
 *
 * Every chunk read from a socket or a file is a Buffer whose bytes live outside V8's heap. By
 * default V8 starts a full collection (mark-compact) whenever 64 MiB more of such memory has been
 * allocated since the last one, however little of it is still alive: a 15 MiB upload cost about
 * one, ~40 ms of CPU on the services' heap of 40 MiB, more than the upload's own work. Counting
 * that memory in the heap's global limit instead (as Chrome does) lets it grow to a bound that
 * scales with the heap before a collection. Measured on `vid2mp3 serve all`: the server's CPU for
 * a 15 MiB upload fell by a third; its peak RSS while uploading rose by ~70 MiB, flat whatever the
 * size or number of uploads (bench/README.md).
 *
 * Must run before the streaming starts; it changes a V8 flag for the whole process.
 */
export function collectStreamedBuffersWithTheHeap(): void {
  setFlagsFromString("--external-memory-accounted-in-global-limit");
}
