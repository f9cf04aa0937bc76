import { create as contentDisposition } from "content-disposition";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import rangeParser from "range-parser";
import { z } from "zod";
import { jsonSchemaOf } from "../../contracts/api-components.ts";
import { DownloadLinkQuery, DownloadQuery, SignedLink } from "../../contracts/jobs.ts";
import { mp3Key } from "../../contracts/messages.ts";
import { BlobNotFoundError, type BlobStore } from "../../platform/blobs/blob-store.ts";
import { bearer, errorResponse } from "../../platform/openapi.ts";
import { isSignedDownload } from "../authentication.ts";
import type { DownloadLinks } from "../download-links.ts";
import {
  downloadRefusedResponse,
  gatewayError,
  gatewayErrorResponse,
  tokenErrorResponses,
} from "../errors.ts";
import { type JobRow, type JobsRepository, mp3FileName } from "../jobs.ts";

export interface DownloadDeps {
  jobs: JobsRepository;
  blobs: BlobStore;
  links: DownloadLinks;
}

const audioHeaders = {
  "content-disposition": { type: "string", description: 'attachment; filename="<upload name>.mp3"' },
  "content-length": { type: "integer" },
  "accept-ranges": { type: "string", const: "bytes" },
  etag: { type: "string" },
  "last-modified": { type: "string" },
} as const;

/** The typed request of `GET /download`. */
interface DownloadRequest {
  Querystring: z.output<typeof DownloadQuery>;
}

const notFound = () => gatewayError("not_found", "No MP3 with this fid.");

const downloadSchema = {
  summary: "Download a finished job's MP3",
  description:
    "Also `HEAD`. One byte range (`Range: bytes=…`) is answered 206; several ranges or a malformed header get the whole file. " +
    "Instead of the bearer token, a signed link from `POST /download/link` (its `expires` and `signature`) opens this one MP3 until it expires.",
  tags: ["jobs"],
  security: [...bearer, {}],
  querystring: DownloadQuery,
  // Loose: every other header stays as it came.
  headers: z.looseObject({
    range: z.string().optional().meta({ description: "One byte range, e.g. `bytes=0-1023`" }),
  }),
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
    401: tokenErrorResponses[401],
    403: downloadRefusedResponse,
    404: errorResponse("No finished job of yours has this fid"),
    416: gatewayErrorResponse(
      "The range lies beyond the file; `Content-Range: bytes */<size>`",
      "range_not_satisfiable",
    ),
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
  app.route<DownloadRequest>({
    method: "HEAD",
    url: "/download",
    schema: { ...downloadSchema, operationId: "downloadMp3" },
    config: { swagger: { exposeHeadRoute: true } },
    handler: (request, reply) => download(request, reply),
  });
  app.route<DownloadRequest>({
    method: "GET",
    url: "/download",
    schema: { ...downloadSchema, operationId: "downloadMp3" },
    handler: (request, reply) => download(request, reply),
  });

  /** The job whose MP3 is asked for: the caller's own (bearer token), or the one a signed link names. */
  async function findJob(request: FastifyRequest<DownloadRequest>): Promise<JobRow | undefined> {
    const { fid, expires, signature } = request.query;
    if (!isSignedDownload(request)) return deps.jobs.getDone(String(fid), request.caller.id);
    const verdict = deps.links.check(String(fid), String(expires ?? ""), String(signature));
    if (verdict === "expired") {
      throw gatewayError("link_expired", "This download link has expired; ask for a new one.");
    }
    if (verdict === "invalid") throw gatewayError("link_invalid", "This download link is not valid.");
    return deps.jobs.getDoneByMp3Id(String(fid));
  }

  async function download(
    request: FastifyRequest<DownloadRequest>,
    reply: FastifyReply,
  ): Promise<FastifyReply> {
    const job = await findJob(request);
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
        throw gatewayError("range_not_satisfiable", `The file has ${stat.size} bytes.`);
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

/**
 * `POST /download/link?fid=<mp3Id>`: a short-lived signed URL of the caller's MP3, for what
 * cannot send the bearer header (the browser's `<audio>` player, a link handed to another app).
 */
export function registerDownloadLinkRoute(app: FastifyInstance, deps: DownloadDeps): void {
  app.post<{ Querystring: { fid: string } }>(
    "/download/link",
    {
      schema: {
        summary: "A signed, short-lived URL of one of your MP3s",
        description:
          "The URL opens `GET /download` for this MP3 without a token (Range requests included) until `expiresAt`.",
        operationId: "createDownloadLink",
        tags: ["jobs"],
        security: bearer,
        querystring: DownloadLinkQuery,
        response: {
          200: {
            description: "The signed URL (relative to the gateway) and when it stops working",
            ...jsonSchemaOf(SignedLink),
          },
          400: errorResponse("No fid"),
          ...tokenErrorResponses,
          404: errorResponse("No finished job of yours has this fid"),
        },
      },
    },
    async (request) => {
      const job = await deps.jobs.getDone(request.query.fid, request.caller.id);
      if (!job) throw notFound();
      return deps.links.sign(job.mp3_id);
    },
  );
}
