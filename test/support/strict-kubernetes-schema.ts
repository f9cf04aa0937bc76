import { execFile } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";

/**
 * Strict schema checks for rendered Kubernetes objects, built-in kinds and the CRDs this project
 * uses (Gateway API, KEDA):
 * - `validate()` of kubernetes-models / @kubernetes-models/* (JSON schemas generated from the
 *   Kubernetes OpenAPI documents and the CRDs): types, formats, enums, required fields. Those
 *   schemas let unknown fields through, as the API server's default field validation would warn
 *   rather than fail.
 * - Unknown fields, at any depth, fail through the same packages' TypeScript types (generated
 *   from the same schemas): each object becomes an object literal annotated with its kind's type,
 *   and the TypeScript compiler's excess-property check rejects any field the schema does not
 *   define, as `kubectl apply --validate=strict` would (a misspelled `topologySpreadConstraints`
 *   or `seccompProfile`, for example).
 */

export interface KubernetesObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
}

/** The kubernetes-models module of a kind: built-in kinds, Gateway API and KEDA. */
export function modelModule(object: KubernetesObject): string {
  const group = object.apiVersion.includes("/") ? (object.apiVersion.split("/")[0] as string) : "";
  if (group.startsWith("gateway.networking"))
    return `@kubernetes-models/gateway-api/${object.apiVersion}/${object.kind}`;
  if (group === "keda.sh") return `@kubernetes-models/keda/${object.apiVersion}/${object.kind}`;
  return `kubernetes-models/${object.apiVersion}/${object.kind}`;
}

/** Schema errors of `validate()`, one line per object that fails. */
export async function schemaErrors(objects: KubernetesObject[]): Promise<string[]> {
  const errors: string[] = [];
  for (const object of objects) {
    const what = `${object.kind} ${object.metadata.name}`;
    let model: new (data: unknown) => { validate(): void };
    try {
      model = ((await import(modelModule(object))) as Record<string, typeof model>)[
        object.kind
      ] as typeof model;
    } catch {
      errors.push(`${what}: no schema for ${object.apiVersion} ${object.kind}`);
      continue;
    }
    try {
      new model(object).validate();
    } catch (error) {
      errors.push(`${what}: ${(error as Error).message}`);
    }
  }
  return errors;
}

/**
 * Fields the schemas do not define, found by the TypeScript compiler: one line per unknown field
 * (the compiler's message names the field and the type it is not part of).
 */
export async function unknownFieldErrors(objects: KubernetesObject[], root: string): Promise<string[]> {
  // Inside the repository so that the packages resolve from its node_modules; never committed.
  const dir = path.join(
    root,
    "node_modules",
    ".cache",
    "vid2mp3-strict-schema",
    `${process.pid}-${Date.now()}`,
  );
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, "objects.ts");
  const imports = new Map<string, string>();
  const declarations = objects.map((object, i) => {
    const module = modelModule(object);
    const type = `T${imports.size}`;
    if (!imports.has(module)) imports.set(module, type);
    return `// ${object.kind} ${object.metadata.name}\nexport const o${i}: ${imports.get(module)} = ${JSON.stringify(object, null, 1)};`;
  });
  const header = [...imports].map(([module, type]) => {
    const kind = module.split("/").at(-1) as string;
    return `import type { I${kind} as ${type} } from "${module}";`;
  });
  await writeFile(file, `${header.join("\n")}\n${declarations.join("\n")}\n`);
  try {
    const tsc = path.join(root, "node_modules", ".bin", "tsc");
    const output = await new Promise<string>((resolve) => {
      execFile(
        tsc,
        [
          "--ignoreConfig",
          "--noEmit",
          "--strict",
          "--skipLibCheck",
          "--module",
          "nodenext",
          "--target",
          "esnext",
          file,
        ],
        { maxBuffer: 16 * 1024 * 1024 },
        (_error, stdout, stderr) => resolve(`${stdout}${stderr}`),
      );
    });
    const lines = output.split("\n").filter((line) => /error TS\d+/.test(line));
    return lines.map((line) => {
      // Name the object the error is in, from the comment line above its declaration.
      const lineNumber = Number(/\((\d+),\d+\)/.exec(line)?.[1] ?? 0);
      return `${objectAt(declarations, header.length, lineNumber)}: ${line.replace(/^.*error /, "error ")}`;
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function objectAt(declarations: string[], headerLines: number, lineNumber: number): string {
  let line = headerLines + 1;
  for (const declaration of declarations) {
    const lines = declaration.split("\n").length;
    if (lineNumber < line + lines) return declaration.split("\n")[0]?.slice(3) ?? "?";
    line += lines;
  }
  return "?";
}
