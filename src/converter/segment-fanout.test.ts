import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { after, before, describe, test } from "node:test";
import { makeSweep, probe, slowSegmentsFfmpeg as slowSegments } from "../../test/support/media.ts";
import { parseWith, SegmentMessage, segmentKeys, segmentsFolder } from "../contracts/messages.ts";
import type { Quality } from "../contracts/options.ts";
import type { BlobStore } from "../platform/blobs/blob-store.ts";
import { createFolderBlobStore } from "../platform/blobs/folder-blob-store.ts";
import type { Broker, Consumer } from "../platform/broker/broker.ts";
import { createMemoryBroker } from "../platform/broker/memory-broker.ts";
import { createLogger } from "../platform/logger.ts";
import { encodeInSegments } from "./parallel-encode.ts";
import { createSegmentFanout } from "./segment-fanout.ts";
import { createSegmentHelper } from "./segment-helper.ts";

/**
 * Fanned-out encoding on the in-process broker and the folder store, with real ffmpeg: the
 * helpers' segments are the very frames a local encode makes, and the encode finishes, the same
 * file, when no helper answers, when offers cannot even be made, or when a helper fails.
 */

const logger = createLogger("silent", "test");
const QUEUE = "video-segments";
let dir: string;
let source: string;
/** An ffmpeg whose segment encoders read their PCM at 8× real time, so a helper wins the race. */
let slowSegmentsFfmpeg: string;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-fanout-"));
  source = await makeSweep(path.join(dir, "sweep.wav"), { seconds: 24 });
  slowSegmentsFfmpeg = await slowSegments(dir, 8);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Cluster {
  broker: Broker;
  blobs: BlobStore;
  /** Starts a converter that helps (in this process), with this ffmpeg. */
  helper(ffmpegPath?: string): Promise<Consumer>;
}

async function cluster(name: string): Promise<Cluster> {
  const broker = createMemoryBroker();
  const blobs = createFolderBlobStore(path.join(dir, name, "blobs"));
  const workDir = path.join(dir, name, "helper");
  await mkdir(workDir, { recursive: true });
  return {
    broker,
    blobs,
    helper(ffmpegPath = "ffmpeg") {
      const help = createSegmentHelper({ blobs, ffmpegPath, workDir, timeoutSeconds: 60, logger });
      return broker.consume<SegmentMessage>(QUEUE, async (delivery) => void (await help(delivery)), {
        parse: parseWith(SegmentMessage),
        concurrency: 1,
      });
    },
  };
}

/** Encodes the sweep in segments: on 2 local workers, or on `local` plus `fanout` helpers. */
async function encode(
  output: string,
  options: {
    local: number;
    fanout?: { cluster: Cluster; helpers: number; jobId?: string };
    ffmpegPath?: string;
    quality?: Quality;
  },
) {
  const jobId = options.fanout?.jobId ?? randomUUID();
  const fanout =
    options.fanout &&
    createSegmentFanout({
      broker: options.fanout.cluster.broker,
      blobs: options.fanout.cluster.blobs,
      queue: QUEUE,
      jobId,
      quality: options.quality,
      helpers: options.fanout.helpers,
      logger,
      pollMs: 20,
    });
  try {
    const result = await encodeInSegments({
      ffmpegPath: options.ffmpegPath ?? "ffmpeg",
      conversion: {
        input: source,
        output,
        format: "wav",
        plan: { audioStream: 0, quality: options.quality },
      },
      pcm: { sampleRate: 44100, channels: 2 },
      estimatedSeconds: 24,
      workers: options.local,
      fanout,
      deadline: performance.now() + 120_000,
      minSegmentSeconds: 4,
    });
    return { result, bytes: await readFile(output) };
  } finally {
    await fanout?.close();
  }
}

describe("a segmented encode fanned out to other converters", () => {
  let reference: { bytes: Buffer; segments: number };
  before(async () => {
    // The plan counts every encoder that may take part: 2 local workers make the same cuts as 1 + 1 helper.
    const { result, bytes } = await encode(path.join(dir, "reference.mp3"), { local: 2 });
    reference = { bytes, segments: result.segments };
    assert.ok(result.segments >= 4, `${result.segments} segments`);
  });

  test("helpers' segments make the very file a local encode makes, and their blobs are removed", async () => {
    const c = await cluster("helped");
    const helpers = [await c.helper(), await c.helper()];
    const jobId = randomUUID();
    const { result, bytes } = await encode(path.join(dir, "helped.mp3"), {
      local: 1,
      fanout: { cluster: c, helpers: 1, jobId },
      ffmpegPath: slowSegmentsFfmpeg,
    });
    await Promise.all(helpers.map((h) => h.close()));
    assert.equal(result.segments, reference.segments);
    assert.ok(result.remoteSegments >= 1, `${result.remoteSegments} segments encoded by helpers`);
    assert.ok(bytes.equals(reference.bytes), "byte for byte the local encode's file");
    // Within two frames (ffprobe counts the encoder delay and padding in).
    const { durationSeconds } = await probe(path.join(dir, "helped.mp3"));
    assert.ok(Math.abs(durationSeconds - 24) < (2 * 1152) / 44100, `${durationSeconds} s`);
    assert.deepEqual(await c.blobs.list(segmentsFolder(jobId)), []);
  });

  test("CBR and another quality travel with the offer", async () => {
    const c = await cluster("cbr");
    const helper = await c.helper();
    const { result, bytes } = await encode(path.join(dir, "cbr-helped.mp3"), {
      local: 1,
      fanout: { cluster: c, helpers: 2 },
      ffmpegPath: slowSegmentsFfmpeg,
      quality: "160k",
    });
    await helper.close();
    assert.ok(result.remoteSegments >= 1, `${result.remoteSegments} segments encoded by helpers`);
    // 1 + 2 encoders plan as 3 local workers do.
    const three = await encode(path.join(dir, "cbr-three.mp3"), { local: 3, quality: "160k" });
    assert.ok(bytes.equals(three.bytes), "byte for byte the local encode's file");
  });

  test("with no helper at all, the local worker encodes the offered segments itself", async () => {
    const c = await cluster("alone");
    const jobId = randomUUID();
    const { result, bytes } = await encode(path.join(dir, "alone.mp3"), {
      local: 1,
      fanout: { cluster: c, helpers: 1, jobId },
    });
    assert.equal(result.remoteSegments, 0);
    assert.ok(bytes.equals(reference.bytes));
    // The offers wait in the queue; a helper that takes one now finds its PCM gone and skips it.
    assert.deepEqual(await c.blobs.list(segmentsFolder(jobId)), []);
    const late = await c.helper();
    await late.close({ graceMs: 1000 });
    assert.deepEqual(await c.blobs.list(segmentsFolder(jobId)), []);
  });

  test("when offers cannot be made (the broker is gone), the encode goes on locally", async () => {
    const c = await cluster("no-broker");
    await c.broker.close();
    const { result, bytes } = await encode(path.join(dir, "no-broker.mp3"), {
      local: 1,
      fanout: { cluster: c, helpers: 1 },
    });
    assert.equal(result.remoteSegments, 0);
    assert.ok(bytes.equals(reference.bytes));
  });

  test("a helper whose ffmpeg fails costs time only", async () => {
    const c = await cluster("broken-helper");
    const helper = await c.helper(path.join(dir, "no-such-ffmpeg"));
    const { result, bytes } = await encode(path.join(dir, "broken-helper.mp3"), {
      local: 1,
      fanout: { cluster: c, helpers: 1 },
    });
    await helper.close();
    assert.equal(result.remoteSegments, 0);
    assert.ok(bytes.equals(reference.bytes));
  });

  test("a new attempt of a job first removes the segment blobs an earlier attempt left", async () => {
    const c = await cluster("leftovers");
    const jobId = randomUUID();
    const left = segmentKeys({ jobId, run: randomUUID(), index: 3 });
    await c.blobs.put(left.pcm, Readable.from([Buffer.alloc(8)]));
    await c.blobs.put(left.mp3, Readable.from([Buffer.alloc(8)]));
    const { bytes } = await encode(path.join(dir, "leftovers.mp3"), {
      local: 1,
      fanout: { cluster: c, helpers: 1, jobId },
    });
    assert.ok(bytes.equals(reference.bytes));
    assert.deepEqual(await c.blobs.list(segmentsFolder(jobId)), []);
  });
});

describe("the segment helper", () => {
  const pcm = { sampleRate: 44100, channels: 2 as const };
  const delivery = (body: SegmentMessage) => ({
    body,
    attempt: 1,
    isLastAttempt: false,
    signal: new AbortController().signal,
  });
  /** A helper on `blobs` with a scratch folder of its own under `name`. */
  const helperOn = async (name: string, blobs: BlobStore) => {
    const workDir = path.join(dir, name, "work");
    await mkdir(workDir, { recursive: true });
    return createSegmentHelper({ blobs, ffmpegPath: "ffmpeg", workDir, timeoutSeconds: 60, logger });
  };

  test("encodes the PCM of an offer and stores its MP3 frames beside it", async () => {
    const c = await cluster("helper-encodes");
    const body: SegmentMessage = {
      version: 1,
      jobId: randomUUID(),
      run: randomUUID(),
      index: 4,
      pcm,
      quality: "128k",
    };
    const keys = segmentKeys(body);
    // Two seconds of silence.
    await c.blobs.put(keys.pcm, Readable.from([Buffer.alloc(2 * 44100 * 8)]));
    const help = await helperOn("helper-encodes", c.blobs);
    assert.equal(await help(delivery(body)), "encoded");
    const frames = await buffer(await c.blobs.get(keys.mp3));
    // Bare MPEG-1 Layer III frames at 128 kb/s: no ID3 tag, no Xing frame, a frame header first.
    assert.deepEqual([...frames.subarray(0, 3)], [0xff, 0xfb, 0x90]);
    assert.ok(frames.length > 2 * 16_000 * 0.9, `${frames.length} bytes`);
  });

  test("skips an offer whose PCM is gone, and stores nothing", async () => {
    const c = await cluster("helper-gone");
    const help = await helperOn("helper-gone", c.blobs);
    const body: SegmentMessage = { version: 1, jobId: randomUUID(), run: randomUUID(), index: 1, pcm };
    assert.equal(await help(delivery(body)), "skipped");
    assert.deepEqual(await c.blobs.list(segmentsFolder(body.jobId)), []);
  });

  test("removes its frames when the PCM went while it encoded (the conversion ended meanwhile)", async () => {
    const c = await cluster("helper-late");
    const body: SegmentMessage = { version: 1, jobId: randomUUID(), run: randomUUID(), index: 0, pcm };
    const keys = segmentKeys(body);
    // A second of silence; the "coordinator" removes it as soon as the helper has read it.
    await c.blobs.put(keys.pcm, Readable.from([Buffer.alloc(44100 * 8)]));
    const blobs: BlobStore = {
      ...c.blobs,
      async putFile(key, file, options) {
        await c.blobs.delete(keys.pcm);
        return c.blobs.putFile(key, file, options);
      },
    };
    const help = await helperOn("helper-late", blobs);
    assert.equal(await help(delivery(body)), "skipped");
    assert.deepEqual(await c.blobs.list(segmentsFolder(body.jobId)), []);
  });

  test("refuses PCM that is not whole samples, and stores nothing", async () => {
    const c = await cluster("helper-odd");
    const body: SegmentMessage = { version: 1, jobId: randomUUID(), run: randomUUID(), index: 0, pcm };
    const keys = segmentKeys(body);
    await c.blobs.put(keys.pcm, Readable.from([Buffer.alloc(44100 * 8 + 3)]));
    const help = await helperOn("helper-odd", c.blobs);
    assert.equal(await help(delivery(body)), "failed");
    assert.equal(await c.blobs.stat(keys.mp3), undefined);
  });

  test("the message names no blob: only a job, a run and an index, all validated", () => {
    const parse = parseWith(SegmentMessage);
    const valid = { version: 1, jobId: randomUUID(), run: randomUUID(), index: 2, pcm };
    assert.deepEqual(parse(valid), valid);
    assert.throws(() => parse({ ...valid, run: "../../mp3s/x" }), /invalid message/);
    assert.throws(() => parse({ ...valid, index: -1 }), /invalid message/);
    assert.throws(() => parse({ ...valid, pcm: { sampleRate: 44100, channels: 6 } }), /invalid message/);
    assert.throws(() => parse({ ...valid, quality: "-af volume=9" }), /invalid message/);
    assert.match(segmentKeys(valid).mp3, /^segments\/[0-9a-f-]{36}\/[0-9a-f-]{36}\/2\.mp3$/);
  });
});
