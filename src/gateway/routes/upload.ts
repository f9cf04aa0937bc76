import { randomUUID } from "node:crypto";
import path from "node:path";
import { PassThrough, pipeline } from "node:stream";
import type { MultipartFile, MultipartValue } from "@fastify/multipart";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { fileTypeStream } from "file-type";
import { jsonSchemaOf } from "../../contracts/api-components.ts";
import { UploadAccepted } from "../../contracts/jobs.ts";
import { videoKey } from "../../contracts/messages.ts";
import {
  type ConversionOptions,
  isOptionField,
  OptionError,
  type OptionField,
  parseOptionFields,
} from "../../contracts/options.ts";
import type { BlobStore } from "../../platform/blobs/blob-store.ts";
import { isDatabaseUnavailable } from "../../platform/database.ts";
import { errorMessage } from "../../platform/error-message.ts";
import { HttpError } from "../../platform/http.ts";
import { bearer, documentedOnly } from "../../platform/openapi.ts";
import type { Caller } from "../authentication.ts";
import { fileTooLarge, gatewayError, gatewayErrorResponse, tokenErrorResponses } from "../errors.ts";
import type { JobLifecycle } from "../job-lifecycle.ts";
import type { JobsRepository } from "../jobs.ts";
import type { Admission, UploadLimits } from "../limits.ts";
import { demuxerFor } from "../media-formats.ts";
import type { GatewayMetrics } from "../metrics.ts";
import { uploadFieldsSchema } from "../schemas.ts";

export interface UploadDeps {
  /** Creates and queues the job once its file is stored. */
  lifecycle: Pick<JobLifecycle, "create">;
  /** Describes the accepted job in the answer. */
  jobs: Pick<JobsRepository, "describe">;
  blobs: BlobStore;
  maxUploadBytes: number;
  /** Per-user limits (active jobs, storage quota), checked before the body is read. */
  limits: UploadLimits;
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
      ...jsonSchemaOf(UploadAccepted),
    },
    400: gatewayErrorResponse(
      "Not multipart/form-data, no file or several files, an invalid option field (the message names the field), " +
        "or a field after the file",
      "bad_request",
      "invalid_option",
      "field_after_file",
    ),
    ...tokenErrorResponses,
    413: gatewayErrorResponse(
      "The file is larger than MAX_UPLOAD_BYTES, or than what is left of your USER_QUOTA_BYTES",
      "payload_too_large",
      "quota_exceeded",
    ),
    415: gatewayErrorResponse(
      "Not a video or audio container that can be converted",
      "unsupported_media_type",
    ),
    429: gatewayErrorResponse(
      "MAX_ACTIVE_JOBS_PER_USER of your jobs are queued or converting",
      "too_many_active_jobs",
    ),
    // Also the platform's `database_unavailable`, hence no list of codes.
    503: gatewayErrorResponse("Storage, queue, database or auth unavailable: nothing was kept"),
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
  const { blobs } = deps;
  const tooLarge = () => fileTooLarge(deps.maxUploadBytes);

  async function store(
    file: MultipartFile,
    options: ConversionOptions,
    overLimit: () => HttpError,
  ): Promise<StoredUpload> {
    // Through a fresh stream: the sniffer waits for a 'readable' event, which a file part that has
    // already ended (an empty file) emitted before anyone listened, so it would wait for ever.
    const sniffed = await fileTypeStream(
      pipeline(file.file, new PassThrough(), () => {}),
      { sampleSize: 4100 },
    );
    const format = demuxerFor(sniffed.fileType?.ext);
    if (format === undefined) {
      file.file.resume();
      throw gatewayError(
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
      throw gatewayError("storage_unavailable", "The upload could not be stored; try again shortly.");
    }
    if (file.file.truncated) {
      await blobs.delete(videoKey(jobId));
      throw overLimit();
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
    const { caller } = request;
    if (!request.isMultipart()) {
      throw gatewayError("bad_request", "Send the video as multipart/form-data with exactly one file.");
    }
    const declaredBytes = Number(request.headers["content-length"]) || 0;
    if (declaredBytes > deps.maxUploadBytes + MULTIPART_OVERHEAD_BYTES) throw tooLarge();
    const admission = await deps.limits.admit(caller, declaredBytes);
    try {
      return await storeAndQueue(request, reply, caller, admission);
    } finally {
      admission.release();
    }
  }

  async function storeAndQueue(
    request: FastifyRequest,
    reply: FastifyReply,
    caller: Caller,
    admission: Admission,
  ): Promise<FastifyReply> {
    let upload: StoredUpload | undefined;
    // The option fields come before the file, so they are checked before a byte of it is stored.
    const fields = new Map<OptionField, string>();
    try {
      const parts = request.parts({
        limits: {
          files: 1,
          fileSize: admission.maxFileBytes,
          fields: MAX_FIELDS,
          parts: MAX_FIELDS + 1,
          fieldSize: MAX_FIELD_BYTES,
        },
      });
      for await (const part of parts) {
        if (part.type === "file") {
          const options = optionsFrom(fields, part);
          upload = await store(part, options, admission.overLimit);
        } else if (upload) {
          throw gatewayError(
            "field_after_file",
            `The field "${part.fieldname}" came after the file; send the option fields before the file part. Nothing was kept.`,
          );
        } else {
          readField(part, fields);
        }
      }
    } catch (error) {
      if (upload) await blobs.delete(videoKey(upload.jobId));
      throw toUploadError(error, admission.overLimit);
    }
    if (!upload) throw gatewayError("bad_request", "The request has no file: send exactly one file.");

    const row = await deps.lifecycle.create({
      id: upload.jobId,
      ownerId: caller.id,
      ownerEmail: caller.email,
      fileName: upload.fileName,
      format: upload.format,
      size: upload.size,
      mp3Id: randomUUID(),
      options: upload.options,
    });
    deps.metrics.uploadAccepted(row.size);
    return reply
      .status(202)
      .header("location", `/jobs/${row.id}`)
      .send({ jobId: row.id, status: row.status, job: deps.jobs.describe(row) });
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
    throw gatewayError("invalid_option", `The field "${name}" is longer than ${MAX_FIELD_BYTES} bytes.`);
  }
  if (fields.has(name)) throw gatewayError("invalid_option", `The field "${name}" was sent twice.`);
  fields.set(name, typeof part.value === "string" ? part.value : String(part.value));
}

/** The options of the fields read so far; an invalid one refuses the upload before the file is stored. */
function optionsFrom(fields: Map<OptionField, string>, file: MultipartFile): ConversionOptions {
  try {
    return parseOptionFields(fields);
  } catch (error) {
    file.file.resume();
    if (error instanceof OptionError) throw gatewayError("invalid_option", error.message);
    throw error;
  }
}

function toUploadError(error: unknown, tooLarge: () => HttpError): unknown {
  if (error instanceof HttpError) return error;
  const code = (error as { code?: string }).code;
  if (code === "FST_REQ_FILE_TOO_LARGE") return tooLarge();
  if (code === "FST_FILES_LIMIT") return gatewayError("bad_request", "Send exactly one file per upload.");
  if (code === "FST_PARTS_LIMIT" || code === "FST_FIELDS_LIMIT") {
    return gatewayError("bad_request", `Send one file and at most ${MAX_FIELDS} fields per upload.`);
  }
  return gatewayError(
    "bad_request",
    `The request is not valid multipart/form-data (${errorMessage(error)}).`,
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
    // Control and invisible format characters: the bidi overrides that make "evil\u202Egpj.mp4" look
    // like a JPEG, zero-width spaces and joiners, soft hyphens, BOMs, line and paragraph separators.
    .replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu, "")
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
