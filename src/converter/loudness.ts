import type { LoudnessMeasurement } from "./ffmpeg-args.ts";

/**
 * Reads loudnorm's first-pass measurement from the end of ffmpeg's stderr: a JSON object printed
 * over several lines after its `[Parsed_loudnorm_0 @ …]` line. Undefined when the input has no
 * measurable loudness (digital silence gives `-inf`): there is nothing to normalise. A missing or
 * malformed block is an error of ours (ffmpeg changed), retried like any other.
 */
export function readLoudness(stderrTail: readonly string[]): LoudnessMeasurement | undefined {
  const open = stderrTail.lastIndexOf("{");
  const close = stderrTail.lastIndexOf("}");
  if (open === -1 || close < open) throw new Error("ffmpeg printed no loudness measurement");
  const json = JSON.parse(stderrTail.slice(open, close + 1).join("\n")) as Record<string, unknown>;
  const number = (key: string): number => Number(json[key]);
  const measured = {
    inputI: number("input_i"),
    inputTp: number("input_tp"),
    inputLra: number("input_lra"),
    inputThresh: number("input_thresh"),
    targetOffset: number("target_offset"),
  };
  if (!Number.isFinite(measured.inputI) || !Number.isFinite(measured.inputThresh)) return undefined;
  // loudnorm refuses measured values outside these ranges; very quiet input can fall outside them.
  return {
    inputI: clamp(measured.inputI, -99, 0),
    inputTp: clamp(finiteOr(measured.inputTp, -99), -99, 99),
    inputLra: clamp(finiteOr(measured.inputLra, 0), 0, 99),
    inputThresh: clamp(measured.inputThresh, -99, 0),
    targetOffset: clamp(finiteOr(measured.targetOffset, 0), -99, 99),
  };
}

const finiteOr = (value: number, fallback: number): number => (Number.isFinite(value) ? value : fallback);
const clamp = (value: number, min: number, max: number): number => Math.min(max, Math.max(min, value));
