import assert from "node:assert/strict";
import { execFile, spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import { isBuiltin } from "node:module";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { Ajv } from "ajv";
import { parse, parseAllDocuments } from "yaml";
import { type Config, configVariableNames, loadConfig } from "../src/platform/config.ts";
import {
  type KubernetesObject,
  schemaErrors,
  unknownFieldErrors,
} from "./support/strict-kubernetes-schema.ts";

/**
 * The deployment files, checked without a cluster or a container engine:
 * - deploy/k8s: every overlay (and the Ingress component) rendered with `kubectl kustomize` from
 *   the files a fresh clone has, every object validated strictly against the Kubernetes schemas
 *   (unknown fields fail; test/support/strict-kubernetes-schema.ts), then what the schemas cannot
 *   know: commands, probes, lock-down, environments loadConfig accepts with the distributed
 *   backends, NetworkPolicies, disruption budgets, topology spread, the converter's drain and
 *   storage, KEDA, routes and TLS.
 * - deploy/compose.yaml (and the test override): the compose specification's JSON schema (ajv),
 *   then start-up order, health checks and environments.
 * - deploy/Dockerfile: parsed; what it copies exists and is in the build context, the entry point
 *   and everything it imports end up in the image (copied, or compiled from src/ by the build
 *   stage's tsc), runtime packages are production dependencies.
 */

const root = path.resolve(import.meta.dirname, "..");
const services = ["auth", "gateway", "converter", "notification"] as const;
type ServiceName = (typeof services)[number];
const defaultPorts: Record<ServiceName, number> = {
  auth: 5000,
  gateway: 8080,
  converter: 8081,
  notification: 8082,
};
/** Which distributed backends each service must be configured with (see src/cli/serve.ts). */
const expectedBackends: Record<ServiceName, (keyof Config)[]> = {
  auth: ["databaseUrl", "jwt"],
  gateway: ["databaseUrl", "amqpUrl", "s3", "authServiceAddress"],
  converter: ["amqpUrl", "s3"],
  notification: ["amqpUrl", "smtpUrl"],
};

// ---------------------------------------------------------------------------------------------
// Kubernetes objects (only the fields these checks read)

interface K8sObject extends KubernetesObject {
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
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: EnvVar[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string; optional?: boolean } }[];
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
  initContainers?: Container[];
  securityContext?: { runAsNonRoot?: boolean; runAsUser?: number; seccompProfile?: { type: string } };
  terminationGracePeriodSeconds?: number;
  topologySpreadConstraints?: {
    topologyKey: string;
    labelSelector: { matchLabels: Record<string, string> };
  }[];
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
    selector?: Record<string, string>;
    ports: { name?: string; port: number; targetPort?: number | string }[];
  };
}
interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: { key: string; operator: string; values?: string[] }[];
}
interface PolicyPeer {
  podSelector?: LabelSelector;
  namespaceSelector?: LabelSelector;
}
interface PolicyRule {
  from?: PolicyPeer[];
  to?: PolicyPeer[];
  ports?: { protocol?: string; port?: number | string }[];
}
interface NetworkPolicy extends K8sObject {
  spec: { podSelector: LabelSelector; policyTypes: string[]; ingress?: PolicyRule[]; egress?: PolicyRule[] };
}
interface HttpRoute extends K8sObject {
  spec: {
    parentRefs: { name: string; sectionName?: string }[];
    rules: {
      matches?: { path?: { type: string; value: string } }[];
      backendRefs?: { name: string; port: number }[];
      filters?: { type: string }[];
      timeouts?: { request?: string; backendRequest?: string };
    }[];
  };
}

/** Helpers over one rendered overlay. */
function view(objects: K8sObject[]) {
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
  /** What the container's process sees in its environment (envFrom first, env overrides). */
  const environmentOf = (container: Container): Record<string, string> => {
    const env: Record<string, string> = {};
    for (const source of container.envFrom ?? []) {
      if (source.configMapRef) Object.assign(env, dataOf(named("ConfigMap", source.configMapRef.name)));
      // An optional Secret (METRICS_TOKEN, the notification's database) may be missing: then it adds nothing.
      const optionalMissing =
        source.secretRef?.optional &&
        !ofKind("Secret").some((o) => o.metadata.name === source.secretRef?.name);
      if (optionalMissing) continue;
      if (source.secretRef) {
        const secret = named("Secret", source.secretRef.name);
        for (const [key, value] of Object.entries(dataOf(secret))) {
          env[key] = Buffer.from(value, "base64").toString("utf8");
        }
      }
    }
    for (const { name, value } of container.env ?? []) env[name] = value ?? "";
    return env;
  };
  /** The settings every pod shares (the vid2mp3-config ConfigMap). */
  const sharedConfig = () => {
    const configMap = ofKind("ConfigMap").find((c) => c.metadata.name.startsWith("vid2mp3-config"));
    assert.ok(configMap, "the vid2mp3-config ConfigMap");
    return dataOf(configMap);
  };
  return { objects, ofKind, named, deployment, containerOf, environmentOf, sharedConfig };
}

/**
 * Renders a kustomization with `kubectl kustomize` from a copy of deploy/k8s made of the files a
 * fresh clone has (tracked, or new and not ignored): nothing git-ignored may be needed.
 * `extra` adds files to the copy (a kustomization that tries a component, say).
 */
async function renderFromClone(dir: string, extra: Record<string, string> = {}): Promise<K8sObject[]> {
  const work = await mkdtemp(path.join(tmpdir(), "vid2mp3-deploy-"));
  try {
    const files = spawnSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "deploy/k8s"], {
      cwd: root,
      encoding: "utf8",
    })
      .stdout.split("\n")
      .filter((file) => file && existsSync(path.join(root, file)));
    assert.ok(files.length > 10, "deploy/k8s files from git");
    for (const file of files) {
      await mkdir(path.dirname(path.join(work, file)), { recursive: true });
      await copyFile(path.join(root, file), path.join(work, file));
    }
    for (const [file, text] of Object.entries(extra)) {
      await mkdir(path.dirname(path.join(work, file)), { recursive: true });
      await writeFile(path.join(work, file), text);
    }
    const kubectl = process.env.KUBECTL ?? "kubectl";
    const yamlText = await new Promise<string>((resolve, reject) => {
      execFile(
        kubectl,
        ["kustomize", path.join(work, dir)],
        { maxBuffer: 16 * 1024 * 1024 },
        (error, stdout, stderr) => {
          if ((error as NodeJS.ErrnoException | null)?.code === "ENOENT") {
            reject(
              new Error(`kubectl not found ("${kubectl}"): install it (CI does), or set KUBECTL to its path`),
            );
          } else if (error) reject(new Error(`kubectl kustomize ${dir} failed: ${stderr || error.message}`));
          else resolve(stdout);
        },
      );
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

/** Gateway API / Go durations as seconds ("3600s", "1h", "0s"). */
function durationSeconds(value: string | undefined): number {
  assert.ok(value, "duration missing");
  let total = 0;
  for (const [, amount, unit] of value.matchAll(/(\d+)(ms|h|m|s)/g)) {
    total += Number(amount) * ({ h: 3600, m: 60, s: 1, ms: 0.001 }[unit as string] as number);
  }
  return total;
}

function selects(selector: LabelSelector | undefined, labels: Record<string, string>): boolean {
  if (!selector) return false;
  const byLabels = Object.entries(selector.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
  const byExpressions = (selector.matchExpressions ?? []).every((e) =>
    e.operator === "In"
      ? e.values?.includes(labels[e.key] as string)
      : e.operator === "Exists"
        ? e.key in labels
        : false,
  );
  return byLabels && byExpressions;
}

/** Whether the NetworkPolicies let a pod open a TCP connection to `port` (anywhere, or to `to`). */
function egressAllowed(
  policies: NetworkPolicy[],
  pod: Record<string, string>,
  port: number,
  to?: { pod?: Record<string, string>; namespace?: Record<string, string> },
): boolean {
  return policies
    .filter((p) => p.spec.policyTypes.includes("Egress") && selects(p.spec.podSelector, pod))
    .some((p) =>
      (p.spec.egress ?? []).some(
        (rule) =>
          (rule.ports ?? []).some((r) => r.port === port) &&
          (!rule.to ||
            rule.to.some(
              (peer) =>
                (!peer.podSelector || (to?.pod !== undefined && selects(peer.podSelector, to.pod))) &&
                (!peer.namespaceSelector ||
                  (to?.namespace !== undefined && selects(peer.namespaceSelector, to.namespace))),
            )),
      ),
    );
}

/** Whether the NetworkPolicies let `from` (a pod of this namespace, or any pod of a namespace) reach a pod's port. */
function ingressAllowed(
  policies: NetworkPolicy[],
  pod: Record<string, string>,
  port: number | string,
  from: { pod?: Record<string, string>; namespace?: Record<string, string> },
): boolean {
  return policies
    .filter((p) => p.spec.policyTypes.includes("Ingress") && selects(p.spec.podSelector, pod))
    .some((p) =>
      (p.spec.ingress ?? []).some(
        (rule) =>
          (rule.ports ?? []).some((r) => r.port === port) &&
          (rule.from ?? []).some((peer) =>
            peer.namespaceSelector
              ? from.namespace !== undefined &&
                selects(peer.namespaceSelector, from.namespace) &&
                (!peer.podSelector || (from.pod !== undefined && selects(peer.podSelector, from.pod)))
              : from.namespace === undefined && from.pod !== undefined && selects(peer.podSelector, from.pod),
          ),
      ),
    );
}

const podLabels = (component: string) => ({
  "app.kubernetes.io/name": "vid2mp3",
  "app.kubernetes.io/component": component,
});

/** The Secrets the base names (created by an overlay's generator in dev, outside the repository in prod). */
const referencedSecrets = [
  "vid2mp3-auth",
  "vid2mp3-auth-migrate",
  "vid2mp3-gateway",
  "vid2mp3-gateway-migrate",
  "vid2mp3-rabbitmq",
  "vid2mp3-s3",
  "vid2mp3-smtp",
];
/** Referenced with `optional: true`: the services run without them. */
const optionalSecrets = ["vid2mp3-metrics", "vid2mp3-notification"];

for (const overlay of ["dev", "prod"] as const) {
  describe(`deploy/k8s/overlays/${overlay}`, () => {
    let k: ReturnType<typeof view>;
    before(async () => {
      k = view(await renderFromClone(`deploy/k8s/overlays/${overlay}`));
    });

    it("renders from a fresh clone (no git-ignored file needed) and passes the Kubernetes schemas strictly", async () => {
      assert.deepEqual(await schemaErrors(k.objects), []);
      assert.deepEqual(await unknownFieldErrors(k.objects, root), [], "fields the schemas do not define");
    });

    it("puts everything in the vid2mp3 namespace with the common labels", () => {
      for (const object of k.objects) {
        const what = `${object.kind} ${object.metadata.name}`;
        if (object.kind === "Namespace") assert.equal(object.metadata.name, "vid2mp3");
        else assert.equal(object.metadata.namespace, "vid2mp3", `${what}: namespace`);
        assert.equal(
          object.metadata.labels?.["app.kubernetes.io/part-of"],
          "vid2mp3",
          `${what}: part-of label`,
        );
      }
    });

    for (const name of services) {
      describe(`the ${name} Deployment`, () => {
        it("selects its own pods only, and a PodDisruptionBudget covers them", () => {
          const d = k.deployment(name);
          for (const other of k.ofKind<Deployment>("Deployment").filter((o) => o.metadata.name !== name)) {
            const labels = other.spec.template.metadata.labels;
            const matches = Object.entries(d.spec.selector.matchLabels).every(
              ([key, v]) => labels[key] === v,
            );
            assert.ok(!matches, `${name}'s selector also selects ${other.metadata.name}'s pods`);
          }
          const pdbs = k
            .ofKind<
              K8sObject & {
                spec: { maxUnavailable?: number; minAvailable?: number; selector: LabelSelector };
              }
            >("PodDisruptionBudget")
            .filter((p) => selects(p.spec.selector, d.spec.template.metadata.labels));
          assert.equal(pdbs.length, 1, `${name}: one PodDisruptionBudget`);
          // maxUnavailable (not minAvailable): a drain can always proceed, one pod at a time.
          assert.equal(pdbs[0]?.spec.maxUnavailable, 1, `${name}: PDB maxUnavailable 1`);
        });

        it("spreads its pods over zones and nodes", () => {
          const spread = k.deployment(name).spec.template.spec.topologySpreadConstraints ?? [];
          for (const key of ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]) {
            const constraint = spread.find((c) => c.topologyKey === key);
            assert.ok(constraint, `${name}: spread over ${key}`);
            assert.ok(selects(constraint.labelSelector, k.deployment(name).spec.template.metadata.labels));
          }
        });

        it(`runs \`serve ${name}\` from its image, with start-up, liveness and readiness probes on its port`, () => {
          const c = k.containerOf(name);
          const image =
            name === "converter" ? /(^|\/)(vid2mp3|converter)(:|@)/ : /(^|\/)(vid2mp3-service|service)(:|@)/;
          assert.match(
            c.image,
            image,
            `${name}: the ${name === "converter" ? "converter" : "service"} image`,
          );
          assert.equal(c.command, undefined, `${name}: the image's ENTRYPOINT must run (tini, node)`);
          assert.deepEqual(c.args, ["serve", name]);
          const port = defaultPorts[name];
          assert.deepEqual(
            c.ports?.map((p) => p.containerPort),
            [port],
          );
          assert.equal(c.env?.find((e) => e.name === "PORT")?.value, String(port), `${name}: PORT`);
          for (const [probe, path_] of [
            ["startupProbe", "/healthz"],
            ["livenessProbe", "/healthz"],
            ["readinessProbe", "/readyz"],
          ] as const) {
            assert.equal(c[probe]?.httpGet?.path, path_, `${name}: ${probe} path`);
            assert.equal(resolvePort(c, c[probe]?.httpGet?.port), port, `${name}: ${probe} port`);
          }
        });

        it("declares CPU and memory requests and limits, and runs locked down", () => {
          const pod = k.deployment(name).spec.template.spec;
          for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
            const { requests, limits } = c.resources ?? {};
            for (const resource of ["cpu", "memory"]) {
              const request = quantity(requests?.[resource]);
              assert.ok(
                request > 0 && request <= quantity(limits?.[resource]),
                `${name}/${c.name}: ${resource}`,
              );
            }
            const sc = c.securityContext ?? {};
            assert.equal(
              sc.runAsNonRoot ?? pod.securityContext?.runAsNonRoot,
              true,
              `${name}/${c.name}: runAsNonRoot`,
            );
            assert.equal(sc.readOnlyRootFilesystem, true, `${name}/${c.name}: readOnlyRootFilesystem`);
            assert.equal(sc.allowPrivilegeEscalation, false, `${name}/${c.name}: allowPrivilegeEscalation`);
            assert.ok(sc.capabilities?.drop?.includes("ALL"), `${name}/${c.name}: capabilities.drop ALL`);
          }
          // The image's USER is `node` (a name): runAsNonRoot can only be verified with a numeric uid.
          const uid = pod.securityContext?.runAsUser;
          assert.ok(typeof uid === "number" && uid !== 0, `${name}: a numeric non-root runAsUser`);
          assert.equal(pod.securityContext?.seccompProfile?.type, "RuntimeDefault", `${name}: seccomp`);
          const c = k.containerOf(name);
          for (const dir of ["/data", "/tmp"]) {
            const mount = c.volumeMounts?.find((m) => m.mountPath === dir);
            assert.ok(mount, `${name}: a volume at ${dir}`);
            assert.ok(
              pod.volumes?.find((v) => v.name === mount.name)?.emptyDir,
              `${name}: ${dir} is an emptyDir`,
            );
          }
        });

        it("uses only environment variable names that loadConfig knows", () => {
          const known = new Set<string>(configVariableNames);
          const pod = k.deployment(name).spec.template.spec;
          const names = [...pod.containers, ...(pod.initContainers ?? [])].flatMap((c) =>
            (c.env ?? []).map((e) => e.name),
          );
          names.push(...Object.keys(k.sharedConfig()));
          assert.deepEqual(
            names.filter((n) => !known.has(n)),
            [],
          );
        });
      });
    }

    it("migrates with a DDL user in an init container; auth and the gateway run with MIGRATE_ON_START=false", () => {
      for (const name of ["auth", "gateway"]) {
        const pod = k.deployment(name).spec.template.spec;
        const migrate = pod.initContainers?.find((c) => c.name === "migrate");
        assert.ok(migrate, `${name}: a migrate init container`);
        assert.deepEqual(migrate.args, ["migrate", name]);
        assert.equal(migrate.image, k.containerOf(name).image, `${name}: the same image migrates`);
        assert.ok(
          migrate.envFrom?.some((s) => s.secretRef?.name.startsWith(`vid2mp3-${name}-migrate`)),
          `${name}: the migration's own Secret`,
        );
        const main = k.containerOf(name);
        assert.equal(main.env?.find((e) => e.name === "MIGRATE_ON_START")?.value, "false");
        assert.ok(
          !main.envFrom?.some((s) => s.secretRef?.name.includes("-migrate")),
          `${name}: the service never sees the DDL user`,
        );
      }
    });

    it("never kills a conversion: the grace period covers the drain, the drain covers FFMPEG_TIMEOUT_SECONDS", () => {
      const d = k.deployment("converter");
      const env = {
        ...k.sharedConfig(),
        ...Object.fromEntries((k.containerOf("converter").env ?? []).map((e) => [e.name, e.value ?? ""])),
      };
      const config = loadConfig(env);
      assert.ok(
        config.converterDrainSeconds >= config.ffmpeg.timeoutSeconds,
        "drain ≥ the longest conversion",
      );
      const shutdownBound = 25; // src/cli/main.ts: the process's own bound on top of the drain
      assert.ok(
        (d.spec.template.spec.terminationGracePeriodSeconds ?? 30) >=
          config.converterDrainSeconds + shutdownBound,
        "terminationGracePeriodSeconds ≥ CONVERTER_DRAIN_SECONDS + 25",
      );
      assert.equal(config.converterConcurrency, 1);
    });

    it("sizes the converter's ephemeral storage from MAX_UPLOAD_BYTES", () => {
      const c = k.containerOf("converter");
      const pod = k.deployment("converter").spec.template.spec;
      const config = loadConfig({ ...k.sharedConfig(), CONVERTER_CONCURRENCY: "1" });
      const dataVolume = pod.volumes?.find(
        (v) => v.name === c.volumeMounts?.find((m) => m.mountPath === "/data")?.name,
      );
      // The video and an MP3 as large again, per conversion.
      assert.ok(
        quantity(dataVolume?.emptyDir?.sizeLimit) >= 2 * config.maxUploadBytes * config.converterConcurrency,
        "/data holds a whole upload and its MP3",
      );
      const volumes = (pod.volumes ?? []).reduce((sum, v) => sum + quantity(v.emptyDir?.sizeLimit ?? "0"), 0);
      assert.ok(
        quantity(c.resources?.requests?.["ephemeral-storage"]) >= volumes,
        "requested: every emptyDir's limit",
      );
      assert.ok(quantity(c.resources?.limits?.["ephemeral-storage"]) >= volumes);
    });

    it("denies all traffic by default and allows only what the design needs", () => {
      const policies = k.ofKind<NetworkPolicy>("NetworkPolicy");
      const denyAll = policies.find(
        (p) =>
          Object.keys(p.spec.podSelector).length === 0 &&
          p.spec.policyTypes.includes("Ingress") &&
          p.spec.policyTypes.includes("Egress") &&
          !p.spec.ingress &&
          !p.spec.egress,
      );
      assert.ok(denyAll, "a default-deny policy");
      const dns = {
        namespace: { "kubernetes.io/metadata.name": "kube-system" },
        pod: { "k8s-app": "kube-dns" },
      };
      const ingressNamespace = {
        "kubernetes.io/metadata.name": "envoy-gateway-system",
        "vid2mp3.io/ingress": "true",
      };
      const scraper = { "kubernetes.io/metadata.name": "monitoring", "vid2mp3.io/metrics-scraper": "true" };
      const elsewhere = { "kubernetes.io/metadata.name": "elsewhere" };
      for (const name of services) {
        assert.ok(egressAllowed(policies, podLabels(name), 53, dns), `${name} → DNS`);
        assert.ok(
          ingressAllowed(policies, podLabels(name), "http", { namespace: scraper }),
          `scraper → ${name}`,
        );
        assert.ok(
          !ingressAllowed(policies, podLabels(name), "http", { namespace: elsewhere }),
          `elsewhere ↛ ${name}`,
        );
      }
      assert.ok(
        ingressAllowed(policies, podLabels("gateway"), 8080, { namespace: ingressNamespace }),
        "ingress → gateway",
      );
      assert.ok(
        egressAllowed(policies, podLabels("gateway"), 5000, { pod: podLabels("auth") }),
        "gateway → auth",
      );
      assert.ok(
        ingressAllowed(policies, podLabels("auth"), 5000, { pod: podLabels("gateway") }),
        "auth ← gateway",
      );
      for (const other of ["converter", "notification"]) {
        assert.ok(
          !ingressAllowed(policies, podLabels("auth"), 5000, { pod: podLabels(other) }),
          `${other} ↛ auth`,
        );
        assert.ok(
          !egressAllowed(policies, podLabels(other), 5000, { pod: podLabels("auth") }),
          `${other} ↛ auth`,
        );
      }
      assert.ok(
        !ingressAllowed(policies, podLabels("auth"), 5000, { namespace: ingressNamespace }),
        "ingress ↛ auth",
      );
      // Each service → its backends (ports from its own settings, where the overlay has them).
      const backends: Record<ServiceName, number[]> = {
        auth: [3306],
        gateway: [3306, 5672, 443],
        converter: [5672, 443],
        notification: [5672, 587],
      };
      for (const [name, ports] of Object.entries(backends)) {
        for (const port of ports)
          assert.ok(egressAllowed(policies, podLabels(name), port), `${name} → :${port}`);
      }
      assert.ok(!egressAllowed(policies, podLabels("converter"), 3306), "the converter has no database");
      assert.ok(!egressAllowed(policies, podLabels("auth"), 5672), "auth has no broker");
    });

    it("routes the public to the gateway with timeouts for long uploads and event streams, never /metrics or /readyz", () => {
      const route = k.named<HttpRoute>("HTTPRoute", "gateway");
      const ruleFor = (requestPath: string) => {
        // The longest matching prefix wins, as the Gateway API says.
        const candidates = route.spec.rules.flatMap((rule) =>
          (rule.matches ?? [])
            .filter((m) => requestPath.startsWith(m.path?.value ?? "/"))
            .map((m) => ({ rule, length: m.path?.value.length ?? 1 })),
        );
        return candidates.sort((a, b) => b.length - a.length)[0]?.rule;
      };
      for (const hidden of ["/metrics", "/readyz"]) {
        const backend = ruleFor(hidden)?.backendRefs?.[0];
        assert.equal(backend?.name, "not-public", `${hidden} is not routed to the gateway`);
        const notPublic = k.named<KubeService>("Service", "not-public");
        const pods = [...k.ofKind<Deployment>("Deployment"), ...k.ofKind<Deployment>("StatefulSet")].map(
          (d) => d.spec.template.metadata.labels,
        );
        assert.ok(notPublic.spec.selector, "a selector (else kustomize's label would select every pod)");
        assert.ok(
          pods.every((labels) => !selects({ matchLabels: notPublic.spec.selector }, labels)),
          "not-public has no endpoints",
        );
      }
      const maxUpload = loadConfig(k.sharedConfig()).maxUploadBytes;
      const upload = ruleFor("/upload");
      assert.equal(upload?.backendRefs?.[0]?.name, "gateway");
      assert.equal(upload?.backendRefs?.[0]?.port, 8080);
      // At least an hour: MAX_UPLOAD_BYTES at 5 Mbit/s.
      assert.ok(durationSeconds(upload?.timeouts?.request) >= Math.min(3600, (maxUpload * 8) / 5e6));
      assert.equal(ruleFor("/events")?.timeouts?.request, "0s", "event streams stay open");
      assert.equal(ruleFor("/events")?.backendRefs?.[0]?.name, "gateway");
    });

    if (overlay === "dev") {
      it("runs MariaDB, RabbitMQ (management UI), an S3 store and a mail catcher, reachable only by their clients", () => {
        const policies = k.ofKind<NetworkPolicy>("NetworkPolicy");
        assert.deepEqual(
          k
            .ofKind("StatefulSet")
            .map((s) => s.metadata.name)
            .sort(),
          ["mailpit", "mariadb", "minio", "rabbitmq"],
        );
        const management = k.named<KubeService>("Service", "rabbitmq").spec.ports.map((p) => p.port);
        assert.ok(management.includes(15672), "RabbitMQ's management UI");
        const clients: Record<string, [number, string[]]> = {
          mariadb: [3306, ["auth", "gateway"]],
          rabbitmq: [5672, ["gateway", "converter", "notification"]],
          minio: [9000, ["gateway", "converter"]],
          mailpit: [1025, ["notification"]],
        };
        for (const [backend, [port, allowed]] of Object.entries(clients)) {
          for (const name of services) {
            assert.equal(
              ingressAllowed(policies, podLabels(backend), port, { pod: podLabels(name) }),
              allowed.includes(name),
              `${name} → ${backend}`,
            );
            if (allowed.includes(name))
              assert.ok(egressAllowed(policies, podLabels(name), port), `${name} → :${port}`);
          }
        }
      });

      for (const name of services) {
        it(`gives ${name} an environment that loadConfig accepts, with the distributed backends selected`, () => {
          const c = k.containerOf(name);
          const config = loadConfig(k.environmentOf(c));
          for (const backend of expectedBackends[name]) {
            assert.notEqual(config[backend], undefined, `${name}: ${backend} must be configured`);
          }
          const migrate = k.deployment(name).spec.template.spec.initContainers?.[0];
          if (migrate)
            assert.ok(loadConfig(k.environmentOf(migrate)).databaseUrl, `${name}: the migration's database`);
        });
      }

      it("gives auth and the gateway their own databases, with different users for migrations and service", () => {
        const url = (c: Container) => new URL(loadConfig(k.environmentOf(c)).databaseUrl as string);
        const [auth, gateway] = [url(k.containerOf("auth")), url(k.containerOf("gateway"))];
        assert.notEqual(auth.pathname, gateway.pathname);
        for (const name of ["auth", "gateway"]) {
          const migrate = k.deployment(name).spec.template.spec.initContainers?.[0] as Container;
          assert.notEqual(url(migrate).username, url(k.containerOf(name)).username, `${name}: two users`);
          assert.equal(url(migrate).pathname, url(k.containerOf(name)).pathname, `${name}: one database`);
        }
      });
    } else {
      it("references its Secrets by name and generates none", () => {
        assert.deepEqual(k.ofKind("Secret"), [], "no Secret in the repository's output");
        const named = new Set<string>();
        for (const d of k.ofKind<Deployment>("Deployment")) {
          const pod = d.spec.template.spec;
          for (const c of [...pod.containers, ...(pod.initContainers ?? [])]) {
            for (const s of c.envFrom ?? []) if (s.secretRef) named.add(s.secretRef.name);
          }
        }
        assert.deepEqual([...named].sort(), [...referencedSecrets, ...optionalSecrets].sort());
      });

      it("scales converters with KEDA on the video queue's length, counting messages in work too", () => {
        const scaled = k.named<
          K8sObject & {
            spec: {
              scaleTargetRef: { name: string };
              minReplicaCount: number;
              triggers: {
                type: string;
                metadata: Record<string, string>;
                authenticationRef: { name: string };
              }[];
            };
          }
        >("ScaledObject", "converter");
        assert.equal(scaled.spec.scaleTargetRef.name, "converter");
        const trigger = scaled.spec.triggers[0];
        assert.equal(trigger?.type, "rabbitmq");
        assert.equal(trigger?.metadata.queueName, loadConfig(k.sharedConfig()).queues.video);
        assert.equal(trigger?.metadata.mode, "QueueLength");
        assert.equal(trigger?.metadata.protocol, "http", "ready and unacknowledged messages");
        k.named("TriggerAuthentication", trigger?.authenticationRef.name as string);
        assert.equal(k.deployment("converter").spec.replicas, undefined, "KEDA alone sets the count");
        assert.ok(scaled.spec.minReplicaCount >= 1);
      });

      it("runs production replica counts and serves HTTPS (plain HTTP only redirects)", () => {
        for (const name of ["auth", "gateway", "notification"]) {
          assert.ok((k.deployment(name).spec.replicas ?? 1) >= 2, `${name}: at least two replicas`);
        }
        const gateway = k.named<
          K8sObject & {
            spec: {
              listeners: { name: string; protocol: string; tls?: { certificateRefs: { name: string }[] } }[];
            };
          }
        >("Gateway", "vid2mp3");
        const https = gateway.spec.listeners.find((l) => l.protocol === "HTTPS");
        assert.ok(
          https?.tls?.certificateRefs.some((c) => c.name === "vid2mp3-tls"),
          "a certificate",
        );
        const route = k.named<HttpRoute>("HTTPRoute", "gateway");
        assert.deepEqual(
          route.spec.parentRefs.map((p) => p.sectionName),
          [https?.name],
        );
        const redirect = k.named<HttpRoute>("HTTPRoute", "gateway-redirect-to-https");
        assert.ok(
          redirect.spec.rules.every(
            (r) => r.filters?.some((f) => f.type === "RequestRedirect") && !r.backendRefs,
          ),
        );
      });
    }
  });
}

describe("deploy/k8s/components/ingress: the Ingress alternative", () => {
  let k: ReturnType<typeof view>;
  before(async () => {
    k = view(
      await renderFromClone("deploy/k8s/overlays/ingress-check", {
        "deploy/k8s/overlays/ingress-check/kustomization.yaml":
          "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: vid2mp3\n" +
          "resources: [../../base]\ncomponents: [../../components/ingress]\n",
      }),
    );
  });

  it("passes the schemas strictly, serves TLS, keeps /metrics and /readyz away, is not tied to ingress-nginx", async () => {
    assert.deepEqual(await schemaErrors(k.objects), []);
    assert.deepEqual(await unknownFieldErrors(k.objects, root), []);
    const ingress = k.named<
      K8sObject & {
        spec: {
          tls: { secretName: string }[];
          rules: { http: { paths: { path: string; backend: { service: { name: string } } }[] } }[];
        };
      }
    >("Ingress", "gateway");
    assert.ok(ingress.spec.tls.some((t) => t.secretName === "vid2mp3-tls"));
    const paths = ingress.spec.rules.flatMap((r) => r.http.paths);
    for (const hidden of ["/metrics", "/readyz"]) {
      assert.equal(paths.find((p) => p.path === hidden)?.backend.service.name, "not-public", hidden);
    }
    assert.equal(paths.find((p) => p.path === "/")?.backend.service.name, "gateway");
    const annotations = ingress.metadata.annotations ?? {};
    assert.ok(
      !Object.keys(annotations).some((a) => a.startsWith("nginx.ingress.kubernetes.io/")),
      "no ingress-nginx",
    );
    const maxUpload = loadConfig(k.sharedConfig()).maxUploadBytes;
    assert.ok(
      quantity(annotations["nginx.org/client-max-body-size"]) > maxUpload,
      "body size above MAX_UPLOAD_BYTES",
    );
  });
});

describe("strict schema validation catches what a lenient one lets through", () => {
  let deployment: K8sObject;
  before(async () => {
    deployment = view(await renderFromClone("deploy/k8s/overlays/prod")).deployment("gateway");
  });

  for (const [misspelled, where] of [
    [
      "topologySpreadConstraint",
      (o: Deployment) => o.spec.template.spec as unknown as Record<string, unknown>,
    ],
    [
      "seccompProfle",
      (o: Deployment) => o.spec.template.spec.securityContext as unknown as Record<string, unknown>,
    ],
  ] as const) {
    it(`fails a Deployment with a misspelled ${misspelled}`, async () => {
      const broken = structuredClone(deployment) as Deployment;
      where(broken)[misspelled] = { type: "RuntimeDefault" };
      assert.deepEqual(await schemaErrors([broken]), [], "the lenient schema check alone passes it");
      const errors = await unknownFieldErrors([broken], root);
      assert.equal(errors.length, 1, errors.join("\n"));
      assert.match(errors[0] as string, new RegExp(`Deployment gateway: .*'"?${misspelled}"?'`));
    });
  }
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
  const froms = instructions.filter((i) => i.keyword === "FROM");
  const stageNames = froms.map((i) => /\s+AS\s+(\S+)$/i.exec(i.args)?.[1]?.toLowerCase());
  const stageOf = (name: string) => {
    const stage = stageNames.indexOf(name);
    assert.ok(stage >= 0, `no stage ${name}`);
    return stage;
  };
  /** A stage and the stages it is built FROM, the base first. */
  const chainOf = (stage: number): number[] => {
    const base = (froms[stage]?.args.split(/\s+/).find((w) => !w.startsWith("--")) ?? "").toLowerCase();
    const parent = stageNames.indexOf(base);
    return parent >= 0 && parent < stage ? [...chainOf(parent), stage] : [stage];
  };
  const inImage = (target: string) =>
    chainOf(stageOf(target)).flatMap((s) => instructions.filter((i) => i.stage === s));
  const lastIn = (target: string, keyword: string) => inImage(target).findLast((i) => i.keyword === keyword);
  const ignored = dockerignoreMatcher(readFileSync(path.join(root, ".dockerignore"), "utf8"));
  const packageJson = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8")) as {
    dependencies: Record<string, string>;
  };
  const targets = ["service", "converter"] as const;

  interface ContextCopy {
    source: string;
    imagePath: string;
    isDir: boolean;
    /** The TypeScript below `source` compiled (tsconfig.build.json): `x.ts` is `x.js` in the image. */
    compiled?: boolean;
  }
  /** Where each repository path copied from the build context lands in a stage's image (FROM chain and COPY --from). */
  const contextCopiesOf = (stage: number): ContextCopy[] => {
    const copies: ContextCopy[] = [];
    let workdir = "/";
    for (const i of chainOf(stage).flatMap((s) => instructions.filter((x) => x.stage === s))) {
      if (i.keyword === "WORKDIR") workdir = path.posix.resolve(workdir, i.args);
      // The build stage's compiler: tsconfig.build.json compiles src/ (rootDir) into dist/ (outDir).
      if (i.keyword === "RUN" && /\btsc -p tsconfig\.build\.json\b/.test(i.args)) {
        const src = copies.find((c) => c.source === "src" && c.isDir);
        assert.ok(src, "tsc runs where src/ was copied");
        copies.push({ ...src, imagePath: path.posix.resolve(workdir, "dist"), compiled: true });
      }
      if (i.keyword !== "COPY" && i.keyword !== "ADD") continue;
      const { flags, sources, dest } = copyParts(i.args);
      const destination = path.posix.resolve(workdir, dest);
      if (flags.from !== undefined) {
        const from = contextCopiesOf(stageOf(flags.from.toLowerCase()));
        for (const source of sources.map((s) => path.posix.resolve("/", s))) {
          for (const copy of from) {
            if (copy.imagePath === source || copy.imagePath.startsWith(`${source}/`)) {
              copies.push({
                ...copy,
                imagePath: path.posix.join(destination, copy.imagePath.slice(source.length)),
              });
            }
          }
        }
        continue;
      }
      for (const source of sources) {
        const isDir = existsSync(path.join(root, source)) && statSync(path.join(root, source)).isDirectory();
        const intoDir = isDir || dest.endsWith("/") || sources.length > 1;
        copies.push({
          source: path.posix.normalize(source).replace(/\/+$/, ""),
          imagePath:
            intoDir && !isDir ? path.posix.join(destination, path.posix.basename(source)) : destination,
          isDir,
        });
      }
    }
    return copies;
  };
  /** The image path of a repository file in a target's image, or undefined when it is not in it. */
  const imagePathIn = (target: string) => {
    const copies = contextCopiesOf(stageOf(target));
    return (repoFile: string): string | undefined => {
      if (ignored(repoFile)) return undefined;
      for (const copy of copies) {
        if (repoFile === copy.source) return copy.imagePath;
        if (copy.isDir && repoFile.startsWith(`${copy.source}/`)) {
          const inside = repoFile.slice(copy.source.length + 1);
          if (!copy.compiled) return path.posix.join(copy.imagePath, inside);
          if (inside.endsWith(".ts")) return path.posix.join(copy.imagePath, inside.replace(/\.ts$/, ".js"));
        }
      }
      return undefined;
    };
  };
  /** The repository file an image path of a target comes from (copied, or compiled from), if any. */
  const repoFileIn = (target: string) => {
    const copies = contextCopiesOf(stageOf(target));
    return (imagePath: string): string | undefined => {
      for (const copy of copies) {
        if (!copy.isDir || !imagePath.startsWith(`${copy.imagePath}/`)) continue;
        const inside = imagePath.slice(copy.imagePath.length + 1);
        const file = path.posix.join(copy.source, copy.compiled ? inside.replace(/\.js$/, ".ts") : inside);
        if (existsSync(path.join(root, file))) return file;
      }
      return undefined;
    };
  };

  it("builds on Node 24 (bookworm-slim), pinned by digest, overridable with --build-arg NODE_IMAGE", () => {
    const arg = instructions.find((i) => i.keyword === "ARG" && i.args.startsWith("NODE_IMAGE="));
    assert.ok(arg && arg.stage === -1, "ARG NODE_IMAGE before the first FROM");
    assert.match(arg.args, /^NODE_IMAGE=node:24-bookworm-slim@sha256:[0-9a-f]{64}$/);
    assert.ok(froms.length >= 4, "multi-stage");
    for (const [stage, from] of froms.entries()) {
      const image = from.args.split(/\s+/).find((w) => !w.startsWith("--")) as string;
      if (/^\$\{NODE_IMAGE\}$/.test(image)) continue;
      const parent = stageNames.indexOf(image.toLowerCase());
      assert.ok(parent >= 0 && parent < stage, `FROM ${image}: the base or an earlier stage`);
    }
    // The default target (the last stage) runs everything, `serve all` too: it is the converter.
    assert.equal(stageNames.at(-1), "converter");
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

  it("installs production dependencies only; only the converter image carries ffmpeg", () => {
    const runs = instructions.filter((i) => i.keyword === "RUN").map((i) => i.args);
    assert.ok(
      runs.some((r) => /npm ci\b.*--omit=dev/.test(r)),
      "npm ci --omit=dev",
    );
    const apt = (target: string) =>
      inImage(target).filter((i) => i.keyword === "RUN" && /apt-get install/.test(i.args));
    const env = (target: string) =>
      inImage(target)
        .filter((i) => i.keyword === "ENV")
        .map((i) => i.args)
        .join(" ");
    for (const target of targets) {
      assert.ok(
        apt(target).every(
          (i) => /--no-install-recommends/.test(i.args) && /rm -rf \/var\/lib\/apt\/lists/.test(i.args),
        ),
        `${target}: no recommends, apt lists removed in the same layer`,
      );
      assert.match(env(target), /\bDATA_DIR=\/data\b/);
    }
    assert.ok(
      apt("converter").some((i) => /\bffmpeg\b/.test(i.args)),
      "the converter installs ffmpeg",
    );
    assert.match(env("converter"), /\bFFMPEG_PATH=\/usr\/bin\/ffmpeg\b/);
    assert.ok(!apt("service").some((i) => /\bffmpeg\b/.test(i.args)), "the service image has no ffmpeg");
    assert.doesNotMatch(env("service"), /FFMPEG_PATH/);
    // A code change must not install ffmpeg again: it comes before the application in the chain.
    const converter = inImage("converter");
    const ffmpegAt = converter.findIndex((i) => i.keyword === "RUN" && /\bffmpeg\b/.test(i.args));
    const appAt = converter.findIndex((i) => i.keyword === "COPY" && /--from=app\b/.test(i.args));
    assert.ok(ffmpegAt >= 0 && appAt > ffmpegAt, "ffmpeg's layer before the application's");
  });

  for (const target of targets) {
    describe(`target ${target}`, () => {
      const imagePathOf = imagePathIn(target);

      it("runs as a user that is not root, under tini, `serve all` by default", () => {
        const user = lastIn(target, "USER")?.args.split(":")[0];
        assert.ok(user && user !== "root" && user !== "0", `USER ${user}`);
        assert.deepEqual(execForm(lastIn(target, "ENTRYPOINT"), "ENTRYPOINT"), [
          "tini",
          "--",
          "node",
          "dist/cli/main.js",
        ]);
        assert.deepEqual(execForm(lastIn(target, "CMD"), "CMD"), ["serve", "all"]);
        assert.ok(
          inImage(target).some((i) => i.keyword === "EXPOSE" && i.args.split(/\s+/).includes("8080")),
        );
      });

      it("puts the entry point and everything it imports in the image; packages are production dependencies", () => {
        const entry = execForm(lastIn(target, "ENTRYPOINT"), "ENTRYPOINT");
        const workdir = inImage(target)
          .filter((i) => i.keyword === "WORKDIR")
          .reduce((dir, i) => path.posix.resolve(dir, i.args), "/");
        const script = entry[entry.indexOf("node") + 1] as string;
        const entryImagePath = path.posix.resolve(workdir, script);
        const entryRepoFile = repoFileIn(target)(entryImagePath);
        assert.ok(
          entryRepoFile,
          `${script}: no file of the repository is copied or compiled to ${entryImagePath}`,
        );
        assert.equal(
          imagePathOf(entryRepoFile),
          entryImagePath,
          `${script} is not copied to ${entryImagePath}`,
        );
        assert.ok(imagePathOf("package.json"), "package.json (type: module) is in the image");

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
              const target_ = path.posix.join(path.posix.dirname(file), specifier);
              const inImagePath = imagePathOf(target_);
              const imageFile = imagePathOf(file) as string;
              // The compiler rewrites a relative import's .ts to .js (rewriteRelativeImportExtensions).
              const compiled = file.endsWith(".ts") && imageFile.endsWith(".js");
              const expected = path.posix.join(
                path.posix.dirname(imageFile),
                compiled ? specifier.replace(/\.ts$/, ".js") : specifier,
              );
              if (!existsSync(path.join(root, target_)))
                problems.push(`${file} imports missing ${specifier}`);
              else if (inImagePath !== expected)
                problems.push(`${file} imports ${target_}, which is not in the image`);
              else queue.push(target_);
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
    });
  }

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
      const instruction = lastIn("converter", "HEALTHCHECK");
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

// ---------------------------------------------------------------------------------------------
// deploy/compose.yaml

interface ComposeService {
  image?: string;
  build?: { target?: string };
  command?: string;
  environment?: Record<string, string>;
  healthcheck?: { test: string | string[] };
  depends_on?: Record<string, { condition: string }>;
  stop_grace_period?: string;
  network_mode?: string;
}
interface ComposeFile {
  services: Record<string, ComposeService>;
}

describe("deploy/compose.yaml", () => {
  const readCompose = (file: string) =>
    parse(readFileSync(path.join(root, file), "utf8"), { merge: true }) as ComposeFile;
  const compose = readCompose("deploy/compose.yaml");
  const override = readCompose("test/containers/compose.override.yaml");
  // The compose specification's JSON schema, as the dclint package ships it (kept current with
  // the specification by its maintainers).
  const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false });
  // The schema names draft-07 by its https address; Ajv knows the meta-schema by the http one.
  const draft07 = JSON.parse(
    readFileSync(path.join(root, "node_modules", "ajv", "dist", "refs", "json-schema-draft-07.json"), "utf8"),
  ) as { $id: string };
  ajv.addMetaSchema({ ...draft07, $id: "https://json-schema.org/draft-07/schema" });
  const validate = ajv.compile(
    JSON.parse(
      readFileSync(path.join(root, "node_modules", "dclint", "schemas", "compose.schema.json"), "utf8"),
    ),
  );
  const errorsOf = (document: unknown) =>
    validate(document)
      ? []
      : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message} ${JSON.stringify(e.params)}`);

  it("is valid against the compose specification's schema, and so is the test override", () => {
    assert.deepEqual(errorsOf(compose), []);
    assert.deepEqual(errorsOf(override), []);
  });

  it("fails the schema with a misspelled key (the check is strict)", () => {
    const broken = structuredClone(compose) as unknown as {
      services: Record<string, Record<string, unknown>>;
    };
    const gateway = broken.services.gateway as Record<string, unknown>;
    gateway.depends_onn = gateway.depends_on;
    delete gateway.depends_on;
    assert.ok(
      errorsOf(broken).some((e) => e.includes("depends_onn")),
      errorsOf(broken).join("\n"),
    );
  });

  it("runs the whole distributed system: backends, migrations, the four services", () => {
    assert.deepEqual(Object.keys(compose.services).sort(), [
      "auth",
      "converter",
      "gateway",
      "mailpit",
      "mariadb",
      "migrate-auth",
      "migrate-gateway",
      "minio",
      "notification",
      "rabbitmq",
    ]);
    for (const name of ["mariadb", "rabbitmq", "minio", "mailpit"]) {
      assert.ok(compose.services[name]?.healthcheck, `${name}: a health check`);
    }
  });

  for (const name of services) {
    it(`starts ${name} from the right image target, checked by /readyz, after what it needs`, () => {
      const service = compose.services[name] as ComposeService;
      assert.equal(service.command, `serve ${name}`);
      assert.equal(service.build?.target, name === "converter" ? "converter" : "service");
      const test = Array.isArray(service.healthcheck?.test)
        ? service.healthcheck.test.join(" ")
        : service.healthcheck?.test;
      assert.match(test ?? "", /\/readyz/);
      const env = service.environment ?? {};
      const config = loadConfig(env);
      for (const backend of expectedBackends[name]) {
        if (backend === "jwt") continue; // one auth container: it keeps its own key in its volume
        assert.notEqual(config[backend], undefined, `${name}: ${backend} must be configured`);
      }
      assert.equal(config.port, defaultPorts[name]);
      // Every backend it uses is a service it waits for, healthy; a migration, completed.
      const needs: Record<ServiceName, Record<string, string>> = {
        auth: { mariadb: "service_healthy", "migrate-auth": "service_completed_successfully" },
        gateway: {
          mariadb: "service_healthy",
          "migrate-gateway": "service_completed_successfully",
          auth: "service_healthy",
          rabbitmq: "service_healthy",
          minio: "service_healthy",
        },
        converter: { rabbitmq: "service_healthy", minio: "service_healthy" },
        notification: { rabbitmq: "service_healthy", mailpit: "service_healthy" },
      };
      for (const [dependency, condition] of Object.entries(needs[name])) {
        assert.equal(service.depends_on?.[dependency]?.condition, condition, `${name} → ${dependency}`);
      }
      const hosts = [
        config.databaseUrl,
        config.amqpUrl,
        config.s3?.endpoint,
        config.smtpUrl,
        config.authServiceAddress,
      ]
        .filter((u): u is string => u !== undefined)
        .map((u) => new URL(u).hostname);
      for (const host of hosts) assert.ok(host in (service.depends_on ?? {}), `${name} waits for ${host}`);
    });
  }

  it("migrates with DDL users; auth and the gateway run with rows-only users and MIGRATE_ON_START=false", () => {
    for (const name of ["auth", "gateway"]) {
      const migrate = compose.services[`migrate-${name}`] as ComposeService;
      const service = compose.services[name] as ComposeService;
      assert.equal(migrate.command, `migrate ${name}`);
      assert.equal(service.environment?.MIGRATE_ON_START, "false");
      const [ddl, rows] = [migrate, service].map(
        (s) => new URL(loadConfig(s.environment ?? {}).databaseUrl as string),
      );
      assert.notEqual(ddl?.username, rows?.username);
      assert.equal(ddl?.pathname, rows?.pathname);
    }
  });

  it("gives a stopping converter the time to finish its conversion", () => {
    const converter = compose.services.converter as ComposeService;
    const config = loadConfig(converter.environment ?? {});
    assert.ok(config.converterDrainSeconds >= config.ffmpeg.timeoutSeconds);
    assert.ok(durationSeconds(converter.stop_grace_period) >= config.converterDrainSeconds + 25);
  });

  it("the test override changes only what cannot run here: backing images, and the network (host, loopback)", () => {
    for (const [name, service] of Object.entries(override.services)) {
      assert.ok(name in compose.services, `${name} is a service of compose.yaml`);
      assert.equal(service.network_mode, "host", `${name}: host network`);
      if (service.image !== undefined) {
        assert.ok(
          ["mariadb", "rabbitmq", "minio", "mailpit"].includes(name),
          `${name}: its image is compose.yaml's`,
        );
      }
      assert.equal(service.build, undefined);
      assert.equal(service.depends_on, undefined, `${name}: the start order is compose.yaml's`);
    }
  });
});
