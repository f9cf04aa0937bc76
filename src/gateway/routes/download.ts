import { create as contentDisposition } from "content-disposition";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import rangeParser from "range-parser";
import { mp3Key } from "../../contracts/messages.ts";
import { BlobNotFoundError, type BlobStore } from "../../platform/blobs/blob-store.ts";
import { HttpError } from "../../platform/http.ts";
import { bearer, errorResponse } from "../../platform/openapi.ts";
import type { Caller } from "../authentication.ts";
import { type JobsRepository, mp3FileName } from "../jobs.ts";

export interface DownloadDeps {
  jobs: JobsRepository;
  blobs: BlobStore;
  authenticate: (request: FastifyRequest) => Promise<Caller>;
}

const audioHeaders = {
  "content-disposition": { type: "string", description: 'attachment; filename="<upload name>.mp3"' },
  "content-length": { type: "integer" },
  "accept-ranges": { type: "string", const: "bytes" },
  etag: { type: "string" },
  "last-modified": { type: "string" },
} as const;

const notFound = () => new HttpError(404, "not_found", "No MP3 with this fid.");

const downloadSchema = {
  summary: "Download a finished job's MP3",
  description:
    "Also `HEAD`. One byte range (`Range: bytes=…`) is answered 206; several ranges or a malformed header get the whole file.",
  tags: ["jobs"],
  security: bearer,
  querystring: {
    type: "object",
    properties: {
      fid: { type: "string", minLength: 1, maxLength: 100, description: "The job's `mp3Id`" },
    },
    required: ["fid"],
  },
  headers: {
    type: "object",
    properties: { range: { type: "string", description: "One byte range, e.g. `bytes=0-1023`" } },
  },
  response: {
    200: {
      description: "The whole MP3",
      headers: audioHeaders,
      content: { "audio/mpeg": { schema: { type: "string", format: "binary" } } },
    },
    206: {
      description: "The requested range",
      headers: { ...audioHeaders, "content-range": { type: "string" } },
      content: { "audio/mpeg": { schema: { type: "string", format: "binary" } } },
    },
    400: errorResponse("No fid"),
    401: errorResponse("No token"),
    403: errorResponse("Invalid or expired token"),
    404: errorResponse("No finished job of yours has this fid"),
    416: errorResponse("The range lies beyond the file; `Content-Range: bytes */<size>`"),
  },
} as const;

/**
 * `GET|HEAD /download?fid=<mp3Id>`: streams the caller's MP3, with single byte ranges for
 * seeking players and resumed downloads. Another user's fid is answered exactly like an unknown
 * one, so ids reveal nothing.
 */
export function registerDownloadRoute(app: FastifyInstance, deps: DownloadDeps): void {
  // HEAD first, registered on its own (Fastify then adds no HEAD route of its own) and shown in
  // the OpenAPI document, which names it `downloadMp3-head` so that operation ids stay unique.
  app.route<{ Querystring: { fid?: string } }>({
    method: "HEAD",
    url: "/download",
    schema: { ...downloadSchema, operationId: "downloadMp3" },
    config: { swagger: { exposeHeadRoute: true } },
    handler: (request, reply) => download(request, reply),
  });
  app.route<{ Querystring: { fid?: string } }>({
    method: "GET",
    url: "/download",
    schema: { ...downloadSchema, operationId: "downloadMp3" },
    handler: (request, reply) => download(request, reply),
  });

  async function download(
    request: FastifyRequest<{ Querystring: { fid?: string } }>,
    reply: FastifyReply,
  ): Promise<FastifyReply> {
    const caller = await deps.authenticate(request);
    const job = await deps.jobs.getDone(String(request.query.fid), caller.id);
    if (!job) throw notFound();
    const key = mp3Key(job.mp3_id);
    const stat = await deps.blobs.stat(key);
    if (!stat) throw notFound();

    reply
      .header("content-type", "audio/mpeg")
      .header("accept-ranges", "bytes")
      .header("content-disposition", contentDisposition(mp3FileName(job.file_name)))
      .header("etag", `"${job.mp3_id}-${stat.size}"`)
      .header("cache-control", "private, max-age=0, must-revalidate")
      .header("last-modified", new Date(job.updated_at).toUTCString());

    let range: { start: number; end: number } | undefined;
    const header = request.headers.range;
    if (header !== undefined) {
      const ranges = rangeParser(stat.size, header, { combine: true });
      if (ranges === -1) {
        reply.header("content-range", `bytes */${stat.size}`);
        throw new HttpError(416, "range_not_satisfiable", `The file has ${stat.size} bytes.`);
      }
      // A malformed header, or several ranges, is answered with the whole file (RFC 9110 allows it).
      if (ranges !== -2 && ranges.length === 1 && ranges[0]) range = ranges[0];
    }
    const length = range ? range.end - range.start + 1 : stat.size;
    reply.header("content-length", length);
    if (range) reply.status(206).header("content-range", `bytes ${range.start}-${range.end}/${stat.size}`);
    if (request.method === "HEAD") return reply.send();
    try {
      return reply.send(await deps.blobs.get(key, range));
    } catch (error) {
      if (error instanceof BlobNotFoundError) throw notFound();
      throw error;
    }
  }
}
