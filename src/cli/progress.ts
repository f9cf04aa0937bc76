import cliProgress from "cli-progress";
import { onInterrupt } from "./interrupt.ts";

/** One task's progress: an upload, a conversion or a download. */
export interface ProgressTask {
  /** `value` in the task's units (bytes, or 0..1 for a fraction); `status` a word shown beside it. */
  update(value: number, status?: string): void;
  /** The task ended well; `summary` replaces the numbers in the last plain line. */
  done(summary?: string): void;
  /** The task ended badly: the bar stops where it was. */
  stop(): void;
}

export interface ProgressOptions {
  stream?: NodeJS.WriteStream;
  /** Bars that redraw in place; else plain lines (at most one a second per task). */
  tty?: boolean;
  /** false: nothing at all (`--quiet`). */
  enabled?: boolean;
  /** Least time between two plain lines of one task. */
  plainIntervalMs?: number;
}

/**
 * The command's progress display, on stderr (stdout carries only the results): cli-progress bars
 * when it is a terminal, stacked while several tasks run together, plain lines when it is a file
 * or a pipe (so logs and CI output stay readable), nothing with `--quiet`.
 */
export class ProgressDisplay {
  readonly stream: NodeJS.WriteStream;
  readonly tty: boolean;
  readonly enabled: boolean;
  readonly plainIntervalMs: number;

  constructor(options: ProgressOptions = {}) {
    this.stream = options.stream ?? process.stderr;
    this.tty = options.tty ?? this.stream.isTTY === true;
    this.enabled = options.enabled ?? true;
    this.plainIntervalMs = options.plainIntervalMs ?? 1000;
  }

  /** `phase` ("upload") of `subject` (a file name): a byte count towards `total`, with the rate and the time left. */
  bytes(phase: string, subject: string, total: number): ProgressTask {
    return this.task(phase, subject, total, "bytes");
  }

  /** A fraction 0..1 (a conversion), with a status word and the time left. */
  fraction(phase: string, subject: string, status = ""): ProgressTask {
    const task = this.task(phase, subject, 1, "fraction");
    if (status) task.update(0, status);
    return task;
  }

  /** A line of its own (not progress): shown unless the display is off. */
  note(text: string): void {
    if (this.enabled) this.stream.write(`${text}\n`);
  }

  private task(phase: string, subject: string, total: number, kind: "bytes" | "fraction"): ProgressTask {
    if (!this.enabled) return { update() {}, done() {}, stop() {} };
    // Bars line up under each other; plain lines read as sentences.
    return this.tty
      ? new BarTask(this.bars(), `${phase.padEnd(8)} ${shorten(subject, 24)}`, total, kind)
      : new PlainTask(this.stream, `${phase} ${subject}`, total, kind, this.plainIntervalMs);
  }

  private multi: BarGroup | undefined;

  /** The terminal's bars, one group while any of them runs. */
  private bars(): BarGroup {
    if (!this.multi || this.multi.closed) this.multi = new BarGroup(this.stream);
    return this.multi;
  }
}

/** cli-progress's MultiBar: bars of tasks that run together stack; it ends when the last bar stops. */
class BarGroup {
  readonly multi: cliProgress.MultiBar;
  private active = 0;
  closed = false;

  constructor(stream: NodeJS.WriteStream) {
    this.multi = new cliProgress.MultiBar(
      {
        stream,
        barsize: 20,
        hideCursor: true,
        // cli-progress's own SIGINT handler would only stop the bars and keep the command running.
        gracefulExit: false,
        linewrap: false,
        fps: 10,
        autopadding: true,
        emptyOnZero: true,
      },
      cliProgress.Presets.shades_classic,
    );
  }

  create(format: string, total: number, payload: object): cliProgress.SingleBar {
    this.active += 1;
    return this.multi.create(total, 0, payload, { format });
  }

  release(): void {
    this.active -= 1;
    if (this.active === 0 && !this.closed) {
      this.closed = true;
      this.multi.stop();
    }
  }
}

/** Rate over the last few seconds, so the ETA follows the connection's current speed. */
class RateMeter {
  readonly windowMs: number;
  readonly started = performance.now();
  private samples: { at: number; value: number }[] = [];

  constructor(windowMs = 5000) {
    this.windowMs = windowMs;
  }

  add(value: number): void {
    const at = performance.now();
    this.samples.push({ at, value });
    while (this.samples.length > 2 && at - (this.samples[0]?.at ?? at) > this.windowMs) this.samples.shift();
  }

  /** Units per second, or undefined before there is anything to go on. */
  rate(): number | undefined {
    const first = this.samples[0];
    const last = this.samples.at(-1);
    if (!first || !last || last.at - first.at < 200) {
      // A very short task: its average since the start.
      const elapsed = (performance.now() - this.started) / 1000;
      return last && elapsed > 0 && last.value > 0 ? last.value / elapsed : undefined;
    }
    return ((last.value - first.value) * 1000) / (last.at - first.at);
  }

  elapsedSeconds(): number {
    return (performance.now() - this.started) / 1000;
  }
}

function numbers(kind: "bytes" | "fraction", value: number, total: number, meter: RateMeter) {
  const rate = meter.rate();
  const left = total - value;
  const eta = rate && rate > 0 ? formatDuration(left / rate) : "?";
  const percentage = total > 0 ? Math.floor((Math.min(value, total) / total) * 100) : 100;
  return {
    percentage,
    done: kind === "bytes" ? formatBytes(value) : "",
    size: kind === "bytes" ? formatBytes(total) : "",
    rate: kind === "bytes" ? (rate === undefined ? "?" : `${formatBytes(rate)}/s`) : "",
    eta,
  };
}

class BarTask implements ProgressTask {
  readonly bar: cliProgress.SingleBar;
  readonly meter = new RateMeter();
  readonly kind: "bytes" | "fraction";
  readonly total: number;
  // A fraction is drawn in thousandths so the bar moves smoothly.
  readonly scale: number;
  private readonly forget: () => void;
  private readonly ticker: NodeJS.Timeout;
  private status = "";
  private value = 0;

  private readonly group: BarGroup;
  private stopped = false;

  constructor(group: BarGroup, label: string, total: number, kind: "bytes" | "fraction") {
    this.kind = kind;
    this.total = total;
    this.scale = kind === "fraction" ? 1000 : 1;
    this.group = group;
    // Only {bar} and {percentage} are cli-progress's own; {detail} is ours (its {eta} is too jumpy).
    this.bar = group.create(`${label} [{bar}] {percentage}% | {detail}`, Math.round(total * this.scale), {
      detail: this.detail(0),
    });
    this.forget = onInterrupt(() => this.group.multi.stop());
    // A stalled transfer gets no updates: let the rate and the ETA show it anyway.
    this.ticker = setInterval(() => this.update(this.value), 1000);
    this.ticker.unref();
  }

  private detail(value: number, ended = false): string {
    const n = numbers(this.kind, value, this.total, this.meter);
    if (this.kind === "bytes") {
      return `${n.done}/${n.size} | ${n.rate}${ended ? "" : ` | ETA ${n.eta}`}`;
    }
    const eta = ended || value === 0 ? "" : ` | ETA ${n.eta}`;
    return `${this.status}${eta}`;
  }

  update(value: number, status?: string): void {
    if (status !== undefined) this.status = status;
    this.value = value;
    this.meter.add(value);
    this.bar.update(Math.round(value * this.scale), { detail: this.detail(value) });
  }

  done(summary?: string): void {
    if (summary !== undefined) this.status = summary;
    else if (this.kind === "fraction") this.status = "done";
    this.meter.add(this.total);
    this.bar.update(Math.round(this.total * this.scale), { detail: this.detail(this.total, true) });
    this.stop();
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.ticker);
    this.bar.stop();
    this.group.release();
    this.forget();
  }
}

class PlainTask implements ProgressTask {
  readonly stream: NodeJS.WriteStream;
  readonly label: string;
  readonly total: number;
  readonly kind: "bytes" | "fraction";
  readonly intervalMs: number;
  readonly meter = new RateMeter();
  private status = "";
  private lastLine = "";
  private lastAt = 0;
  private ended = false;

  constructor(
    stream: NodeJS.WriteStream,
    label: string,
    total: number,
    kind: "bytes" | "fraction",
    intervalMs: number,
  ) {
    this.stream = stream;
    this.label = label;
    this.total = total;
    this.kind = kind;
    this.intervalMs = intervalMs;
    if (kind === "bytes") this.print(this.line(0), true);
  }

  private line(value: number): string {
    const n = numbers(this.kind, value, this.total, this.meter);
    const status = this.status ? `${this.status} ` : "";
    if (this.kind === "bytes") {
      if (value === 0) return `${this.label}: 0% of ${n.size}`;
      return `${this.label}: ${n.percentage}% (${n.done} of ${n.size}, ${n.rate}, ETA ${n.eta})`;
    }
    return `${this.label}: ${status}${n.percentage}%${value > 0 && value < this.total ? ` (ETA ${n.eta})` : ""}`;
  }

  private print(line: string, force = false): void {
    const now = performance.now();
    if (line === this.lastLine) return;
    if (!force && now - this.lastAt < this.intervalMs) return;
    this.stream.write(`${line}\n`);
    this.lastLine = line;
    this.lastAt = now;
  }

  update(value: number, status?: string): void {
    if (this.ended) return;
    const statusChanged = status !== undefined && status !== this.status;
    if (status !== undefined) this.status = status;
    this.meter.add(value);
    this.print(this.line(value), statusChanged);
  }

  done(summary?: string): void {
    if (this.ended) return;
    this.ended = true;
    const elapsed = this.meter.elapsedSeconds();
    let detail: string;
    if (summary !== undefined) detail = summary;
    else if (this.kind === "bytes") {
      const rate = elapsed > 0 ? `, ${formatBytes(this.total / elapsed)}/s` : "";
      detail = `${formatBytes(this.total)} in ${formatDuration(elapsed)}${rate}`;
    } else detail = `in ${formatDuration(elapsed)}`;
    this.print(`${this.label}: 100% (${detail})`, true);
  }

  stop(): void {
    // The error that stopped the task is reported on its own line; nothing more to say here.
    this.ended = true;
  }
}

/** 1234567 → "1.2 MB" (decimal units, as disks and network rates are quoted). */
export function formatBytes(bytes: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let value = Math.max(0, bytes);
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${units[unit]}`;
}

/** 0.4 → "0.4s", 75 → "1m15s", 3725 → "1h02m". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  if (seconds < 1) return `${seconds.toFixed(2)}s`;
  if (seconds < 10) return `${seconds.toFixed(1)}s`;
  if (seconds < 60) return `${Math.round(seconds)}s`;
  const whole = Math.round(seconds);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = whole % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(s).padStart(2, "0")}s`;
}

/** At most `max` characters, the middle elided: "a-very-long…name.mp4". */
function shorten(text: string, max: number): string {
  const chars = Array.from(text);
  if (chars.length <= max) return text;
  const head = Math.ceil((max - 1) / 2);
  return `${chars.slice(0, head).join("")}…${chars.slice(chars.length - (max - 1 - head)).join("")}`;
}
