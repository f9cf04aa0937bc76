import { execFile } from "node:child_process";
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { errorMessage } from "../platform/error-message.ts";

/**
 * Finds the ffmpeg binary the converter runs, in the order of the design: `FFMPEG_PATH`, then
 * `ffmpeg` on PATH, then the binary shipped by the npm package. The system build comes before the
 * npm one because Debian's ffmpeg is about three times faster than the package's old static build,
 * which is only the last resort for a laptop with nothing installed.
 */

export type FfmpegSource = "FFMPEG_PATH" | "PATH" | "npm package @ffmpeg-installer/ffmpeg";

export interface LocatedFfmpeg {
  path: string;
  source: FfmpegSource;
  /** The first line of `ffmpeg -version`, logged at start-up so it is clear which build runs. */
  version: string;
}

export interface LocateOptions {
  /** The PATH to search (tests); defaults to the process's PATH. */
  pathEnv?: string;
}

export async function locateFfmpeg(
  configuredPath?: string,
  options: LocateOptions = {},
): Promise<LocatedFfmpeg> {
  if (configuredPath !== undefined && configuredPath !== "") {
    try {
      return { path: configuredPath, source: "FFMPEG_PATH", version: await ffmpegVersion(configuredPath) };
    } catch (error) {
      // An explicit setting that does not work is a mistake to report, not a reason to pick another binary.
      throw new Error(`FFMPEG_PATH=${configuredPath} is not a working ffmpeg: ${errorMessage(error)}`);
    }
  }

  const tried: string[] = [];
  const onPath = await findOnPath("ffmpeg", options.pathEnv ?? process.env.PATH ?? "");
  if (onPath !== undefined) {
    try {
      return { path: onPath, source: "PATH", version: await ffmpegVersion(onPath) };
    } catch (error) {
      tried.push(`${onPath} (on PATH): ${errorMessage(error)}`);
    }
  } else {
    tried.push("no ffmpeg on PATH");
  }

  try {
    const packaged = packagedFfmpegPath();
    try {
      return {
        path: packaged,
        source: "npm package @ffmpeg-installer/ffmpeg",
        version: await ffmpegVersion(packaged),
      };
    } catch (error) {
      tried.push(`${packaged} (npm package): ${errorMessage(error)}`);
    }
  } catch (error) {
    tried.push(`npm package @ffmpeg-installer/ffmpeg: ${errorMessage(error)}`);
  }

  throw new Error(
    `No working ffmpeg found (${tried.join("; ")}). Set FFMPEG_PATH, install ffmpeg (e.g. apt-get install ffmpeg) or the npm package @ffmpeg-installer/ffmpeg.`,
  );
}

/** Runs `<binary> -version` and returns its first line; rejects when it does not run or is not ffmpeg. */
async function ffmpegVersion(binary: string): Promise<string> {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(binary, ["-version"], { timeout: 15_000, maxBuffer: 1024 * 1024 }, (error, out) => {
      if (error) reject(error);
      else resolve(out);
    });
  });
  const firstLine = stdout.split("\n", 1)[0]?.trim() ?? "";
  if (!firstLine.startsWith("ffmpeg version")) {
    throw new Error(
      `"${binary} -version" did not print an ffmpeg version (got ${JSON.stringify(firstLine)})`,
    );
  }
  return firstLine;
}

async function findOnPath(name: string, pathEnv: string): Promise<string | undefined> {
  for (const dir of pathEnv.split(path.delimiter)) {
    if (dir === "") continue;
    const candidate = path.resolve(dir, name);
    try {
      await access(candidate, constants.X_OK);
      if ((await stat(candidate)).isFile()) return candidate;
    } catch {
      // Not here; keep looking, as the shell would.
    }
  }
  return undefined;
}

function packagedFfmpegPath(): string {
  // The package is CommonJS and throws (a string, not an Error) when its platform binary is missing.
  const require = createRequire(import.meta.url);
  const installer = require("@ffmpeg-installer/ffmpeg") as { path?: unknown };
  if (typeof installer.path !== "string") throw new Error("the package did not report a binary path");
  return installer.path;
}
