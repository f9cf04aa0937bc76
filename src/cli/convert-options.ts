import type { Command } from "commander";
import { OPTION_FIELDS, OptionError, type OptionField, parseOptionFields } from "../contracts/options.ts";

/**
 * The conversion options of `vid2mp3 convert`: the flags, and the upload fields they become.
 * They are checked here with the server's own rules, so a wrong value is a usage error before
 * anything is uploaded.
 */

export interface ConversionFlags {
  quality?: string;
  start?: string;
  end?: string;
  normalize?: boolean;
  mono?: boolean;
  track?: string;
  title?: string;
  artist?: string;
  album?: string;
  /** false with --no-cover. */
  cover?: boolean;
  /** false with --no-chapters. */
  chapters?: boolean;
}

export function addConversionFlags(command: Command): Command {
  return command
    .option(
      "--quality <q>",
      "v0 (best) … v9 (smallest) VBR, or 128k, 160k, 192k, 256k, 320k CBR (default v2)",
    )
    .option("--start <time>", "begin here: seconds (12.5) or [hh:]mm:ss[.fff] (1:00)")
    .option("--end <time>", "end here: seconds or [hh:]mm:ss[.fff] (2:30)")
    .option("--normalize", "even out the loudness (EBU R128: -16 LUFS, true peak -1.5 dBTP)")
    .option("--mono", "one channel")
    .option("--track <n|lang>", "which audio track: its number from 0, or a language code such as eng")
    .option("--title <text>", "ID3 title (default: the video's, else its file name)")
    .option("--artist <text>", "ID3 artist (default: the video's)")
    .option("--album <text>", "ID3 album (default: the video's)")
    .option("--no-cover", "no cover picture (default: a frame of the video)")
    .option("--no-chapters", "drop the video's chapters (default: kept as ID3 chapters)");
}

/** A flag that cannot be used; its message names the flag. */
export class ConversionFlagError extends Error {
  override name = "ConversionFlagError";
}

/** The upload fields of the flags given, in the order of the contract; throws ConversionFlagError. */
export function conversionFields(flags: ConversionFlags): [OptionField, string][] {
  const fields = new Map<OptionField, string>();
  const text = { ...flags } as Record<string, unknown>;
  for (const name of ["quality", "start", "end", "track", "title", "artist", "album"] as const) {
    if (typeof text[name] === "string") fields.set(name, text[name]);
  }
  if (flags.normalize) fields.set("normalize", "true");
  if (flags.mono) fields.set("mono", "true");
  if (flags.cover === false) fields.set("cover", "none");
  if (flags.chapters === false) fields.set("chapters", "drop");
  try {
    parseOptionFields(fields);
  } catch (error) {
    if (!(error instanceof OptionError)) throw error;
    // The server's sentence names fields ("quality"); here they are flags (--quality).
    let message = error.message;
    for (const name of OPTION_FIELDS)
      message = message.replaceAll(`The field "${name}"`, `--${name}`).replaceAll(`"${name}"`, `--${name}`);
    throw new ConversionFlagError(message);
  }
  return OPTION_FIELDS.flatMap((name) => {
    const value = fields.get(name);
    return value === undefined ? [] : [[name, value] as [OptionField, string]];
  });
}
