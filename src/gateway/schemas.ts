import { DEFAULT_QUALITY, MAX_TAG_LENGTH, OPTION_FIELDS, QUALITIES } from "../contracts/options.ts";

/**
 * JSON Schemas of the gateway's own answers, for the OpenAPI document and for Fastify's response
 * serialisation. Fastify drops any field a response schema does not list, so these are complete.
 */

/** `$ref: "JobOptions#"`: the conversion options of a job, every default filled in. */
export const jobOptionsSchema = {
  $id: "JobOptions",
  type: "object",
  description: "How the MP3 is made: the upload's option fields, with the defaults for those not sent.",
  properties: {
    quality: { type: "string", enum: [...QUALITIES], description: "LAME VBR v0…v9, or a CBR bit rate" },
    start: { type: ["number", "null"], description: "Seconds into the source where the MP3 begins" },
    end: { type: ["number", "null"], description: "Seconds into the source where the MP3 ends" },
    normalize: { type: "boolean", description: "EBU R128: −16 LUFS, true peak ≤ −1.5 dBTP" },
    mono: { type: "boolean" },
    track: {
      type: ["integer", "string"],
      description: "The audio stream: 0-based index among the audio streams, or an ISO 639-2 code",
    },
    title: { type: ["string", "null"], description: "null: the source's title, else the file name" },
    artist: { type: ["string", "null"], description: "null: the source's artist" },
    album: { type: ["string", "null"], description: "null: the source's album" },
    cover: { type: "string", enum: ["frame", "none"] },
    chapters: { type: "string", enum: ["keep", "drop"] },
  },
  required: [...OPTION_FIELDS],
} as const;

/** The upload's option fields (multipart text fields, before the file), for the OpenAPI document. */
export const uploadFieldsSchema = {
  quality: {
    type: "string",
    enum: [...QUALITIES],
    default: DEFAULT_QUALITY,
    description: "LAME VBR v0 (best) … v9, or CBR",
  },
  start: {
    type: "string",
    examples: ["12.5", "1:00", "01:02:03.250"],
    description: "Where the MP3 begins: seconds or [hh:]mm:ss[.fff]",
  },
  end: {
    type: "string",
    examples: ["2:30"],
    description: "Where it ends (after start): seconds or [hh:]mm:ss[.fff]",
  },
  normalize: {
    type: "string",
    enum: ["true", "false"],
    default: "false",
    description: "EBU R128 to −16 LUFS, true peak ≤ −1.5 dBTP (two passes)",
  },
  mono: { type: "string", enum: ["true", "false"], default: "false", description: "One channel" },
  track: {
    type: "string",
    examples: ["0", "1", "eng"],
    default: "0",
    description: "The audio stream: 0-based index among the audio streams, or an ISO 639-2 language code",
  },
  title: {
    type: "string",
    maxLength: MAX_TAG_LENGTH,
    description: "ID3 title; default the source's, else the file name",
  },
  artist: { type: "string", maxLength: MAX_TAG_LENGTH, description: "ID3 artist; default the source's" },
  album: { type: "string", maxLength: MAX_TAG_LENGTH, description: "ID3 album; default the source's" },
  cover: {
    type: "string",
    enum: ["frame", "none"],
    default: "frame",
    description: "frame: a representative frame of the video as the front cover",
  },
  chapters: {
    type: "string",
    enum: ["keep", "drop"],
    default: "keep",
    description: "keep: the source's chapters as ID3 chapter frames, shifted and cut to start/end",
  },
} as const;

/** `$ref: "Job#"`: the job contract (docs/architecture.md). */
export const jobSchema = {
  $id: "Job",
  type: "object",
  description: "One upload and its conversion.",
  properties: {
    id: { type: "string", format: "uuid" },
    status: {
      type: "string",
      enum: ["queued", "converting", "done", "failed"],
      description: "Moves queued → converting → done | failed, never back.",
    },
    fileName: { type: "string", description: "The uploaded file's name" },
    size: { type: "integer", minimum: 0, description: "The upload's size in bytes" },
    createdAt: { type: "string", format: "date-time" },
    updatedAt: { type: "string", format: "date-time" },
    progress: { type: "number", minimum: 0, maximum: 1 },
    durationSeconds: { type: ["number", "null"], description: "The audio's length, once known" },
    mp3Id: { type: ["string", "null"], description: "The `fid` for `GET /download`, once done" },
    error: { type: ["string", "null"], description: "Why the job failed, a sentence for the user" },
    expiresAt: {
      type: ["string", "null"],
      format: "date-time",
      description:
        "When the job and its MP3 are removed (RETENTION_HOURS after it ended); null while unfinished or kept for ever",
    },
    options: { $ref: "JobOptions#" },
    mp3FileName: { type: "string", description: "The name the MP3 downloads under" },
    mp3Size: { type: ["integer", "null"], minimum: 0, description: "The MP3's size in bytes, once done" },
  },
  required: [
    "id",
    "status",
    "fileName",
    "size",
    "createdAt",
    "updatedAt",
    "progress",
    "durationSeconds",
    "mp3Id",
    "error",
    "expiresAt",
    "options",
    "mp3FileName",
    "mp3Size",
  ],
} as const;

export const jobListSchema = {
  type: "object",
  properties: {
    jobs: { type: "array", items: { $ref: "Job#" } },
    total: { type: "integer", minimum: 0 },
    limit: { type: "integer" },
    offset: { type: "integer" },
  },
  required: ["jobs", "total", "limit", "offset"],
} as const;

export const uploadAcceptedSchema = {
  type: "object",
  properties: {
    jobId: { type: "string", format: "uuid" },
    status: { type: "string", enum: ["queued"] },
    job: { $ref: "Job#" },
  },
  required: ["jobId", "status", "job"],
} as const;

/** Schemas every route may reference by `$id`. */
export const sharedGatewaySchemas = [jobOptionsSchema, jobSchema];
