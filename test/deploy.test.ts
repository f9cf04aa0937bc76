import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { copyFile, cp, mkdtemp, readdir, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { isBuiltin } from "node:module";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { parseAllDocuments } from "yaml";
import { type Config, configVariableNames, loadConfig } from "../src/platform/config.ts";

/**
 * The deployment files, checked without a cluster or a Docker engine:
 * - deploy/k8s: rendered with `kubectl kustomize` (the example secret files standing in for the real,
 *   git-ignored ones), every object validated against the Kubernetes OpenAPI schemas
 *   (kubernetes-models), then the things the schemas cannot know: each service runs the right
 *   command with probes on its own port, is locked down, and gets an environment that loadConfig
 *   accepts and that selects the distributed backends (never a silent fallback to the embedded ones).
 * - deploy/Dockerfile: parsed; what it copies exists and is in the build context, the entry point
 *   and everything it imports end up in the image, runtime packages are production dependencies.
 */

const root = path.resolve(import.meta.dirname, "..");
const k8sDir = path.join(root, "deploy", "k8s");
const services = ["auth", "gateway", "converter", "notification"] as const;
type ServiceName = (typeof services)[number];
const defaultPorts: Record<ServiceName, number> = {
  auth: 5000,
  gateway: 8080,
  converter: 8081,
  notification: 8082,
};
const expectedReplicas: Record<ServiceName, number> = { auth: 2, gateway: 2, converter: 2, notification: 1 };
/** Which distributed backends each service must be configured with (see src/cli/serve.ts). */
const expectedBackends: Record<ServiceName, (keyof Config)[]> = {
  auth: ["databaseUrl", "jwt"],
  gateway: ["databaseUrl", "amqpUrl", "s3", "authServiceAddress"],
  converter: ["amqpUrl", "s3"],
  notification: ["amqpUrl", "smtpUrl"],
};

// ---------------------------------------------------------------------------------------------
// Kubernetes objects (only the fields these checks read)

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  [field: string]: unknown;
}
interface Probe {
  httpGet?: { path?: string; port: number | string };
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: {
    secretKeyRef?: { name: string; key: string };
    configMapKeyRef?: { name: string; key: string };
  };
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: {
    runAsNonRoot?: boolean;
    runAsUser?: number;
    readOnlyRootFilesystem?: boolean;
    allowPrivilegeEscalation?: boolean;
    capabilities?: { drop?: string[] };
  };
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  containers: Container[];
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  terminationGracePeriodSeconds?: number;
  volumes?: { name: string; emptyDir?: { sizeLimit?: string } }[];
}
interface Deployment extends K8sObject {
  spec: {
    replicas?: number;
    selector: { matchLabels: Record<string, string> };
    template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
  };
}
interface KubeService extends K8sObject {
  spec: {
    type?: string;
    selector: Record<string, string>;
    ports: { name?: string; port: number; targetPort?: number | string }[];
  };
}

/** The rendered base: every object, by kind. */
let objects: K8sObject[] = [];
const ofKind = <T extends K8sObject>(kind: string): T[] => objects.filter((o) => o.kind === kind) as T[];
const named = <T extends K8sObject>(kind: string, name: string): T => {
  const found = ofKind<T>(kind).find((o) => o.metadata.name === name);
  assert.ok(found, `no ${kind} named ${name} in the rendered manifests`);
  return found;
};
const deployment = (name: string) => named<Deployment>("Deployment", name);
const containerOf = (name: string): Container => {
  const containers = deployment(name).spec.template.spec.containers;
  assert.equal(containers.length, 1, `${name}: one container per pod`);
  return containers[0] as Container;
};
const dataOf = (o: K8sObject): Record<string, string> => (o.data ?? {}) as Record<string, string>;

/** Runs kubectl kustomize on a copy of deploy/k8s whose secret files are the committed examples. */
async function renderBase(): Promise<K8sObject[]> {
  const work = await mkdtemp(path.join(tmpdir(), "vid2mp3-deploy-"));
  try {
    const copy = path.join(work, "k8s");
    // Not the developer's own secrets/*.env (if any): only the examples, as CI sees them.
    await cp(k8sDir, copy, {
      recursive: true,
      filter: (source) => !/\/secrets\/[^/]+\.env$/.test(source),
    });
    const secretsDir = path.join(copy, "secrets");
    for (const file of await readdir(secretsDir)) {
      if (file.endsWith(".env.example")) {
        await copyFile(path.join(secretsDir, file), path.join(secretsDir, file.slice(0, -".example".length)));
      }
    }
    const kubectl = process.env.KUBECTL ?? "kubectl";
    const yamlText = await new Promise<string>((resolve, reject) => {
      execFile(kubectl, ["kustomize", copy], { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
        if ((error as NodeJS.ErrnoException | null)?.code === "ENOENT") {
          reject(
            new Error(
              `kubectl not found (looked for "${kubectl}" on PATH): these tests need it to render deploy/k8s ` +
                "with its built-in kustomize. Install kubectl (CI installs it), or set KUBECTL to its path.",
            ),
          );
        } else if (error) {
          reject(new Error(`kubectl kustomize deploy/k8s failed: ${stderr || error.message}`));
        } else {
          resolve(stdout);
        }
      });
    });
    return parseAllDocuments(yamlText).map((doc) => {
      assert.equal(doc.errors.length, 0, `kustomize output is not valid YAML: ${doc.errors.join("; ")}`);
      const object = doc.toJS() as K8sObject;
      // kustomize folds long base64 values over several lines; the API server's decoder skips the
      // line breaks, the schema's "byte" format does not: remove them as the server would.
      if (object.kind === "Secret" && object.data) {
        const data = object.data as Record<string, string>;
        for (const key of Object.keys(data)) data[key] = (data[key] as string).replace(/\s+/g, "");
      }
      return object;
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** The port a probe or a Service's targetPort names, as a number (named ports resolved). */
function resolvePort(container: Container, port: number | string | undefined): number | undefined {
  if (typeof port === "number") return port;
  return container.ports?.find((p) => p.name === port)?.containerPort;
}

/** Kubernetes quantities ("500m", "2", "512Mi", "8Gi", "3g" for nginx) as numbers. */
function quantity(value: string | undefined): number {
  assert.ok(value !== undefined, "quantity missing");
  const match = /^(\d+(?:\.\d+)?)(m|k|K|M|G|T|Ki|Mi|Gi|Ti|g)?$/.exec(value);
  assert.ok(match, `not a quantity: ${value}`);
  const factors: Record<string, number> = {
    m: 1e-3,
    k: 1e3,
    K: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
    g: 2 ** 30, // nginx sizes are binary
  };
  return Number(match[1]) * (match[2] ? (factors[match[2]] as number) : 1);
}

/** What the container's process sees in its environment (envFrom first, env overrides). */
function environmentOf(container: Container): Record<string, string> {
  const env: Record<string, string> = {};
  const decode = (secret: K8sObject, key: string) =>
    Buffer.from(dataOf(secret)[key] ?? "", "base64").toString("utf8");
  for (const source of container.envFrom ?? []) {
    if (source.configMapRef) Object.assign(env, dataOf(named("ConfigMap", source.configMapRef.name)));
    if (source.secretRef) {
      const secret = named("Secret", source.secretRef.name);
      for (const key of Object.keys(dataOf(secret))) env[key] = decode(secret, key);
    }
  }
  for (const { name, value, valueFrom } of container.env ?? []) {
    if (value !== undefined) env[name] = value;
    else if (valueFrom?.secretKeyRef) env[name] = decode(named("Secret", valueFrom.secretKeyRef.name), name);
    else if (valueFrom?.configMapKeyRef) {
      env[name] =
        dataOf(named("ConfigMap", valueFrom.configMapKeyRef.name))[valueFrom.configMapKeyRef.key] ?? "";
    } else env[name] = "";
  }
  return env;
}

describe("deploy/k8s (kustomize base)", () => {
  before(async () => {
    objects = await renderBase();
  });

  it("renders every object this base is made of", () => {
    const kinds = (kind: string) =>
      ofKind(kind)
        .map((o) => o.metadata.name)
        .sort();
    assert.deepEqual(kinds("Deployment"), [...services].sort());
    assert.deepEqual(kinds("Service"), ["auth", "gateway"]);
    assert.deepEqual(kinds("Ingress"), ["gateway"]);
    assert.deepEqual(kinds("HorizontalPodAutoscaler"), ["converter"]);
    assert.deepEqual(kinds("PodDisruptionBudget"), ["auth", "gateway"]);
    assert.equal(ofKind("ConfigMap").length, 1);
    assert.ok(ofKind("Secret").length >= 1);
  });

  it("validates every object against the Kubernetes OpenAPI schemas (kubernetes-models)", async () => {
    for (const object of objects) {
      const what = `${object.kind} ${object.metadata.name}`;
      let model: new (data: unknown) => { validate(): void };
      try {
        // kubernetes-models is laid out as <apiVersion>/<Kind>: apps/v1/Deployment, v1/Service, ...
        const module = (await import(`kubernetes-models/${object.apiVersion}/${object.kind}`)) as Record<
          string,
          typeof model
        >;
        model = module[object.kind] as typeof model;
        assert.ok(model);
      } catch {
        assert.fail(`${what}: no schema for ${object.apiVersion} ${object.kind} (not a built-in kind?)`);
      }
      assert.doesNotThrow(() => new model(object).validate(), `${what} does not match its schema`);
    }
  });

  it("puts everything in the vid2mp3 namespace with the common labels", () => {
    for (const object of objects) {
      const what = `${object.kind} ${object.metadata.name}`;
      if (object.kind === "Namespace") assert.equal(object.metadata.name, "vid2mp3");
      else assert.equal(object.metadata.namespace, "vid2mp3", `${what}: namespace`);
      assert.equal(
        object.metadata.labels?.["app.kubernetes.io/part-of"],
        "vid2mp3",
        `${what}: part-of label`,
      );
      assert.equal(object.metadata.labels?.["app.kubernetes.io/name"], "vid2mp3", `${what}: name label`);
    }
  });

  for (const name of services) {
    describe(`the ${name} Deployment`, () => {
      it("selects its own pods only", () => {
        const d = deployment(name);
        for (const [key, value] of Object.entries(d.spec.selector.matchLabels)) {
          assert.equal(d.spec.template.metadata.labels[key], value, `${name}: selector label ${key}`);
        }
        for (const other of ofKind<Deployment>("Deployment").filter((o) => o.metadata.name !== name)) {
          const labels = other.spec.template.metadata.labels;
          const matches = Object.entries(d.spec.selector.matchLabels).every(([k, v]) => labels[k] === v);
          assert.ok(!matches, `${name}'s selector also selects ${other.metadata.name}'s pods`);
        }
      });

      it(`runs the vid2mp3 image as \`serve ${name}\``, () => {
        const c = containerOf(name);
        assert.match(c.image, /^vid2mp3(:|@|$)/, `${name}: the image (set by kustomize images:)`);
        assert.equal(c.command, undefined, `${name}: the image's ENTRYPOINT must run (tini, node)`);
        assert.deepEqual(c.args, ["serve", name]);
      });

      it(`listens on port ${defaultPorts[name]}, probed at /healthz (liveness) and /readyz (readiness)`, () => {
        const c = containerOf(name);
        const port = defaultPorts[name];
        assert.deepEqual(
          c.ports?.map((p) => p.containerPort),
          [port],
        );
        assert.equal(
          loadConfig(environmentOf(c)).port ?? port,
          port,
          `${name}: PORT must match the container port`,
        );
        assert.equal(c.livenessProbe?.httpGet?.path, "/healthz", `${name}: liveness path`);
        assert.equal(resolvePort(c, c.livenessProbe?.httpGet?.port), port, `${name}: liveness port`);
        assert.equal(c.readinessProbe?.httpGet?.path, "/readyz", `${name}: readiness path`);
        assert.equal(resolvePort(c, c.readinessProbe?.httpGet?.port), port, `${name}: readiness port`);
        if (c.startupProbe) {
          assert.equal(c.startupProbe.httpGet?.path, "/healthz", `${name}: startup path`);
          assert.equal(resolvePort(c, c.startupProbe.httpGet?.port), port, `${name}: startup port`);
        }
      });

      it("declares CPU and memory requests and limits", () => {
        const { requests, limits } = containerOf(name).resources ?? {};
        for (const resource of ["cpu", "memory"]) {
          const request = quantity(requests?.[resource]);
          const limit = quantity(limits?.[resource]);
          assert.ok(
            request > 0 && request <= limit,
            `${name}: ${resource} request ${request} vs limit ${limit}`,
          );
        }
      });

      it("runs locked down: non-root, read-only root filesystem, no privilege escalation, no capabilities", () => {
        const pod = deployment(name).spec.template.spec;
        const c = containerOf(name);
        const sc = c.securityContext ?? {};
        assert.equal(sc.runAsNonRoot ?? pod.securityContext?.runAsNonRoot, true, `${name}: runAsNonRoot`);
        const uid = sc.runAsUser ?? pod.securityContext?.runAsUser;
        // The image's USER is `node` (a name): runAsNonRoot can only be verified with a numeric uid.
        assert.ok(typeof uid === "number" && uid !== 0, `${name}: a numeric non-root runAsUser`);
        assert.equal(sc.readOnlyRootFilesystem, true, `${name}: readOnlyRootFilesystem`);
        assert.equal(sc.allowPrivilegeEscalation, false, `${name}: allowPrivilegeEscalation`);
        assert.ok(sc.capabilities?.drop?.includes("ALL"), `${name}: capabilities.drop ALL`);
        // The only places it writes are volumes.
        for (const dir of ["/data", "/tmp"]) {
          const mount = c.volumeMounts?.find((m) => m.mountPath === dir);
          assert.ok(mount, `${name}: a volume at ${dir}`);
          const volume = pod.volumes?.find((v) => v.name === mount.name);
          assert.ok(volume?.emptyDir, `${name}: ${dir} is an emptyDir`);
        }
      });

      it("gets an environment that loadConfig accepts, with the distributed backends selected", () => {
        const c = containerOf(name);
        for (const source of c.envFrom ?? []) {
          // Resolves (throws) when the ConfigMap or Secret it names is not in the output.
          if (source.configMapRef) named("ConfigMap", source.configMapRef.name);
          if (source.secretRef) named("Secret", source.secretRef.name);
        }
        const env = environmentOf(c);
        const config = loadConfig(env);
        assert.equal(env.DATA_DIR, undefined, `${name}: DATA_DIR comes from the image (/data)`);
        for (const backend of expectedBackends[name]) {
          assert.notEqual(config[backend], undefined, `${name}: ${backend} must be configured`);
        }
        if (name === "auth") {
          // Every replica must sign with the same key: it comes from the Secret, not from each pod.
          assert.ok(env.JWT_PRIVATE_KEY, "auth: JWT_PRIVATE_KEY from the Secret");
          assert.equal(env.JWT_SECRET, undefined, "auth: EdDSA, not HS256");
        }
      });
    });
  }

  it("runs the replica counts of the design (the converter's through its autoscaler)", () => {
    const hpa = named<K8sObject & { spec: { minReplicas?: number } }>("HorizontalPodAutoscaler", "converter");
    for (const name of services) {
      const replicas = name === "converter" ? hpa.spec.minReplicas : deployment(name).spec.replicas;
      assert.equal(replicas, expectedReplicas[name], `${name}: replicas`);
    }
  });

  it("gives auth and the gateway each their own database", () => {
    const auth = loadConfig(environmentOf(containerOf("auth")));
    const gateway = loadConfig(environmentOf(containerOf("gateway")));
    assert.ok(auth.databaseUrl && gateway.databaseUrl);
    assert.notEqual(new URL(auth.databaseUrl).pathname, new URL(gateway.databaseUrl).pathname);
  });

  it("sizes the converter for CPU-heavy work: one conversion a pod, scratch room for the largest upload", () => {
    const d = deployment("converter");
    const c = containerOf("converter");
    const config = loadConfig(environmentOf(c));
    assert.equal(environmentOf(c).CONVERTER_CONCURRENCY, "1");
    assert.ok(quantity(c.resources?.requests?.cpu) >= 1, "converter: at least one core requested");
    assert.ok((d.spec.template.spec.terminationGracePeriodSeconds ?? 30) >= 60, "converter: grace period");
    const dataMount = c.volumeMounts?.find((m) => m.mountPath === "/data");
    const scratch = d.spec.template.spec.volumes?.find((v) => v.name === dataMount?.name)?.emptyDir;
    assert.ok(
      quantity(scratch?.sizeLimit) >= config.maxUploadBytes * config.converterConcurrency,
      "converter: /data holds MAX_UPLOAD_BYTES per conversion",
    );
    const { spec } = named<
      K8sObject & {
        spec: {
          scaleTargetRef: { kind: string; name: string };
          metrics: { type: string; resource?: { name: string } }[];
        };
      }
    >("HorizontalPodAutoscaler", "converter");
    assert.deepEqual([spec.scaleTargetRef.kind, spec.scaleTargetRef.name], ["Deployment", "converter"]);
    assert.ok(spec.metrics.some((m) => m.type === "Resource" && m.resource?.name === "cpu"));
  });

  it("uses only environment variable names that loadConfig knows", () => {
    const known = new Set<string>(configVariableNames);
    const used: string[] = [];
    for (const o of [...ofKind("ConfigMap"), ...ofKind("Secret")]) {
      used.push(...Object.keys(dataOf(o)).map((key) => `${key} (${o.kind} ${o.metadata.name})`));
    }
    for (const d of ofKind<Deployment>("Deployment")) {
      for (const c of d.spec.template.spec.containers) {
        used.push(...(c.env ?? []).map((e) => `${e.name} (Deployment ${d.metadata.name})`));
      }
    }
    assert.ok(used.length > 10);
    const unknown = used.filter((entry) => !known.has(entry.split(" ")[0] as string));
    assert.deepEqual(unknown, [], "variables that src/platform/config.ts does not read");
  });

  it("points the Services at existing Deployments' container ports", () => {
    for (const service of ofKind<KubeService>("Service")) {
      const name = service.metadata.name;
      assert.equal(service.spec.type ?? "ClusterIP", "ClusterIP", `${name}: internal only`);
      const targets = ofKind<Deployment>("Deployment").filter((d) =>
        Object.entries(service.spec.selector).every(([k, v]) => d.spec.template.metadata.labels[k] === v),
      );
      assert.deepEqual(
        targets.map((d) => d.metadata.name),
        [name],
        `Service ${name} selects exactly its Deployment`,
      );
      const container = containerOf(name);
      for (const port of service.spec.ports) {
        const target = resolvePort(container, port.targetPort ?? port.port);
        assert.equal(target, defaultPorts[name as ServiceName], `Service ${name}: targetPort`);
      }
    }
  });

  it("points AUTH_SVC_ADDRESS at the auth Service", () => {
    const address = loadConfig(environmentOf(containerOf("gateway"))).authServiceAddress;
    assert.ok(address);
    const url = new URL(address);
    const service = named<KubeService>("Service", url.hostname);
    assert.ok(
      service.spec.ports.some((p) => p.port === Number(url.port || 80)),
      `auth Service port ${url.port}`,
    );
  });

  it("routes the Ingress to the gateway Service, with large bodies and no buffering", () => {
    const ingress = named<K8sObject & { spec: { rules: unknown[] } }>("Ingress", "gateway");
    const rules = ingress.spec.rules as {
      http: { paths: { backend: { service: { name: string; port: { name?: string; number?: number } } } }[] };
    }[];
    const backends = rules.flatMap((r) => r.http.paths.map((p) => p.backend.service));
    assert.ok(backends.length > 0);
    for (const backend of backends) {
      assert.equal(backend.name, "gateway");
      const service = named<KubeService>("Service", backend.name);
      const port = service.spec.ports.find((p) =>
        backend.port.name !== undefined ? p.name === backend.port.name : p.port === backend.port.number,
      );
      assert.ok(
        port,
        `Ingress backend port ${JSON.stringify(backend.port)} is not a port of Service gateway`,
      );
    }
    const annotations = ingress.metadata.annotations ?? {};
    const maxUpload = loadConfig(environmentOf(containerOf("gateway"))).maxUploadBytes;
    const bodySize = annotations["nginx.ingress.kubernetes.io/proxy-body-size"];
    assert.ok(
      bodySize === "0" || quantity(bodySize) > maxUpload,
      `proxy-body-size ${bodySize} must exceed MAX_UPLOAD_BYTES (${maxUpload}) so the gateway answers 413 itself`,
    );
    assert.equal(annotations["nginx.ingress.kubernetes.io/proxy-buffering"], "off", "SSE and downloads");
    assert.equal(
      annotations["nginx.ingress.kubernetes.io/proxy-request-buffering"],
      "off",
      "streaming uploads",
    );
  });

  it("protects auth and the gateway with PodDisruptionBudgets that still let a node drain", () => {
    for (const name of ["auth", "gateway"]) {
      const pdb = named<
        K8sObject & { spec: { minAvailable?: number; selector: { matchLabels: Record<string, string> } } }
      >("PodDisruptionBudget", name);
      const d = deployment(name);
      assert.deepEqual(pdb.spec.selector.matchLabels, d.spec.selector.matchLabels, `${name}: PDB selector`);
      assert.ok(
        pdb.spec.minAvailable !== undefined && pdb.spec.minAvailable < (d.spec.replicas ?? 1),
        `${name}: minAvailable below the replica count`,
      );
    }
  });

  it("keeps real secrets out of git: only *.env.example files are committed, *.env are ignored", () => {
    const git = (...args: string[]) => spawnSync("git", args, { cwd: root, encoding: "utf8" });
    const tracked = git("ls-files", "deploy/k8s/secrets").stdout.split("\n").filter(Boolean);
    assert.ok(
      tracked.every((file) => file.endsWith(".env.example")),
      `tracked: ${tracked.join(", ")}`,
    );
    assert.equal(git("check-ignore", "-q", "deploy/k8s/secrets/auth.env").status, 0, "secrets/*.env ignored");
    assert.notEqual(git("check-ignore", "-q", "deploy/k8s/secrets/auth.env.example").status, 0);
  });
});

// ---------------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  keyword: string;
  args: string;
  /** The stage (0-based FROM index) it belongs to. */
  stage: number;
}

/** Instructions with continuation lines joined and comments dropped (no heredocs are used). */
function parseDockerfile(text: string): Instruction[] {
  const instructions: Instruction[] = [];
  let pending = "";
  let stage = -1;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("#") || (line === "" && pending === "")) continue;
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1)} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = "";
    if (full === "") continue;
    const [keyword = "", ...rest] = full.split(/\s+/);
    const upper = keyword.toUpperCase();
    if (upper === "FROM") stage++;
    instructions.push({ keyword: upper, args: rest.join(" "), stage });
  }
  return instructions;
}

/** Exec form (JSON array) arguments; a shell-form instruction fails the check. */
function execForm(instruction: Instruction | undefined, what: string): string[] {
  assert.ok(instruction, `${what} missing`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(instruction.args);
  } catch {
    assert.fail(`${what} must be in exec form (a JSON array), got: ${instruction.args}`);
  }
  assert.ok(Array.isArray(parsed) && parsed.every((a) => typeof a === "string"), `${what}: array of strings`);
  return parsed as string[];
}

/** Splits COPY arguments into --flags, sources and destination (exec form or plain). */
function copyParts(args: string): { flags: Record<string, string>; sources: string[]; dest: string } {
  const words = args.trim().startsWith("[") ? (JSON.parse(args) as string[]) : args.split(/\s+/);
  const flags: Record<string, string> = {};
  while (words[0]?.startsWith("--")) {
    const [flag = "", value = ""] = (words.shift() as string).slice(2).split("=");
    flags[flag] = value;
  }
  const dest = words.pop();
  assert.ok(dest && words.length > 0, `COPY ${args}: needs a source and a destination`);
  return { flags, sources: words, dest };
}

/** .dockerignore semantics: globs with ** and *, later lines win, `!` re-includes, a dir covers its contents. */
function dockerignoreMatcher(text: string): (file: string) => boolean {
  const rules = text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const negate = line.startsWith("!");
      const pattern = path.posix.normalize((negate ? line.slice(1) : line).trim()).replace(/^\/+|\/+$/g, "");
      let source = "";
      for (let i = 0; i < pattern.length; i++) {
        const ch = pattern[i] as string;
        if (pattern.startsWith("**/", i)) {
          source += "(?:.*/)?";
          i += 2;
        } else if (pattern.startsWith("**", i)) {
          source += ".*";
          i += 1;
        } else if (ch === "*") source += "[^/]*";
        else if (ch === "?") source += "[^/]";
        else source += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
      }
      return { negate, regex: new RegExp(`^${source}$`) };
    });
  return (file) => {
    const parts = path.posix.normalize(file).split("/");
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
    let excluded = false;
    for (const rule of rules) {
      if (prefixes.some((p) => rule.regex.test(p))) excluded = !rule.negate;
    }
    return excluded;
  };
}

describe("deploy/Dockerfile", () => {
  const dockerfile = readFileSync(path.join(root, "deploy", "Dockerfile"), "utf8");
  const instructions = parseDockerfile(dockerfile);
  const finalStage = Math.max(...instructions.map((i) => i.stage));
  const final = instructions.filter((i) => i.stage === finalStage);
  const last = (keyword: string) => final.findLast((i) => i.keyword === keyword);
  const stageNames = instructions
    .filter((i) => i.keyword === "FROM")
    .map((i) => /\s+AS\s+(\S+)$/i.exec(i.args)?.[1]?.toLowerCase());
  const ignored = dockerignoreMatcher(readFileSync(path.join(root, ".dockerignore"), "utf8"));
  const packageJson = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as {
    dependencies: Record<string, string>;
  };

  /** Where each repository path the final stage copies from the build context lands in the image. */
  const contextCopies: { source: string; imagePath: string; isDir: boolean }[] = [];
  {
    let workdir = "/";
    for (const i of final) {
      if (i.keyword === "WORKDIR") workdir = path.posix.resolve(workdir, i.args);
      if (i.keyword !== "COPY" && i.keyword !== "ADD") continue;
      const { flags, sources, dest } = copyParts(i.args);
      if (flags.from !== undefined) continue;
      const destination = path.posix.resolve(workdir, dest);
      for (const source of sources) {
        const isDir = existsSync(path.join(root, source)) && statSync(path.join(root, source)).isDirectory();
        const intoDir = isDir || dest.endsWith("/") || sources.length > 1;
        contextCopies.push({
          source: path.posix.normalize(source).replace(/\/+$/, ""),
          imagePath:
            intoDir && !isDir ? path.posix.join(destination, path.posix.basename(source)) : destination,
          isDir,
        });
      }
    }
  }
  /** The image path of a repository file, or undefined when it is not in the image. */
  const imagePathOf = (repoFile: string): string | undefined => {
    if (ignored(repoFile)) return undefined;
    for (const copy of contextCopies) {
      if (repoFile === copy.source) return copy.imagePath;
      if (copy.isDir && repoFile.startsWith(`${copy.source}/`)) {
        return path.posix.join(copy.imagePath, repoFile.slice(copy.source.length + 1));
      }
    }
    return undefined;
  };

  it("builds on Node 24 (bookworm-slim) in every stage", () => {
    const froms = instructions.filter((i) => i.keyword === "FROM");
    assert.ok(froms.length >= 2, "multi-stage");
    for (const from of froms) {
      const image = from.args.split(/\s+/).find((w) => !w.startsWith("--")) as string;
      if (stageNames.includes(image.toLowerCase())) continue;
      assert.match(
        image,
        /^(docker\.io\/(library\/)?)?node:24(\.[\d.]+)?-bookworm-slim(@sha256:[0-9a-f]{64})?$/,
      );
    }
  });

  it("copies only sources that exist and are in the build context, and stages that exist", () => {
    for (const i of instructions.filter((x) => x.keyword === "COPY" || x.keyword === "ADD")) {
      assert.equal(i.keyword, "COPY", "COPY, not ADD");
      const { flags, sources } = copyParts(i.args);
      if (flags.from !== undefined) {
        const stage = stageNames.indexOf(flags.from.toLowerCase());
        assert.ok(stage >= 0 && stage < i.stage, `COPY --from=${flags.from}: an earlier stage`);
        continue;
      }
      for (const source of sources) {
        assert.ok(existsSync(path.join(root, source)), `COPY ${source}: not in the repository`);
        assert.ok(!ignored(source), `COPY ${source}: excluded by .dockerignore, so not in the build context`);
      }
    }
  });

  it("installs production dependencies only, and Debian's ffmpeg without recommends", () => {
    const runs = instructions.filter((i) => i.keyword === "RUN").map((i) => i.args);
    assert.ok(
      runs.some((r) => /npm ci\b.*--omit=dev/.test(r)),
      "npm ci --omit=dev",
    );
    const apt = final.filter((i) => i.keyword === "RUN" && /apt-get install/.test(i.args));
    assert.ok(apt.some((i) => /--no-install-recommends/.test(i.args) && /\bffmpeg\b/.test(i.args)));
    assert.ok(
      apt.every((i) => /rm -rf \/var\/lib\/apt\/lists/.test(i.args)),
      "apt lists removed in the same layer",
    );
    const env = final
      .filter((i) => i.keyword === "ENV")
      .map((i) => i.args)
      .join(" ");
    assert.match(env, /\bDATA_DIR=\/data\b/);
    assert.match(env, /\bFFMPEG_PATH=\/usr\/bin\/ffmpeg\b/);
  });

  it("runs as a user that is not root, under tini, `serve all` by default", () => {
    const user = last("USER")?.args.split(":")[0];
    assert.ok(user && user !== "root" && user !== "0", `USER ${user}`);
    assert.deepEqual(execForm(last("ENTRYPOINT"), "ENTRYPOINT"), ["tini", "--", "node", "src/cli/main.ts"]);
    assert.deepEqual(execForm(last("CMD"), "CMD"), ["serve", "all"]);
    assert.ok(final.some((i) => i.keyword === "EXPOSE" && i.args.split(/\s+/).includes("8080")));
  });

  it("puts the entry point and everything it imports in the image; packages are production dependencies", () => {
    const entry = execForm(last("ENTRYPOINT"), "ENTRYPOINT");
    const workdir = final
      .filter((i) => i.keyword === "WORKDIR")
      .reduce((dir, i) => path.posix.resolve(dir, i.args), "/");
    const script = entry[entry.indexOf("node") + 1] as string;
    const entryImagePath = path.posix.resolve(workdir, script);
    const entryRepoFile = path.posix.normalize(script);
    assert.ok(existsSync(path.join(root, entryRepoFile)), `${script} is not in the repository`);
    assert.equal(imagePathOf(entryRepoFile), entryImagePath, `${script} is not copied to ${entryImagePath}`);

    const seen = new Set<string>();
    const queue = [entryRepoFile];
    const problems: string[] = [];
    const importPattern = /^\s*(?:import|export)\s+(type\s+)?(?:[^'";]*?\s+from\s+)?["']([^"']+)["']/gm;
    const callPattern = /\b(?:import|require)\(\s*["']([^"']+)["']\s*\)/g;
    while (queue.length > 0) {
      const file = queue.shift() as string;
      if (seen.has(file)) continue;
      seen.add(file);
      if (!file.endsWith(".ts") && !file.endsWith(".js")) continue;
      const code = readFileSync(path.join(root, file), "utf8");
      const specifiers = [
        ...[...code.matchAll(importPattern)].filter((m) => !m[1]).map((m) => m[2] as string),
        ...[...code.matchAll(callPattern)].map((m) => m[1] as string),
      ];
      for (const specifier of specifiers) {
        if (specifier.startsWith(".")) {
          const target = path.posix.join(path.posix.dirname(file), specifier);
          const inImage = imagePathOf(target);
          const expected = path.posix.join(path.posix.dirname(imagePathOf(file) as string), specifier);
          if (!existsSync(path.join(root, target))) problems.push(`${file} imports missing ${specifier}`);
          else if (inImage !== expected)
            problems.push(`${file} imports ${target}, which is not in the image`);
          else queue.push(target);
        } else if (!isBuiltin(specifier)) {
          const parts = specifier.split("/");
          const name = specifier.startsWith("@") ? parts.slice(0, 2).join("/") : (parts[0] as string);
          if (!(name in packageJson.dependencies)) {
            problems.push(
              `${file} imports ${name}, which is not a production dependency (npm ci --omit=dev)`,
            );
          }
        }
      }
    }
    assert.ok(seen.size > 10, `followed only ${seen.size} files from ${script}`);
    assert.deepEqual(problems, []);
  });

  it("leaves tests, local data, docs and secrets out of the build context (.dockerignore)", () => {
    for (const file of [
      "test/embedded.e2e.test.ts",
      "test/support/client.ts",
      "src/platform/config.test.ts",
      "src/any/deep/folder/thing.test.ts",
      "data/auth.sqlite",
      "bench/run.ts",
      "docs/architecture.md",
      "node_modules/fastify/package.json",
      ".git/HEAD",
      "deploy/k8s/secrets/auth.env",
    ]) {
      assert.ok(ignored(file), `${file} must be excluded`);
    }
    for (const file of [
      "package.json",
      "package-lock.json",
      "src/cli/main.ts",
      "src/platform/config.ts",
      "web/index.html",
      "web/assets/app.js",
    ]) {
      assert.ok(!ignored(file), `${file} must be in the build context`);
    }
  });

  describe("HEALTHCHECK", () => {
    let server: Server;
    let status = 200;
    before(async () => {
      server = createServer((request, response) => {
        response.statusCode = request.url === "/healthz" ? status : 404;
        response.end();
      });
      await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    });
    after(() => new Promise<void>((resolve) => server.close(() => resolve())));

    /** Runs the HEALTHCHECK's command (asynchronously: the server answering it is in this process). */
    const runHealthcheck = async (): Promise<number | null> => {
      const instruction = last("HEALTHCHECK");
      assert.ok(instruction, "HEALTHCHECK missing");
      const command = /\bCMD\s+(\[.*\])\s*$/.exec(instruction.args)?.[1];
      assert.ok(command, "HEALTHCHECK CMD must be in exec form");
      const [program, ...args] = JSON.parse(command) as string[];
      assert.equal(program, "node", "node's fetch (no curl in the image)");
      const port = (server.address() as AddressInfo).port;
      return new Promise((resolve) => {
        execFile(process.execPath, args, { env: { PORT: String(port) }, timeout: 10_000 }, (error) => {
          resolve(error ? ((error as { code?: unknown }).code as number | null) : 0);
        });
      });
    };

    it("succeeds while /healthz answers 200 and fails otherwise", async () => {
      status = 200;
      assert.equal(await runHealthcheck(), 0);
      status = 503;
      assert.equal(await runHealthcheck(), 1);
    });
  });
});
