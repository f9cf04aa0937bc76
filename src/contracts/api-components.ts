import { z } from "zod";

/**
 * The shapes of the HTTP APIs that have a name: each becomes `components.schemas.<id>` of the
 * OpenAPI documents and is referenced as `$ref: "<id>#"` from route schemas. A schema joins with
 * `.meta({id, description})`. The JSON Schemas that Fastify serialises answers
 * with, and that the documents show, are made from these zod schemas here, never written by hand.
 */
export const apiComponents = z.registry<{ id: string; description?: string }>();

export type JsonSchema = Record<string, unknown>;

/** Leaves out what zod adds that neither Fastify nor a reader needs: patterns beside a format, the safe-integer bounds. */
function tidy(context: { jsonSchema: JsonSchema }): void {
  const schema = context.jsonSchema;
  if (schema.format !== undefined && schema.pattern !== undefined) delete schema.pattern;
  if (schema.maximum === Number.MAX_SAFE_INTEGER) delete schema.maximum;
  if (schema.minimum === Number.MIN_SAFE_INTEGER) delete schema.minimum;
}

/**
 * The JSON Schema of a zod schema, for a route's schema: `io` "input" for what a request may
 * send (defaults are optional), "output" for an answer. Named shapes inside it are referenced
 * (`$ref: "Job#"`), not repeated; list them with `componentSchemas`.
 */
export function jsonSchemaOf(schema: z.ZodType, io: "input" | "output" = "output"): JsonSchema {
  const {
    $schema: _,
    $defs: __,
    ...json
  } = z.toJSONSchema(schema, {
    io,
    override: tidy,
    unrepresentable: "any",
  }) as JsonSchema;
  return JSON.parse(JSON.stringify(json).replaceAll(/"#\/\$defs\/([^"]+)"/g, '"$1#"')) as JsonSchema;
}

/**
 * The named shapes `roots` and those they reference, as JSON Schemas with `$id` for
 * `app.addSchema`: a service adds those its routes use (an unused component is a lint error).
 */
export function componentSchemas(...roots: string[]): JsonSchema[] {
  const { schemas } = z.toJSONSchema(z.globalRegistry, {
    uri: (id) => `${id}#`,
    override: tidy,
    unrepresentable: "any",
  }) as { schemas: Record<string, JsonSchema> };
  const wanted = new Set<string>();
  const visit = (id: string): void => {
    if (wanted.has(id)) return;
    if (!schemas[id]) throw new Error(`no API component named ${id}`);
    wanted.add(id);
    for (const match of JSON.stringify(schemas[id]).matchAll(/"\$ref":"([^"#]+)#"/g))
      visit(match[1] as string);
  };
  for (const id of roots) visit(id);
  return [...wanted].map((id) => {
    const { $schema: _, $id: __, ...schema } = schemas[id] as JsonSchema;
    return { $id: id, ...schema };
  });
}
