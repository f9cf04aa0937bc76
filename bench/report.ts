/**
 * Measuring and printing: a clock, the median, ratios, aligned tables on stdout and a progress
 * line on stderr (redrawn in place on a terminal, one line per step in a pipe or a log).
 */

/** Milliseconds since an arbitrary origin, monotonic. */
export const now = (): number => performance.now();

/** Runs `fn` and returns its result and how long it took in milliseconds. */
export async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const started = now();
  const value = await fn();
  return { value, ms: now() - started };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/**
 * `sides` in the order round `round` (counted from 1) runs them: each goes first in turn, so none
 * always follows the same one.
 */
export function inTurn<T>(sides: readonly T[], round: number): T[] {
  const first = (round - 1) % sides.length;
  return [...sides.slice(first), ...sides.slice(0, first)];
}

export const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
export const millis = (ms: number): string => `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
export const ratio = (value: number): string => (Number.isFinite(value) ? `${value.toFixed(2)}×` : "n/a");
export const mebibytes = (bytes: number): string => `${(bytes / 1024 ** 2).toFixed(0)} MiB`;
export const throughput = (bytes: number, ms: number): string =>
  `${(bytes / 1024 ** 2 / (ms / 1000)).toFixed(0)} MiB/s`;
export const perSecond = (value: number): string => `${Math.round(value).toLocaleString("en-US")}/s`;

/** Prints a heading, an aligned table (numbers right-aligned) and a note under it. */
export function printTable(title: string, header: string[], rows: string[][], note?: string): void {
  const widths = header.map((cell, i) => Math.max(cell.length, ...rows.map((row) => (row[i] ?? "").length)));
  const numeric = header.map((_, i) => i > 0 && rows.every((row) => /^[\d.,\s-]|^n\/a/.test(row[i] ?? "")));
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (numeric[i] ? cell.padStart(widths[i] ?? 0) : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  const out = ["", title, line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)];
  if (note) out.push("", ...note.split("\n").map((l) => (l === "" ? "" : `  ${l}`)));
  process.stdout.write(`${out.join("\n")}\n`);
}

/** A line of text on stdout (results, not progress). */
export function say(text = ""): void {
  process.stdout.write(`${text}\n`);
}

export interface Step {
  /** Shows what the step is doing now (on a terminal; dropped in a pipe). */
  update(detail: string): void;
  /** Ends the step; its line is cleared on a terminal. */
  done(): void;
}

const interactive = process.stderr.isTTY === true;

/** A progress indicator for a long step, on stderr so that stdout keeps only the results. */
export function step(label: string): Step {
  const started = now();
  const elapsed = () => `${((now() - started) / 1000).toFixed(0)} s`;
  let detail = "";
  let timer: NodeJS.Timeout | undefined;
  const draw = () => process.stderr.write(`\r\x1b[K… ${label}${detail ? `: ${detail}` : ""} (${elapsed()})`);
  if (interactive) {
    draw();
    timer = setInterval(draw, 500);
    timer.unref();
  } else {
    process.stderr.write(`… ${label}\n`);
  }
  return {
    update(text) {
      detail = text;
      if (interactive) draw();
    },
    done() {
      clearInterval(timer);
      if (interactive) process.stderr.write("\r\x1b[K");
    },
  };
}

/** Runs `fn` under a progress step that ends however `fn` ends. */
export async function withStep<T>(label: string, fn: (step: Step) => Promise<T>): Promise<T> {
  const s = step(label);
  try {
    return await fn(s);
  } finally {
    s.done();
  }
}

/** The share of the machine's CPU time that was busy over `ms` (from /proc/stat), or NaN. */
export async function cpuBusy(ms = 1000): Promise<number> {
  const { readFile } = await import("node:fs/promises");
  const read = async () => {
    const line = (await readFile("/proc/stat", "utf8")).split("\n", 1)[0] ?? "";
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    return { idle, total: fields.reduce((a, b) => a + b, 0) };
  };
  try {
    const before = await read();
    await new Promise((resolve) => setTimeout(resolve, ms));
    const after = await read();
    return 1 - (after.idle - before.idle) / (after.total - before.total);
  } catch {
    return Number.NaN;
  }
}
