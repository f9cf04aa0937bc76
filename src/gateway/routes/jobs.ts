import type { FastifyInstance } from "fastify";
import { jsonSchemaOf } from "../../contracts/api-components.ts";
import { JobIdParams, JobPage, JobPageQuery } from "../../contracts/jobs.ts";
import { mp3Key, videoKey } from "../../contracts/messages.ts";
import type { BlobStore } from "../../platform/blobs/blob-store.ts";
import type { ZodTypeProvider } from "../../platform/http.ts";
import { bearer, errorResponse } from "../../platform/openapi.ts";
import { gatewayError, tokenErrorResponses } from "../errors.ts";
import type { JobsRepository } from "../jobs.ts";

export interface JobsRouteDeps {
  jobs: JobsRepository;
  blobs: BlobStore;
}

const notFound = () => gatewayError("not_found", "No job with this id.");

/** The caller's jobs: list (newest first, paginated), one, delete (with its files). */
export function registerJobRoutes(fastify: FastifyInstance, deps: JobsRouteDeps): void {
  const app = fastify.withTypeProvider<ZodTypeProvider>();
  app.get(
    "/jobs",
    {
      schema: {
        operationId: "listJobs",
        summary: "Your jobs, newest first",
        tags: ["jobs"],
        security: bearer,
        querystring: JobPageQuery,
        response: {
          200: { description: "A page of your jobs", ...jsonSchemaOf(JobPage) },
          400: errorResponse("Invalid paging"),
          ...tokenErrorResponses,
        },
      },
    },
    async (request) => {
      const { limit, offset } = request.query;
      const { rows, total } = await deps.jobs.list(request.caller.id, { limit, offset });
      return { jobs: rows.map((row) => deps.jobs.describe(row)), total, limit, offset };
    },
  );

  const getSchema = {
    operationId: "getJob",
    summary: "One of your jobs",
    tags: ["jobs"],
    security: bearer,
    params: JobIdParams,
    response: {
      200: { description: "The job", $ref: "Job#" },
      400: errorResponse("Not a job id"),
      ...tokenErrorResponses,
      404: errorResponse("No job of yours has this id"),
    },
  } as const;
  app.get("/jobs/:id", { schema: getSchema }, async (request) => {
    const row = await deps.jobs.get(request.params.id, request.caller.id);
    if (!row) throw notFound();
    return deps.jobs.describe(row);
  });

  app.delete(
    "/jobs/:id",
    {
      schema: {
        operationId: "deleteJob",
        summary: "Delete one of your jobs and its files",
        description: "A conversion still running finishes, and its MP3 is then removed.",
        tags: ["jobs"],
        security: bearer,
        params: JobIdParams,
        response: {
          204: { description: "Deleted", type: "null" },
          400: errorResponse("Not a job id"),
          ...tokenErrorResponses,
          404: errorResponse("No job of yours has this id"),
        },
      },
    },
    async (request, reply) => {
      const { caller } = request;
      const row = await deps.jobs.get(request.params.id, caller.id);
      if (!row) throw notFound();
      // Row first: once it is gone no one can reach the files, and a converter finishing late
      // finds no job and its MP3 is removed by the job-events handler.
      await deps.jobs.delete(row.id, caller.id);
      await Promise.all([deps.blobs.delete(videoKey(row.id)), deps.blobs.delete(mp3Key(row.mp3_id))]);
      return reply.status(204).send();
    },
  );
}
