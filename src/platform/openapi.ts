import swagger from "@fastify/swagger";
import type { FastifyInstance, FastifySchema } from "fastify";
import { z } from "zod";
import { jsonSchemaOf } from "../contracts/api-components.ts";

export interface OpenApiInfo {
  title: string;
  version: string;
  description?: string;
}

/** A response schema entry for an error status: the `Error` shape with a description. */
export const errorResponse = (description: string) => ({ description, $ref: "Error#" }) as const;

/**
 * `4XX` of routes that take no input: even they can answer a malformed request (a bad URL,
 * oversized headers) with an error in the usual shape.
 */
export const malformedRequest = { "4XX": errorResponse("A malformed request") } as const;

/** Security requirements for route schemas (`security: bearer`). */
export const bearer = [{ bearerAuth: [] }];
export const basic = [{ basicAuth: [] }];
export const publicRoute: never[] = [];

/**
 * Route options for a schema that only documents a request (a multipart upload, read as it
 * streams, or a request the gateway passes on to auth untouched): Fastify does not validate or
 * coerce against it, so the handler still sees the request exactly as it was sent.
 */
export const documentedOnly = { validatorCompiler: () => () => true };

/**
 * `GET /openapi.json`: the OpenAPI 3.1 document generated from the routes' JSON schemas by
 * @fastify/swagger. Only routes with `tags` are listed (the web UI's pages are not API). Shared
 * schemas added with `app.addSchema({$id})` become `components.schemas.<$id>`. Must be called
 * before any route is added: the plugin collects routes as they are registered.
 */
export async function registerOpenApi(app: FastifyInstance, info: OpenApiInfo): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: { ...info, license: { name: "MIT", identifier: "MIT" } },
      // Relative: the document describes the server that serves it, whatever its public address.
      servers: [{ url: "/", description: "The server that serves this document" }],
      components: {
        securitySchemes: {
          bearerAuth: {
            type: "http",
            scheme: "bearer",
            bearerFormat: "JWT",
            description: "The token from `POST /login`. Missing: 401; invalid or expired: 403.",
          },
          basicAuth: {
            type: "http",
            scheme: "basic",
            description: "E-mail and password, for `POST /login` only.",
          },
        },
      },
    },
    hideUntagged: true,
    // Request parts are zod schemas (see zodValidatorCompiler): the document shows their JSON Schema.
    transform: ({ schema, url }) => ({ schema: schema && requestPartsAsJsonSchema(schema), url }),
    refResolver: {
      buildLocalReference: (json, _baseUri, _fragment, i) =>
        typeof json.$id === "string" ? json.$id : `def-${i}`,
    },
  });
  app.get(
    "/openapi.json",
    {
      schema: {
        operationId: "getOpenApiDocument",
        summary: "This OpenAPI document",
        tags: ["operations"],
        security: publicRoute,
        response: {
          200: {
            description: "OpenAPI 3.1 document",
            content: { "application/json": { schema: { type: "object", additionalProperties: true } } },
          },
          ...malformedRequest,
        },
      },
    },
    // Sent as text: the document is made once the routes are known, and no schema re-serialises it.
    async (_request, reply) =>
      reply.type("application/json; charset=utf-8").send(JSON.stringify(app.swagger())),
  );
}

const REQUEST_PARTS = ["querystring", "params", "body", "headers"] as const;

function requestPartsAsJsonSchema(schema: FastifySchema): FastifySchema {
  const shown: Record<string, unknown> = { ...schema };
  for (const part of REQUEST_PARTS) {
    const value = shown[part];
    if (value instanceof z.ZodType) shown[part] = jsonSchemaOf(value, "input");
  }
  return shown;
}
