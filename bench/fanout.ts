import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import {
  type Mp3Message,
  Mp3Message as Mp3MessageSchema,
  parseWith,
  type VideoMessage,
} from "../src/contracts/messages.ts";
import { type Converter, createConverter } from "../src/converter/service.ts";
import { createFolderBlobStore } from "../src/platform/blobs/folder-blob-store.ts";
import type { Broker } from "../src/platform/broker/broker.ts";
import { createMemoryBroker } from "../src/platform/broker/memory-broker.ts";
import { loadConfig } from "../src/platform/config.ts";
import { createLogger } from "../src/platform/logger.ts";
import { rawFfmpeg } from "./conversion.ts";
import { makeAudioHeavy, systemFfmpeg } from "./media.ts";
import { inTurn, median, now, printTable, ratio, say, seconds, withStep } from "./report.ts";
import { scratchDir } from "./system.ts";

/**
 * Fan-out: one long job on one converter with one core's worth of encoders, against the same job
 * on two such converters, the holder offering segments to the other (CONVERTER_SEGMENT_FANOUT=1).
 * Both converters run in this process on the in-process broker and the folder store, as `serve
 * all` would on one machine: what it shows is that a second converter's core is put to work on
 * the first one's job, and what the offering costs (the PCM copied through the store, the
 * polling), not a network's speed. Baseline: plain ffmpeg with the converter's arguments, which
 * uses one core too.
 */

export interface FanoutOptions {
  quick: boolean;
  /** Alternating rounds, whose medians are reported. */
  runs: number;
}

export async function fanoutBench({ quick, runs }: FanoutOptions): Promise<void> {
  say("\n## 6. Fan-out: one long job on two converters");
  const dir = await scratchDir("fanout");
  const ffmpeg = (await systemFfmpeg()).path;
  const minutes = quick ? 4 : 20;
  const input = path.join(dir, "input.mp4");
  await withStep(`fanout: making a ${minutes}-minute audio-heavy video`, () =>
    makeAudioHeavy(ffmpeg, input, minutes * 60),
  );

  const times = { raw: [] as number[], alone: [] as number[], fanout: [] as number[] };
  const sides = [
    {
      name: "plain ffmpeg",
      times: times.raw,
      run: () => rawFfmpeg(ffmpeg, input, path.join(dir, "raw.mp3")),
    },
    { name: "one converter", times: times.alone, run: () => throughConverters(dir, input, ffmpeg, 0) },
    {
      name: "two converters with fan-out",
      times: times.fanout,
      run: () => throughConverters(dir, input, ffmpeg, 1),
    },
  ];
  await withStep("fanout: warming up (one run each, not counted)", async () => {
    for (const side of sides) await side.run();
  });
  for (let round = 1; round <= runs; round++) {
    for (const side of inTurn(sides, round)) {
      await withStep(`fanout: ${side.name}${runs > 1 ? ` (${round}/${runs})` : ""}`, async () => {
        side.times.push(await side.run());
      });
    }
  }

  const [raw, alone, fanout] = [median(times.raw), median(times.alone), median(times.fanout)];
  printTable(
    `One ${minutes}-minute job, the median of ${runs} run${runs > 1 ? "s" : ""} taking turns (each converter: CONVERTER_SEGMENT_WORKERS=1)`,
    ["side", "time", "plain ffmpeg ÷ time"],
    [
      ["plain ffmpeg", seconds(raw), ratio(1)],
      ["one converter", seconds(alone), ratio(raw / alone)],
      ["two converters, CONVERTER_SEGMENT_FANOUT=1", seconds(fanout), ratio(raw / fanout)],
    ],
    `fan-out speed-up = one converter's time ÷ two converters' = ${ratio(alone / fanout)}.\n` +
      "A converter's time runs from the job's message to its outcome's (the video already stored).",
  );
}

/**
 * The job converted by `1 + helpers` converters (one encoder each) on one in-process broker and
 * folder store: the time from its message to its outcome.
 */
async function throughConverters(
  dir: string,
  input: string,
  ffmpegPath: string,
  fanout: number,
): Promise<number> {
  const root = path.join(dir, `run-${randomUUID()}`);
  const broker = createMemoryBroker();
  const blobs = createFolderBlobStore(path.join(root, "blobs"));
  const logger = createLogger("silent", "bench");
  const converters: Converter[] = [];
  for (let k = 0; k <= fanout; k++) {
    const config = loadConfig({
      DATA_DIR: path.join(root, `converter-${k}`),
      CONVERTER_SEGMENT_WORKERS: "1",
      CONVERTER_SEGMENT_FANOUT: String(fanout),
    });
    converters.push(createConverter(config, { logger, broker, blobs, ffmpegPath }));
  }
  try {
    const video: VideoMessage = {
      version: 1,
      jobId: randomUUID(),
      videoKey: `videos/${randomUUID()}`,
      mp3Id: randomUUID(),
      fileName: "bench.mp4",
      format: "mov",
      owner: { id: "bench", email: "bench@example.com" },
      options: { cover: "none" },
    };
    await blobs.put(video.videoKey, createReadStream(input));
    const outcome = nextOutcome(broker);
    // The holder first, alone on the queue; the helper only once the job is in hand.
    await (converters[0] as Converter).start();
    const started = now();
    await broker.publish("video", video);
    await sleepUntilTaken(broker);
    for (const helper of converters.slice(1)) await helper.start();
    const message = await outcome;
    const ms = now() - started;
    if (message.outcome !== "done") throw new Error(`the job failed: ${message.error}`);
    return ms;
  } finally {
    await Promise.all(converters.map((c) => c.close()));
    await broker.close();
  }
}

/** The first outcome published on the `mp3` queue. */
async function nextOutcome(broker: Broker): Promise<Mp3Message> {
  return new Promise((resolve) => {
    void broker.consume<Mp3Message>("mp3", async ({ body }) => resolve(body), {
      parse: parseWith(Mp3MessageSchema),
      concurrency: 1,
    });
  });
}

/** Resolves once no message waits in the `video` queue (the holder has taken the job). */
async function sleepUntilTaken(broker: Broker): Promise<void> {
  while ((await broker.waiting("video")) > 0) await sleep(5);
}
