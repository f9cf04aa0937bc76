import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { createConfig, lintFromString } from "@redocly/openapi-core";
import type { FastifyInstance } from "fastify";
import type { Kysely } from "kysely";
import { type AuthDatabase, type AuthService, createAuthService } from "../src/auth/service.ts";
import { OPTION_FIELDS } from "../src/contracts/options.ts";
import type { GatewayDatabase } from "../src/gateway/jobs.ts";
import { createGatewayService, type GatewayService } from "../src/gateway/service.ts";
import { createFolderBlobStore } from "../src/platform/blobs/folder-blob-store.ts";
import type { Broker } from "../src/platform/broker/broker.ts";
import { createMemoryBroker } from "../src/platform/broker/memory-broker.ts";
import { loadConfig } from "../src/platform/config.ts";
import { openDatabase } from "../src/platform/database.ts";
import { registeredRoutes } from "../src/platform/http.ts";
import { createLogger } from "../src/platform/logger.ts";
import { injectServiceFetch } from "../src/platform/service-fetch.ts";

/**
 * `GET /openapi.json` of the gateway (the public API) and of auth: a well-formed OpenAPI 3
 * document listing every API route, and response schemas that keep every field of the answers.
 */

const ADMIN = { email: "admin@example.com", password: "admin-password-1" };
const JOB_FIELDS = [
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
];
const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

interface Operation {
  summary?: string;
  security?: Record<string, string[]>[];
  parameters?: { in: string; name: string }[];
  responses: Record<string, { description?: string }>;
}
interface OpenApiDocument {
  openapi: string;
  info: { title: string; version: string };
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, { properties?: Record<string, unknown>; required?: string[] }> };
  [key: string]: unknown;
}

/** `/users/:id` → `/users/{id}`. */
const openApiPath = (url: string) => url.replace(/:(\w+)/g, "{$1}");

/** The structural rules of OpenAPI 3 that matter here: every `$ref` resolves, every operation answers, path parameters are declared. */
function assertWellFormed(doc: OpenApiDocument): void {
  assert.match(doc.openapi, /^3\.\d+\.\d+$/);
  assert.ok(doc.info.title && doc.info.version);
  const schemes = Object.keys((doc.components as { securitySchemes?: object }).securitySchemes ?? {});
  const refs = JSON.stringify(doc).match(/"\$ref":"[^"]*"/g) ?? [];
  for (const ref of refs) {
    const target = ref.slice(8, -1);
    assert.match(target, /^#\/components\/schemas\//, `local component reference ${target}`);
    assert.ok(doc.components.schemas[target.split("/").pop() as string], `${target} exists`);
  }
  for (const [url, operations] of Object.entries(doc.paths)) {
    assert.match(url, /^\//);
    for (const [method, operation] of Object.entries(operations)) {
      assert.ok(METHODS.includes(method), `${method} ${url}: a method`);
      assert.ok(operation.summary, `${method} ${url} has a summary`);
      assert.ok(Object.keys(operation.responses).length > 0, `${method} ${url} has responses`);
      for (const [status, response] of Object.entries(operation.responses)) {
        assert.match(status, /^([1-5]\d\d|[1-5]XX|default)$/);
        assert.ok(response.description, `${method} ${url} ${status} has a description`);
      }
      assert.ok(Array.isArray(operation.security), `${method} ${url} states its security`);
      for (const requirement of operation.security ?? []) {
        for (const scheme of Object.keys(requirement))
          assert.ok(schemes.includes(scheme), `scheme ${scheme}`);
      }
      for (const name of url.match(/\{(\w+)\}/g) ?? []) {
        const declared = operation.parameters?.some((p) => p.in === "path" && `{${p.name}}` === name);
        assert.ok(declared, `${method} ${url} declares ${name}`);
      }
    }
  }
}

/** Every route the app registered is in the document, except the web UI's (`notApi`); Fastify's automatic HEAD routes aside. */
function assertEveryRouteListed(
  app: FastifyInstance,
  doc: OpenApiDocument,
  notApi: (url: string) => boolean,
) {
  const routes = registeredRoutes(app);
  assert.ok(routes.length > 5);
  for (const { url, methods } of routes) {
    if (notApi(url)) continue;
    const documented = doc.paths[openApiPath(url)];
    assert.ok(documented, `${url} is in the document`);
    for (const method of methods) {
      if (method === "HEAD" && methods.length === 1) continue;
      assert.ok(documented[method.toLowerCase()], `${method} ${url} is in the document`);
    }
  }
}

/** Redocly's `recommended-strict` ruleset (every rule an error): the problems it finds, one line each. */
async function lintProblems(doc: OpenApiDocument, name: string): Promise<string[]> {
  const config = await createConfig({ extends: ["recommended-strict"] });
  const problems = await lintFromString({ source: JSON.stringify(doc), absoluteRef: name, config });
  return problems.map((p) => `${p.ruleId} ${p.location[0]?.pointer ?? ""}: ${p.message}`);
}

describe("OpenAPI documents", () => {
  let dir: string;
  let auth: AuthService;
  let gateway: GatewayService;
  let broker: Broker;
  let dbs: Kysely<never>[];
  let token: string;

  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-openapi-"));
    const config = loadConfig({
      DATA_DIR: dir,
      LOG_LEVEL: "silent",
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
    });
    const logger = createLogger("silent", "test");
    const authDb = openDatabase<AuthDatabase>({ sqliteFile: path.join(dir, "auth.sqlite") });
    const db = openDatabase<GatewayDatabase>({ sqliteFile: path.join(dir, "gateway.sqlite") });
    dbs = [authDb, db] as unknown as Kysely<never>[];
    auth = await createAuthService(config, { logger, db: authDb, bootstrap: { print: () => {} } });
    await auth.app.ready();
    broker = createMemoryBroker({ logger });
    gateway = await createGatewayService(config, {
      logger,
      db,
      broker,
      blobs: createFolderBlobStore(path.join(dir, "blobs")),
      authFetch: injectServiceFetch(auth.app),
    });
    await gateway.start();
    await gateway.app.ready();
    const login = await gateway.app.inject({
      method: "POST",
      url: "/login",
      headers: {
        authorization: `Basic ${Buffer.from(`${ADMIN.email}:${ADMIN.password}`).toString("base64")}`,
      },
    });
    token = login.body;
  });
  after(async () => {
    await gateway.close();
    await auth.close();
    await broker.close();
    await Promise.all(dbs.map((db) => db.destroy()));
    await rm(dir, { recursive: true, force: true });
  });

  const fetchDocument = async (app: FastifyInstance): Promise<OpenApiDocument> => {
    const response = await app.inject({ method: "GET", url: "/openapi.json" });
    assert.equal(response.statusCode, 200, "no token needed");
    assert.match(String(response.headers["content-type"]), /^application\/json/);
    return JSON.parse(response.body) as OpenApiDocument;
  };

  test("the gateway's document lists every API route with its methods, schemas and security", async () => {
    const doc = await fetchDocument(gateway.app);
    assertWellFormed(doc);
    assert.deepEqual(await lintProblems(doc, "gateway.json"), []);
    // The browser UI's pages and files are not API.
    assertEveryRouteListed(gateway.app, doc, (url) => url === "/" || url.startsWith("/assets/"));
    for (const url of [
      "/login",
      "/upload",
      "/download",
      "/jobs",
      "/jobs/{id}",
      "/events",
      "/users",
      "/users/{id}",
      "/me",
      "/me/password",
    ]) {
      assert.ok(doc.paths[url], url);
    }
    for (const url of ["/register", "/healthz", "/readyz", "/metrics", "/openapi.json"])
      assert.ok(doc.paths[url], url);
    assert.ok(doc.paths["/download"]?.head, "HEAD /download");
    assert.ok(doc.paths["/jobs/{id}"]?.delete, "DELETE /jobs/{id}");
    assert.equal(doc.paths["/"], undefined, "no UI page");

    const job = doc.components.schemas.Job;
    assert.deepEqual(Object.keys(job?.properties ?? {}).sort(), [...JOB_FIELDS].sort());
    assert.deepEqual([...(job?.required ?? [])].sort(), [...JOB_FIELDS].sort());
    assert.ok(doc.components.schemas.Error?.properties?.error);

    const op = (url: string, method: string) =>
      doc.paths[url]?.[method] as Operation & Record<string, unknown>;
    assert.deepEqual(op("/login", "post").security, [{ basicAuth: [] }]);
    assert.deepEqual(op("/upload", "post").security, [{ bearerAuth: [] }]);
    assert.deepEqual(op("/healthz", "get").security, []);
    const uploadBody = op("/upload", "post").requestBody as {
      content: Record<string, { schema: { properties: Record<string, unknown> } }>;
    };
    // The option fields, then the file.
    assert.deepEqual(Object.keys(uploadBody.content["multipart/form-data"]?.schema.properties ?? {}), [
      ...OPTION_FIELDS,
      "file",
    ]);
    assert.deepEqual(
      Object.keys(doc.components.schemas.JobOptions?.properties ?? {}).sort(),
      [...OPTION_FIELDS].sort(),
    );
    const download = op("/download", "get").responses["200"] as { content: Record<string, unknown> };
    assert.ok(download.content["audio/mpeg"]);
    assert.ok(op("/download", "get").responses["206"]);
    const events = op("/events", "get").responses["200"] as { content: Record<string, unknown> };
    assert.ok(events.content["text/event-stream"]);
    const notFound = op("/jobs/{id}", "get").responses["404"] as {
      content: Record<string, { schema: unknown }>;
    };
    assert.deepEqual(notFound.content["application/json"]?.schema, { $ref: "#/components/schemas/Error" });
  });

  test("auth's document lists its routes", async () => {
    const doc = await fetchDocument(auth.app);
    assertWellFormed(doc);
    assert.deepEqual(await lintProblems(doc, "auth.json"), []);
    assertEveryRouteListed(auth.app, doc, () => false);
    for (const url of ["/login", "/validate", "/.well-known/jwks.json", "/register", "/users/{id}"]) {
      assert.ok(doc.paths[url], url);
    }
    assert.ok(doc.components.schemas.User);
  });

  test("response schemas keep every field, and forwarded answers pass through byte for byte", async () => {
    const headers = { authorization: `Bearer ${token}` };
    const form = new FormData();
    const mp4 = Buffer.alloc(2000);
    Buffer.from([0, 0, 0, 0x18]).copy(mp4, 0);
    Buffer.from("ftypisom\0\0\x02\0isomiso2", "latin1").copy(mp4, 4);
    form.append("file", new Blob([mp4]), "clip.mp4");
    const request = new Request("http://localhost/upload", { method: "POST", body: form });
    const uploaded = await gateway.app.inject({
      method: "POST",
      url: "/upload",
      headers: { ...headers, "content-type": String(request.headers.get("content-type")) },
      payload: Buffer.from(await request.arrayBuffer()),
    });
    assert.equal(uploaded.statusCode, 202, uploaded.body);
    const accepted = uploaded.json() as { jobId: string; status: string; job: Record<string, unknown> };
    assert.deepEqual(Object.keys(accepted).sort(), ["job", "jobId", "status"]);
    assert.deepEqual(Object.keys(accepted.job).sort(), [...JOB_FIELDS].sort());

    const one = await gateway.app.inject({ url: `/jobs/${accepted.jobId}`, headers });
    assert.deepEqual(one.json(), accepted.job);
    const list = await gateway.app.inject({ url: "/jobs", headers });
    assert.deepEqual(list.json(), { jobs: [accepted.job], total: 1, limit: 20, offset: 0 });

    // Forwarded to auth: the same bytes as auth's own answer.
    for (const url of ["/users", "/users?limit=1", "/users?limit=0"]) {
      const viaGateway = await gateway.app.inject({ url, headers });
      const direct = await auth.app.inject({ url, headers });
      assert.equal(viaGateway.statusCode, direct.statusCode);
      assert.equal(viaGateway.body, direct.body);
    }
    const users = (await auth.app.inject({ url: "/users", headers })).json() as { users: object[] };
    assert.deepEqual(Object.keys(users.users[0] ?? {}).sort(), [
      "admin",
      "createdAt",
      "disabled",
      "email",
      "id",
      "updatedAt",
    ]);
    const claims = (await auth.app.inject({ method: "POST", url: "/validate", headers })).json() as object;
    assert.deepEqual(Object.keys(claims).sort(), [
      "admin",
      "aud",
      "exp",
      "gen",
      "iat",
      "iss",
      "jti",
      "sub",
      "username",
    ]);
    const issued = await gateway.app.inject({
      method: "POST",
      url: "/login",
      headers: {
        accept: "application/json",
        authorization: `Basic ${Buffer.from(`${ADMIN.email}:${ADMIN.password}`).toString("base64")}`,
      },
    });
    assert.deepEqual(Object.keys(issued.json()).sort(), ["expiresAt", "token"]);
    const jwks = (await auth.app.inject({ url: "/.well-known/jwks.json" })).json() as { keys: object[] };
    assert.deepEqual(Object.keys(jwks.keys[0] ?? {}).sort(), ["alg", "crv", "kid", "kty", "use", "x"]);
  });
});
