import path from "node:path";
import type { ApiClient } from "./api-client.ts";
import { CliError } from "./command-kit.ts";
import { downloadFileName, exists, FileExistsError, saveStream } from "./files.ts";
import type { ProgressDisplay } from "./progress.ts";

/**
 * Downloads the MP3 `fid` into `dir` under the server's file name (else `fallbackName`), never
 * over an existing file without `force` nor over `refuse` (the video it came from). Answers the
 * path it was saved to.
 */
export async function saveMp3(
  api: ApiClient,
  fid: string,
  dir: string,
  options: {
    fallbackName: string;
    force?: boolean | undefined;
    progress: ProgressDisplay;
    label: string;
    refuse?: string;
  },
): Promise<string> {
  const response = await api.download(fid);
  const destination = path.join(
    dir,
    downloadFileName(response.headers.get("content-disposition"), options.fallbackName),
  );
  if (destination === options.refuse) {
    await response.body?.cancel();
    throw new CliError("The MP3 would replace the input file; use --output DIR.");
  }
  if (!options.force && (await exists(destination))) {
    await response.body?.cancel();
    throw new FileExistsError(destination);
  }
  if (!response.body) throw new CliError("The server sent no file.");
  const size = Number(response.headers.get("content-length") ?? Number.NaN);
  const bar = options.progress.bytes("download", options.label, Number.isFinite(size) ? size : 0);
  try {
    await saveStream(response.body, destination, { force: options.force, onBytes: (n) => bar.update(n) });
  } catch (error) {
    bar.stop();
    await response.body.cancel().catch(() => {});
    throw error;
  }
  bar.done();
  return destination;
}
