import { z } from "zod";
import { ConversionOptions, QUALITIES } from "./options.ts";

/**
 * The wire formats between services: queue messages are JSON with a `version`, validated on
 * receipt with these schemas. Services share this folder, never each other's code.
 */

const id = z.uuid();
const email = z.email();

/** Gateway → converter (`VIDEO_QUEUE`): a stored upload to turn into an MP3. */
export const VideoMessage = z.object({
  version: z.literal(1),
  jobId: id,
  /** Blob key of the upload. */
  videoKey: z.string().min(1),
  /** Id of the MP3 to write (`mp3s/<mp3Id>`), fixed at upload so a redelivery overwrites, never duplicates. */
  mp3Id: id,
  fileName: z.string().min(1).max(255),
  /** ffmpeg demuxer name of the sniffed container (e.g. `mov`, `matroska`); the converter forces it. */
  format: z.string().regex(/^[a-z0-9_]+$/),
  owner: z.object({ id: z.string().min(1), email }),
  /**
   * How the MP3 should come out (see `options.ts`). Added after version 1 was out, hence optional:
   * a message without it (queued by an older gateway) is converted with every default.
   */
  options: ConversionOptions.optional(),
});
export type VideoMessage = z.infer<typeof VideoMessage>;

/** Converter → gateway (`JOB_EVENTS_QUEUE`): what happened to a job. */
export const JobEvent = z.discriminatedUnion("type", [
  z.object({ version: z.literal(1), jobId: id, at: z.iso.datetime(), type: z.literal("converting") }),
  z.object({
    version: z.literal(1),
    jobId: id,
    at: z.iso.datetime(),
    type: z.literal("progress"),
    progress: z.number().min(0).max(1),
    durationSeconds: z.number().nonnegative().nullable(),
  }),
  z.object({
    version: z.literal(1),
    jobId: id,
    at: z.iso.datetime(),
    type: z.literal("done"),
    mp3Id: id,
    mp3Size: z.number().int().nonnegative(),
    durationSeconds: z.number().nonnegative().nullable(),
  }),
  z.object({
    version: z.literal(1),
    jobId: id,
    at: z.iso.datetime(),
    type: z.literal("failed"),
    error: z.string().min(1).max(1000),
  }),
]);
export type JobEvent = z.infer<typeof JobEvent>;

/** Converter → notification (`MP3_QUEUE`): tell the owner how their conversion ended. */
export const Mp3Message = z.discriminatedUnion("outcome", [
  z.object({
    version: z.literal(1),
    outcome: z.literal("done"),
    jobId: id,
    mp3Id: id,
    fileName: z.string().min(1).max(255),
    email,
    durationSeconds: z.number().nonnegative().nullable(),
  }),
  z.object({
    version: z.literal(1),
    outcome: z.literal("failed"),
    jobId: id,
    fileName: z.string().min(1).max(255),
    email,
    error: z.string().min(1).max(1000),
  }),
]);
export type Mp3Message = z.infer<typeof Mp3Message>;

/**
 * Converter → converters (`SEGMENT_QUEUE`): encode one segment of a long job's audio for the
 * converter that holds the job (`CONVERTER_SEGMENT_FANOUT`). The segment's raw PCM waits in the
 * blob store and its MP3 frames go there (`segmentKeys`); nothing else is named here, so a
 * message can make a converter read and write only a segment's own blobs.
 */
export const SegmentMessage = z.object({
  version: z.literal(1),
  jobId: id,
  /** The conversion attempt that offers the segment: each has blobs of its own. */
  run: id,
  index: z.number().int().nonnegative().max(100_000),
  /** The PCM's format: 32-bit float samples, interleaved, at this rate and channel count. */
  pcm: z.object({
    sampleRate: z.number().int().min(8000).max(48_000),
    channels: z.union([z.literal(1), z.literal(2)]),
  }),
  /** The job's encoder quality (absent: the default), the one setting a segment's encoder takes. */
  quality: z.enum(QUALITIES).optional(),
});
export type SegmentMessage = z.infer<typeof SegmentMessage>;

/** Where a segment's PCM waits and where its MP3 frames go. */
export function segmentKeys({ jobId, run, index }: Pick<SegmentMessage, "jobId" | "run" | "index">): {
  pcm: string;
  mp3: string;
} {
  const folder = `${segmentsFolder(jobId)}/${run}`;
  return { pcm: `${folder}/${index}.f32`, mp3: `${folder}/${index}.mp3` };
}

/** Every segment blob of a job, of all its conversion attempts. */
export const segmentsFolder = (jobId: string): string => `segments/${jobId}`;

export const videoKey = (jobId: string): string => `videos/${jobId}`;
export const mp3Key = (mp3Id: string): string => `mp3s/${mp3Id}`;

/** Parses with a schema and turns a validation failure into one readable sentence. */
export function parseWith<T>(schema: z.ZodType<T>): (body: unknown) => T {
  return (body) => {
    const result = schema.safeParse(body);
    if (result.success) return result.data;
    throw new Error(`invalid message: ${z.prettifyError(result.error).replaceAll("\n", "; ")}`);
  };
}
