import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { test } from "node:test";
import { promisify } from "node:util";

const run = promisify(execFile);

/**
 * Streams 512 MiB through short-lived 64 KiB Buffers, as an upload does, in a fresh Node process
 * with a few MiB of live objects, and prints how many full collections (mark-compact) it took.
 */
async function fullCollections(tuned: boolean): Promise<number> {
  const script = `
    ${tuned ? `(await import(${JSON.stringify(new URL("./stream-gc.ts", import.meta.url).href)})).collectStreamedBuffersWithTheHeap();` : ""}
    const { PerformanceObserver, constants } = await import("node:perf_hooks");
    let major = 0;
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) if (entry.detail.kind === constants.NODE_PERFORMANCE_GC_MAJOR) major++;
    }).observe({ entryTypes: ["gc"] });
    globalThis.live = Array.from({ length: 200_000 }, (_, i) => ({ i, s: String(i) }));
    for (let i = 0; i < 8192; i++) {
      Buffer.allocUnsafeSlow(64 * 1024).fill(i);
      if (i % 64 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    console.log(major);
  `;
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", script]);
  return Number(stdout.trim());
}

test("streamed Buffers no longer set off a full collection every 64 MiB", async () => {
  const untuned = await fullCollections(false);
  const tuned = await fullCollections(true);
  // 512 MiB is eight of V8's default external-memory steps: several full collections untuned.
  assert.ok(untuned >= 4, `expected several full collections without the flag, saw ${untuned}`);
  assert.ok(tuned <= untuned / 2, `expected far fewer with the flag: ${tuned} against ${untuned}`);
});
