import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import fastifyStatic from "@fastify/static";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { gatewayError } from "../errors.ts";

/** The browser UI: `web/` at the repository root, found from this file so any working directory works. */
export const WEB_ROOT = fileURLToPath(new URL("../../../web/", import.meta.url));
const ASSETS_DIR = path.join(WEB_ROOT, "assets");

/**
 * Libraries the page imports, served from their npm packages (pinned by the lockfile) under the
 * assets' path: `import … from "./vendor/fflate.js"` in a module of the page.
 */
const VENDOR_FILES: Record<string, string> = {
  // The ZIP of the selected MP3s is made in the browser (the files are fetched with the token anyway).
  "fflate.js": fileURLToPath(import.meta.resolve("fflate/browser")),
};

export interface WebOptions {
  /** `REGISTRATION=open`: the page offers a sign-up form. */
  registrationOpen?: boolean;
}

/**
 * The UI's own files only: no inline script or style, no plugins, no framing, no foreign origins.
 * `connect-src 'self'` (via default-src) covers the API and the /events stream.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "base-uri 'none'",
  "object-src 'none'",
  "frame-ancestors 'none'",
  "form-action 'self'",
].join("; ");

const securityHeaders: Record<string, string> = {
  "content-security-policy": CONTENT_SECURITY_POLICY,
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
};

/**
 * `GET /` → `web/index.html`; `GET /assets/<version>/<file>` → `web/assets/<file>`.
 *
 * There is no build step, so cache busting is done by the path: the page names its assets under
 * `/assets/<version>/`, where the version is a hash of the assets' names, sizes and modification
 * times. An asset asked for under the current version is cached for a year (immutable); the page
 * itself is always revalidated (ETag), so a changed asset is fetched under its new path at once.
 * Relative module imports inherit the versioned prefix. An asset asked for under another version
 * (a replica of another release during a rolling update) is still served, just not cached long.
 *
 * Only these two routes exist, so API routes and the JSON 404 for unknown paths are untouched.
 */
export function registerWebRoutes(app: FastifyInstance, options: WebOptions = {}): void {
  app.register(async (scope) => {
    await scope.register(fastifyStatic, { root: ASSETS_DIR, serve: false, index: false });
    scope.addHook("onSend", async (_request, reply) => {
      for (const [name, value] of Object.entries(securityHeaders)) reply.header(name, value);
    });

    const version = assetVersion(ASSETS_DIR, Object.values(VENDOR_FILES));
    const indexFile = path.join(WEB_ROOT, "index.html");
    // An image built without web/ still serves the whole API; say so once instead of failing.
    await stat(indexFile).catch(() =>
      scope.log.warn({ webRoot: WEB_ROOT }, "web UI files not found; / answers 404"),
    );

    scope.get("/", async (request: FastifyRequest, reply: FastifyReply) => {
      let template: string;
      try {
        template = await readFile(indexFile, "utf8");
      } catch {
        throw gatewayError(
          "not_found",
          "The web UI is not installed on this server; the API works as usual.",
        );
      }
      const current = await version();
      const html = template
        .replace(/(src|href)="\/assets\//g, `$1="/assets/${current}/`)
        .replace(
          '<meta name="vid2mp3-registration" content="closed">',
          `<meta name="vid2mp3-registration" content="${options.registrationOpen ? "open" : "closed"}">`,
        );
      const etag = `"${createHash("sha256").update(html).digest("base64url").slice(0, 22)}"`;
      reply
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-cache")
        .header("etag", etag);
      if (request.headers["if-none-match"] === etag) return reply.status(304).send();
      return reply.send(html);
    });

    scope.get<{ Params: { version: string; name: string } }>(
      "/assets/:version/vendor/:name",
      async (request, reply) => {
        const file = VENDOR_FILES[request.params.name];
        if (!file) throw gatewayError("not_found", "No such file.");
        const fresh = request.params.version === (await version());
        return reply.sendFile(
          path.basename(file),
          path.dirname(file),
          fresh ? { maxAge: "365d", immutable: true } : { maxAge: 0, immutable: false },
        );
      },
    );

    scope.get<{ Params: { version: string; "*": string } }>("/assets/:version/*", async (request, reply) => {
      const fresh = request.params.version === (await version());
      return reply.sendFile(
        request.params["*"],
        fresh ? { maxAge: "365d", immutable: true } : { maxAge: 0, immutable: false },
      );
    });
  });
}

/** A short hash of the asset files' (and vendor files') names, sizes and times, recomputed at most once a second. */
function assetVersion(dir: string, vendorFiles: string[]): () => Promise<string> {
  let cached: { value: string; at: number } | undefined;
  return async () => {
    if (cached && Date.now() - cached.at < 1000) return cached.value;
    const hash = createHash("sha256");
    const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
    const files = entries
      .filter((entry) => entry.isFile())
      .map((entry) => path.join(entry.parentPath, entry.name))
      .sort();
    for (const file of [...files, ...vendorFiles]) {
      const info = await stat(file).catch(() => undefined);
      if (info) hash.update(`${path.relative(dir, file)}\0${info.size}\0${info.mtimeMs}\n`);
    }
    cached = { value: hash.digest("base64url").slice(0, 12), at: Date.now() };
    return cached.value;
  };
}
