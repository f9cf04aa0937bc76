import assert from "node:assert/strict";
import { test } from "node:test";
import { componentSchemas, jsonSchemaOf } from "./api-components.ts";
import { IssuedToken, User } from "./auth-api.ts";
import { FINAL_STATUSES, isFinalStatus, JOB_STATUSES, Job, JobPage, JobPageQuery } from "./jobs.ts";

test("a named shape is a component with its $id, and brings the components it references", () => {
  const schemas = componentSchemas("Job");
  assert.deepEqual(
    schemas.map((schema) => schema.$id),
    ["Job", "JobOptions"],
  );
  const job = schemas[0] as { properties: Record<string, unknown>; required: string[] };
  assert.deepEqual(job.properties.options, { $ref: "JobOptions#" });
  assert.deepEqual(job.required, Object.keys(Job.shape), "every field of a job is always sent");
  assert.throws(() => componentSchemas("Nothing"), /no API component named Nothing/);
});

test("a shape that contains a named one references it instead of repeating it", () => {
  const page = jsonSchemaOf(JobPage) as { properties: { jobs: unknown } };
  assert.deepEqual(page.properties.jobs, { type: "array", items: { $ref: "Job#" } });
  assert.equal(JSON.stringify(page).includes("$defs"), false);
  assert.equal(JSON.stringify(page).includes("$schema"), false);
});

test("a request's schema shows what may be sent: defaults, and no pattern beside a format", () => {
  assert.deepEqual(jsonSchemaOf(JobPageQuery, "input"), {
    type: "object",
    properties: {
      limit: { default: 20, type: "integer", minimum: 1, maximum: 100 },
      offset: { default: 0, type: "integer", minimum: 0 },
    },
  });
  const user = componentSchemas("User")[0] as { properties: Record<string, Record<string, unknown>> };
  assert.deepEqual(user.properties.id, { type: "string", format: "uuid" });
  assert.ok(componentSchemas("IssuedToken")[0]);
  assert.ok(User.safeParse({}).error && IssuedToken.safeParse({}).error);
});

test("the final statuses are statuses, and only they are final", () => {
  for (const status of JOB_STATUSES) {
    assert.equal(isFinalStatus(status), (FINAL_STATUSES as readonly string[]).includes(status), status);
  }
  assert.deepEqual([...FINAL_STATUSES], ["done", "failed"]);
});
