import path from "node:path";
import { type Command, InvalidArgumentError } from "commander";
import type { Job } from "../api-client.ts";
import {
  action,
  clientCommand,
  formatDate,
  loggedIn,
  result,
  type ServerOption,
  table,
  tell,
  truncate,
} from "../command-kit.ts";
import { mp3NameFor } from "../files.ts";
import { findJob, findMp3, parseJobRef, shortId } from "../job-ids.ts";
import { formatBytes, ProgressDisplay } from "../progress.ts";
import { saveMp3 } from "../save-mp3.ts";

/** `vid2mp3 jobs`, `download` and `delete`. */
export function registerJobCommands(program: Command): void {
  clientCommand(program, "jobs", "List your conversion jobs, newest first.")
    .option("--limit <n>", "how many jobs to show", wholeNumber(1), 20)
    .option("--offset <n>", "skip this many of the newest jobs first", wholeNumber(0), 0)
    .option("--wide", "whole ids, the MP3's fid and the reason of a failure (wider than 80 columns)")
    .option("--json", "print the API's JSON")
    .addHelpText(
      "after",
      `
The JOB column shows the start of each id, which every command taking a job id accepts.

Examples:
  vid2mp3 jobs --limit 50 --offset 20
  vid2mp3 jobs --json | jq -r '.jobs[] | select(.status == "done") | .id'`,
    )
    .action(action(jobs));

  clientCommand(
    program,
    "download <id>",
    "Download an MP3: by its job's id (the short one of `vid2mp3 jobs` will do) or its fid (from the e-mail).",
  )
    .option("-o, --output <dir>", "where to save it (default: the current directory)")
    .option("-f, --force", "overwrite a file that already exists")
    .option("-q, --quiet", "no progress on stderr, only the path on stdout")
    .action(action(download));

  clientCommand(program, "delete <id>", "Delete a job and its files (by its id, or the start of it).").action(
    action(deleteJob),
  );
}

function wholeNumber(min: number) {
  return (value: string): number => {
    const number = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(number) || number < min) {
      throw new InvalidArgumentError(`expected a whole number of at least ${min}`);
    }
    return number;
  };
}

interface JobsOptions extends ServerOption {
  limit: number;
  offset: number;
  wide?: boolean;
  json?: boolean;
}

async function jobs(options: JobsOptions): Promise<void> {
  const api = await loggedIn(options);
  // The API serves at most 100 a page: a longer list is read page by page.
  const wanted: Job[] = [];
  let total = 0;
  for (let offset = options.offset; wanted.length < options.limit; ) {
    const page = await api.jobs({ limit: Math.min(100, options.limit - wanted.length), offset });
    wanted.push(...page.jobs);
    total = page.total;
    offset += page.jobs.length;
    if (page.jobs.length === 0 || offset >= page.total) break;
  }
  if (options.json) {
    result(JSON.stringify({ jobs: wanted, total, limit: options.limit, offset: options.offset }, null, 2));
    return;
  }
  if (wanted.length === 0) {
    tell(
      total === 0
        ? "No jobs yet: convert a video with `vid2mp3 convert <file>`."
        : `No jobs past the first ${total}.`,
    );
    return;
  }
  result(options.wide ? wideTable(wanted) : narrowTable(wanted));
  const last = options.offset + wanted.length;
  if (options.offset > 0 || last < total) {
    const more = last < total ? `; the next with --offset ${last}` : "";
    tell(`Jobs ${options.offset + 1}–${last} of ${total}${more}.`);
  }
}

const statusOf = (job: Job) =>
  job.status === "converting" ? `converting ${Math.floor(job.progress * 100)}%` : job.status;

/** Fits 80 columns: short ids, the file name cut to fit. */
function narrowTable(list: Job[]): string {
  const rows = list.map((job) => [
    shortId(job.id),
    statusOf(job),
    truncate(job.fileName, 26),
    formatBytes(job.size),
    formatDate(job.createdAt),
  ]);
  return table(["JOB", "STATUS", "FILE", "SIZE", "CREATED"], rows);
}

function wideTable(list: Job[]): string {
  const rows = list.map((job) => [
    job.id,
    statusOf(job),
    job.fileName,
    formatBytes(job.size),
    formatDate(job.createdAt),
    // When the retention removes it; "-" while unfinished or kept for ever.
    job.expiresAt ? formatDate(job.expiresAt) : "-",
    job.status === "done" ? (job.mp3Id ?? "") : job.status === "failed" ? (job.error ?? "") : "",
  ]);
  return table(["JOB", "STATUS", "FILE", "SIZE", "CREATED", "EXPIRES", "FID / ERROR"], rows);
}

async function download(
  id: string,
  options: ServerOption & { output?: string; force?: boolean; quiet?: boolean },
): Promise<void> {
  const ref = parseJobRef(id);
  const api = await loggedIn(options);
  const { fid, job } = await findMp3(api, ref);
  const destination = await saveMp3(api, fid, path.resolve(options.output ?? "."), {
    fallbackName: job ? mp3NameFor(job.fileName) : `${fid}.mp3`,
    force: options.force,
    progress: new ProgressDisplay({ enabled: !options.quiet }),
    label: job?.fileName ?? fid,
  });
  result(destination);
}

async function deleteJob(id: string, options: ServerOption): Promise<void> {
  const ref = parseJobRef(id);
  const api = await loggedIn(options);
  const job = await findJob(api, ref);
  await api.deleteJob(job.id);
  tell(`Deleted job ${shortId(job.id)} (${job.fileName}) and its files.`);
}
