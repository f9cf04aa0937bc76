import { stat } from "node:fs/promises";
import path from "node:path";
import type { Command } from "commander";
import { type ApiClient, ApiError, type Job } from "../api-client.ts";
import {
  action,
  CliError,
  clientCommand,
  loggedIn,
  result,
  type ServerOption,
  tell,
  UsageError,
  userMessage,
} from "../command-kit.ts";
import {
  addConversionFlags,
  ConversionFlagError,
  type ConversionFlags,
  conversionFields,
} from "../convert-options.ts";
import { exists, FileExistsError, mp3NameFor } from "../files.ts";
import { onInterrupt } from "../interrupt.ts";
import { shortId } from "../job-ids.ts";
import { waitForJobs } from "../job-watcher.ts";
import { formatDuration, ProgressDisplay } from "../progress.ts";
import { saveMp3 } from "../save-mp3.ts";

export interface ConvertOptions extends ServerOption, ConversionFlags {
  output?: string;
  wait: boolean;
  force?: boolean;
  quiet?: boolean;
}

/** `vid2mp3 convert`. */
export function registerConvertCommand(program: Command): void {
  addConversionFlags(
    clientCommand(
      program,
      "convert <file...>",
      "Upload videos, follow their conversion and download the MP3s.",
    ),
  )
    .option("-o, --output <dir>", "where to save the MP3s (default: next to each video)")
    .option("--no-wait", "only upload; print the job ids and follow them later with `vid2mp3 jobs`")
    .option("-f, --force", "overwrite an MP3 that already exists")
    .option("-q, --quiet", "no progress on stderr, only the results on stdout")
    .addHelpText(
      "after",
      `
All files are uploaded first, one after the other; then their conversions are followed together
and each MP3 is downloaded as soon as it is ready. The path of each MP3 is printed on stdout, a
line each; progress (bars on a terminal, plain lines otherwise) and a closing summary go to
stderr. A file that fails is reported and the others still go; the command then exits 1.
Ctrl-C stops following, not the conversions: the server goes on, and the command says how to
download the MP3s later.

Examples:
  vid2mp3 convert holiday.mp4
  vid2mp3 convert *.mkv --output ~/Music
  vid2mp3 convert --no-wait talk.mov        # prints the job id`,
    )
    .action(action(convert));
}

/** A file on its way: where it comes from and where its MP3 goes. */
interface Upload {
  file: string;
  name: string;
  input: string;
  dir: string;
  job: Job;
}

/**
 * Uploads every file, then follows the conversions together, downloading each MP3 when it is
 * ready, and ends with a summary. A file that fails is reported and the others still go.
 */
async function convert(files: string[], options: ConvertOptions): Promise<void> {
  const fields = uploadFieldsOf(options);
  const api = await loggedIn(options);
  const progress = new ProgressDisplay({ enabled: !options.quiet });
  const failed: string[] = [];
  const report = (file: string, error: unknown) => {
    // A token the server refuses will be refused for the next file too.
    if (error instanceof ApiError && error.isAuthProblem) throw error;
    failed.push(file);
    tell(`vid2mp3: ${file}: ${userMessage(error)}`);
  };

  const uploads: Upload[] = [];
  for (const file of files) {
    try {
      uploads.push(await upload(api, file, { ...options, fields }, progress));
    } catch (error) {
      report(file, error);
    }
  }

  if (!options.wait) {
    for (const { job, name } of uploads) {
      progress.note(`${name}: queued as job ${shortId(job.id)}`);
      result(job.id);
    }
  } else if (uploads.length > 0) {
    await followAndDownload(api, uploads, options, progress, report);
  }

  if (!options.quiet) {
    const what = options.wait ? "converted" : "uploaded";
    const noun = files.length === 1 ? "file" : "files";
    const failures = failed.length > 0 ? `; ${failed.length} failed` : "";
    tell(`${files.length - failed.length} of ${files.length} ${noun} ${what}${failures}.`);
  }
  if (failed.length > 0) throw new CliError("");
}

/** The conversion flags as upload fields; a wrong one is a usage error, before anything is sent. */
function uploadFieldsOf(options: ConversionFlags): [string, string][] {
  try {
    return conversionFields(options);
  } catch (error) {
    if (error instanceof ConversionFlagError) throw new UsageError(error.message);
    throw error;
  }
}

async function upload(
  api: ApiClient,
  file: string,
  options: ConvertOptions & { fields: [string, string][] },
  progress: ProgressDisplay,
): Promise<Upload> {
  const info = await stat(file).catch(() => undefined);
  if (!info) throw new CliError("No such file.");
  if (!info.isFile()) throw new CliError("Not a file.");
  const name = path.basename(file);
  const input = path.resolve(file);
  const dir = path.resolve(options.output ?? path.dirname(file));

  // Refuse before uploading when the MP3's name is already taken: no conversion is wasted.
  if (options.wait) {
    const expected = path.join(dir, mp3NameFor(name));
    if (expected === input) throw new CliError("The MP3 would replace the input file; use --output DIR.");
    if (!options.force && (await exists(expected))) throw new FileExistsError(expected);
  }

  const bar = progress.bytes("upload", name, info.size);
  try {
    const job = await api.upload(file, name, { onBytes: (sent) => bar.update(sent), fields: options.fields });
    bar.done();
    return { file, name, input, dir, job };
  } catch (error) {
    bar.stop();
    throw error;
  }
}

/** Follows every uploaded job over one event stream; each MP3 is downloaded once it is ready. */
async function followAndDownload(
  api: ApiClient,
  uploads: Upload[],
  options: ConvertOptions,
  progress: ProgressDisplay,
  report: (file: string, error: unknown) => void,
): Promise<void> {
  const pending = new Map(uploads.map((upload) => [upload.job.id, upload]));
  // Ctrl-C stops this command, not the conversions: say how to get the MP3s later.
  const forget = onInterrupt(() => {
    if (pending.size === 0) return;
    const lines = [...pending.values()].map(
      ({ job, name }) => `  vid2mp3 download ${shortId(job.id)}    # ${name}`,
    );
    process.stderr.write(
      `\nvid2mp3: stopped following; the server goes on converting. Once done (see \`vid2mp3 jobs\`), download with:\n${lines.join("\n")}\n`,
    );
  });
  const bars = new Map(
    uploads.map(({ job, name }) => [job.id, progress.fraction("convert", name, job.status)]),
  );
  // Downloads one after the other, in the order the conversions end.
  let downloads = Promise.resolve();
  const finish = (job: Job) => {
    const upload = pending.get(job.id) as Upload;
    const bar = bars.get(job.id);
    if (job.status === "failed" || !job.mp3Id) {
      bar?.stop();
      pending.delete(job.id);
      report(upload.file, new CliError(`Conversion failed: ${job.error ?? "the server gave no reason."}`));
      return;
    }
    bar?.done(job.durationSeconds ? `${formatDuration(job.durationSeconds)} of audio` : undefined);
    const fid = job.mp3Id;
    downloads = downloads.then(async () => {
      try {
        const saved = await saveMp3(api, fid, upload.dir, {
          fallbackName: mp3NameFor(upload.name),
          force: options.force,
          progress,
          label: upload.name,
          refuse: upload.input,
        });
        result(saved);
      } catch (error) {
        report(upload.file, error);
      } finally {
        pending.delete(job.id);
      }
    });
  };
  try {
    await waitForJobs(
      api,
      uploads.map((upload) => upload.job.id),
      {
        onChange: (job) => {
          if (job.status === "queued" || job.status === "converting")
            bars.get(job.id)?.update(job.progress, job.status);
        },
        onEnded: finish,
      },
    );
  } catch (error) {
    for (const bar of bars.values()) bar.stop();
    throw error;
  }
  await downloads;
  forget();
}
