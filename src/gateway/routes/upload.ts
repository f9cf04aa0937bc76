import { randomUUID } from "node:crypto";
import path from "node:path";
import type { MultipartFile, MultipartValue } from "@fastify/multipart";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { fileTypeStream } from "file-type";
import { type VideoMessage, videoKey } from "../../contracts/messages.ts";
import {
  type ConversionOptions,
  isOptionField,
  OptionError,
  type OptionField,
  parseOptionFields,
} from "../../contracts/options.ts";
import type { BlobStore } from "../../platform/blobs/blob-store.ts";
import type { Broker } from "../../platform/broker/broker.ts";
import { isDatabaseUnavailable } from "../../platform/database.ts";
import { HttpError } from "../../platform/http.ts";
import { bearer, documentedOnly, errorResponse } from "../../platform/openapi.ts";
import type { Caller } from "../authentication.ts";
import { type JobRow, type JobsRepository, storedOptions, toJob } from "../jobs.ts";
import { demuxerFor } from "../media-formats.ts";
import type { GatewayMetrics } from "../metrics.ts";
import { uploadAcceptedSchema, uploadFieldsSchema } from "../schemas.ts";

export interface UploadDeps {
  jobs: JobsRepository;
  blobs: BlobStore;
  broker: Broker;
  videoQueue: string;
  maxUploadBytes: number;
  authenticate: (request: FastifyRequest) => Promise<Caller>;
  onAccepted: (row: JobRow) => void;
  metrics: Pick<GatewayMetrics, "uploadAccepted" | "uploadRefused">;
}

const uploadSchema = {
  operationId: "uploadVideo",
  summary: "Upload a video (or audio) file to convert to MP3",
  description:
    "multipart/form-data with exactly one file part (any field name; other fields are ignored). The file streams " +
    "into storage; the answer comes once the file, the job and the queue message are stored. The container is " +
    "recognised from the file's first bytes, not from its name or declared type.",
  tags: ["jobs"],
  security: bearer,
  consumes: ["multipart/form-data"],
  body: {
    type: "object",
    properties: {
      ...uploadFieldsSchema,
      file: { type: "string", format: "binary", description: "The video or audio file, after the fields" },
    },
    required: ["file"],
  },
  response: {
    202: {
      description: "Accepted and queued; `Location: /jobs/<jobId>`",
      headers: { location: { type: "string", description: "/jobs/<jobId>" } },
      ...uploadAcceptedSchema,
    },
    400: errorResponse(
      "Not multipart/form-data, no file or several files, an invalid option field (`invalid_option`, the message " +
        "names the field), or a field after the file (`field_after_file`)",
    ),
    401: errorResponse("No token"),
    403: errorResponse("Invalid or expired token"),
    413: errorResponse("The file is larger than MAX_UPLOAD_BYTES"),
    415: errorResponse("Not a video or audio container that can be converted"),
    503: errorResponse("Storage, queue, database or auth unavailable: nothing was kept"),
  },
} as const;

interface StoredUpload {
  jobId: string;
  fileName: string;
  format: string;
  size: number;
  options: ConversionOptions;
}

/** Longest option field accepted (a 255-character title in UTF-8 needs at most 1020 bytes). */
const MAX_FIELD_BYTES = 4096;

/** Room for the multipart envelope around the file itself. */
const MULTIPART_OVERHEAD_BYTES = 64 * 1024;

/**
 * `POST /upload`: the file streams from the request straight into the blob store (never whole
 * in memory or on the gateway's disk). The container is sniffed from its first bytes. The answer
 * is 202 only once the blob, the job row and the queue message are all stored, so an accepted
 * upload survives a crash; anything that fails before that is undone.
 */
export function registerUploadRoute(app: FastifyInstance, deps: UploadDeps): void {
  const { jobs, blobs, broker } = deps;
  const tooLarge = () =>
    new HttpError(
      413,
      "payload_too_large",
      `The file is larger than the limit of ${deps.maxUploadBytes} bytes.`,
    );

  async function store(file: MultipartFile, options: ConversionOptions): Promise<StoredUpload> {
    const sniffed = await fileTypeStream(file.file, { sampleSize: 4100 });
    const format = demuxerFor(sniffed.fileType?.ext);
    if (format === undefined) {
      file.file.resume();
      throw new HttpError(
        415,
        "unsupported_media_type",
        `This file is not a video or audio container we can convert (detected: ${sniffed.fileType?.mime ?? "unknown data"}).`,
      );
    }
    const jobId = randomUUID();
    let size: number;
    try {
      ({ size } = await blobs.put(videoKey(jobId), sniffed, { contentType: sniffed.fileType?.mime }));
    } catch (error) {
      // The request stream failing (too large, malformed, aborted) is the client's problem;
      // anything else is the storage's.
      const streamError = file.file.errored ?? sniffed.errored;
      if (streamError) throw streamError;
      app.log.error({ err: error }, "blob store failed during upload");
      throw new HttpError(503, "storage_unavailable", "The upload could not be stored; try again shortly.");
    }
    if (file.file.truncated) {
      await blobs.delete(videoKey(jobId));
      throw tooLarge();
    }
    return { jobId, fileName: cleanFileName(file.filename), format, size, options };
  }

  app.post("/upload", { schema: uploadSchema, ...documentedOnly }, async (request, reply) => {
    try {
      return await accept(request, reply);
    } catch (error) {
      deps.metrics.uploadRefused(refusalReason(error));
      throw error;
    }
  });

  async function accept(request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    const caller = await deps.authenticate(request);
    if (!request.isMultipart()) {
      throw new HttpError(400, "bad_request", "Send the video as multipart/form-data with exactly one file.");
    }
    if (Number(request.headers["content-length"]) > deps.maxUploadBytes + MULTIPART_OVERHEAD_BYTES)
      throw tooLarge();

    let upload: StoredUpload | undefined;
    // The option fields come before the file, so they are checked before a byte of it is stored.
    const fields = new Map<OptionField, string>();
    try {
      const parts = request.parts({
        limits: {
          files: 1,
          fileSize: deps.maxUploadBytes,
          fields: MAX_FIELDS,
          parts: MAX_FIELDS + 1,
          fieldSize: MAX_FIELD_BYTES,
        },
      });
      for await (const part of parts) {
        if (part.type === "file") {
          const options = optionsFrom(fields, part);
          upload = await store(part, options);
        } else if (upload) {
          throw new HttpError(
            400,
            "field_after_file",
            `The field "${part.fieldname}" came after the file; send the option fields before the file part. Nothing was kept.`,
          );
        } else {
          readField(part, fields);
        }
      }
    } catch (error) {
      if (upload) await blobs.delete(videoKey(upload.jobId));
      throw toUploadError(error, tooLarge);
    }
    if (!upload) throw new HttpError(400, "bad_request", "The request has no file: send exactly one file.");

    const accepted = upload;
    const row = await jobs
      .create({
        id: accepted.jobId,
        ownerId: caller.id,
        ownerEmail: caller.email,
        fileName: accepted.fileName,
        format: accepted.format,
        size: accepted.size,
        mp3Id: randomUUID(),
        options: accepted.options,
      })
      .catch(async (error: unknown) => {
        await blobs.delete(videoKey(accepted.jobId));
        throw error;
      });
    try {
      await broker.publish(deps.videoQueue, videoMessage(row));
    } catch (error) {
      request.log.error({ err: error, jobId: row.id }, "could not queue the job");
      await jobs.delete(row.id, caller.id);
      await blobs.delete(videoKey(row.id));
      throw new HttpError(
        503,
        "queue_unavailable",
        "The job queue is not reachable; the upload was not kept. Try again shortly.",
      );
    }
    deps.onAccepted(row);
    deps.metrics.uploadAccepted(row.size);
    return reply
      .status(202)
      .header("location", `/jobs/${row.id}`)
      .send({ jobId: row.id, status: row.status, job: toJob(row) });
  }
}

/** The error code the client is answered with, as the label of a refused upload. */
function refusalReason(error: unknown): string {
  if (error instanceof HttpError) return error.code;
  if (isDatabaseUnavailable(error)) return "database_unavailable";
  return "internal";
}

/** Room for every option field and a few unknown ones (ignored, as they always were). */
const MAX_FIELDS = 32;

/** Keeps an option field's text; a field twice, or cut at the size limit, is refused. */
function readField(part: MultipartValue, fields: Map<OptionField, string>): void {
  const name = part.fieldname;
  if (!isOptionField(name)) return;
  if (part.valueTruncated || part.fieldnameTruncated) {
    throw new HttpError(
      400,
      "invalid_option",
      `The field "${name}" is longer than ${MAX_FIELD_BYTES} bytes.`,
    );
  }
  if (fields.has(name)) throw new HttpError(400, "invalid_option", `The field "${name}" was sent twice.`);
  fields.set(name, typeof part.value === "string" ? part.value : String(part.value));
}

/** The options of the fields read so far; an invalid one refuses the upload before the file is stored. */
function optionsFrom(fields: Map<OptionField, string>, file: MultipartFile): ConversionOptions {
  try {
    return parseOptionFields(fields);
  } catch (error) {
    file.file.resume();
    if (error instanceof OptionError) throw new HttpError(400, "invalid_option", error.message);
    throw error;
  }
}

export function videoMessage(row: JobRow): VideoMessage {
  const options = storedOptions(row);
  return {
    version: 1,
    jobId: row.id,
    videoKey: videoKey(row.id),
    mp3Id: row.mp3_id,
    fileName: row.file_name,
    format: row.format,
    owner: { id: row.owner_id, email: row.owner_email },
    // Left out when there are none, so such a message reads as it always did.
    ...(Object.keys(options).length > 0 && { options }),
  };
}

function toUploadError(error: unknown, tooLarge: () => HttpError): unknown {
  if (error instanceof HttpError) return error;
  const code = (error as { code?: string }).code;
  if (code === "FST_REQ_FILE_TOO_LARGE") return tooLarge();
  if (code === "FST_FILES_LIMIT")
    return new HttpError(400, "bad_request", "Send exactly one file per upload.");
  if (code === "FST_PARTS_LIMIT" || code === "FST_FIELDS_LIMIT") {
    return new HttpError(400, "bad_request", `Send one file and at most ${MAX_FIELDS} fields per upload.`);
  }
  return new HttpError(
    400,
    "bad_request",
    `The request is not valid multipart/form-data (${(error as Error).message}).`,
  );
}

/** A display name for the upload: the base name only, no control characters, at most 255 bytes. */
export function cleanFileName(name: string | undefined): string {
  const base = path
    // Browsers and curl send `"`, CR and LF in a multipart file name as %22, %0D and %0A (WHATWG).
    .basename(
      (name ?? "")
        .replaceAll("%22", '"')
        .replace(/%0[AD]/gi, "")
        .replaceAll("\\", "/"),
    )
    // Control characters, and the bidi overrides that make "evil\u202Egpj.mp4" look like a JPEG.
    .replace(/[\p{Cc}\u200E\u200F\u202A-\u202E\u2066-\u2069]/gu, "")
    .trim();
  const cleaned = base === "" || base === "." || base === ".." ? "upload" : base;
  if (Buffer.byteLength(cleaned) <= 255) return cleaned;
  // Cut at a whole character (code point), so neither the byte bound nor UTF-8 breaks.
  let bounded = "";
  let bytes = 0;
  for (const char of cleaned) {
    bytes += Buffer.byteLength(char);
    if (bytes > 255) break;
    bounded += char;
  }
  return bounded;
}
