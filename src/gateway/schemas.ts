/**
 * JSON Schemas of the gateway's own answers, for the OpenAPI document and for Fastify's response
 * serialisation. Fastify drops any field a response schema does not list, so these are complete.
 */

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
export const sharedGatewaySchemas = [jobSchema];
