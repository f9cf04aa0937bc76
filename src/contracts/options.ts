import { z } from "zod";

/**
 * The per-upload conversion options: how the MP3 comes out. Clients send them as multipart text
 * fields before the file (`parseOptionFields` reads them), the gateway stores them on the job and
 * passes them to the converter in the `VideoMessage`, and the job shows them as applied
 * (`appliedOptions`, every default filled in). Every option is optional: a job without any is
 * converted exactly as before options existed.
 */

/** LAME VBR qualities (`v0` best … `v9` smallest) and constant bit rates. */
export const VBR_QUALITIES = ["v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9"] as const;
export const CBR_QUALITIES = ["128k", "160k", "192k", "256k", "320k"] as const;
export const QUALITIES = [...VBR_QUALITIES, ...CBR_QUALITIES] as const;
export type Quality = (typeof QUALITIES)[number];
export const DEFAULT_QUALITY: Quality = "v2";

/** The longest position `start`/`end` may name: 100 hours, far beyond any real upload. */
export const MAX_POSITION_SECONDS = 360_000;
/** ID3 text frames can hold more, but players show a line: 255 characters is plenty. */
export const MAX_TAG_LENGTH = 255;

const tag = z
  .string()
  .min(1)
  .max(MAX_TAG_LENGTH)
  .refine((value) => !/\p{Cc}/u.test(value), "must not contain control characters");
const position = z.number().nonnegative().max(MAX_POSITION_SECONDS);

/** The options as they travel (queue message, jobs table): only what the user chose. */
export const ConversionOptions = z
  .object({
    quality: z.enum(QUALITIES).optional(),
    /** Seconds into the source where the MP3 begins. */
    start: position.optional(),
    /** Seconds into the source where the MP3 ends. */
    end: position.positive().optional(),
    /** EBU R128 normalisation to −16 LUFS, true peak ≤ −1.5 dBTP (measured first: two passes). */
    normalize: z.boolean().optional(),
    mono: z.boolean().optional(),
    /** Which audio stream: a 0-based index among the audio streams, or an ISO 639-2 language code. */
    track: z.union([z.number().int().nonnegative().max(999), z.string().regex(/^[a-z]{3}$/)]).optional(),
    title: tag.optional(),
    artist: tag.optional(),
    album: tag.optional(),
    /** `frame`: a representative frame of the video as the front cover; `none`: no picture. */
    cover: z.enum(["frame", "none"]).optional(),
    /** `keep`: the source's chapters as ID3 chapter frames (shifted and cut to start/end); `drop`. */
    chapters: z.enum(["keep", "drop"]).optional(),
  })
  .refine((o) => o.start === undefined || o.end === undefined || o.start < o.end, {
    message: "start must be before end",
    path: ["end"],
  });
export type ConversionOptions = z.infer<typeof ConversionOptions>;

/** The options with every default filled in, as a job shows them (`$ref: "JobOptions#"`). */
export const AppliedOptions = z
  .object({
    quality: z.enum(QUALITIES).meta({ description: "LAME VBR v0…v9, or a CBR bit rate" }),
    start: z.number().nullable().meta({ description: "Seconds into the source where the MP3 begins" }),
    end: z.number().nullable().meta({ description: "Seconds into the source where the MP3 ends" }),
    normalize: z.boolean().meta({ description: "EBU R128: −16 LUFS, true peak ≤ −1.5 dBTP" }),
    mono: z.boolean(),
    track: z.union([z.number().int(), z.string()]).meta({
      description: "The audio stream: 0-based index among the audio streams, or an ISO 639-2 code",
    }),
    /** null: the source's own tag (for the title: else the file's name). */
    title: z.string().nullable().meta({ description: "null: the source's title, else the file name" }),
    artist: z.string().nullable().meta({ description: "null: the source's artist" }),
    album: z.string().nullable().meta({ description: "null: the source's album" }),
    cover: z.enum(["frame", "none"]),
    chapters: z.enum(["keep", "drop"]),
  })
  .meta({
    id: "JobOptions",
    description: "How the MP3 is made: the upload's option fields, with the defaults for those not sent.",
  });
export type AppliedOptions = z.infer<typeof AppliedOptions>;

export function appliedOptions(options: ConversionOptions = {}): AppliedOptions {
  return {
    quality: options.quality ?? DEFAULT_QUALITY,
    start: options.start ?? null,
    end: options.end ?? null,
    normalize: options.normalize ?? false,
    mono: options.mono ?? false,
    track: options.track ?? 0,
    title: options.title ?? null,
    artist: options.artist ?? null,
    album: options.album ?? null,
    cover: options.cover ?? "frame",
    chapters: options.chapters ?? "keep",
  };
}

/** The names of the multipart fields, in the order the clients send them. */
export const OPTION_FIELDS = [
  "quality",
  "start",
  "end",
  "normalize",
  "mono",
  "track",
  "title",
  "artist",
  "album",
  "cover",
  "chapters",
] as const;
export type OptionField = (typeof OPTION_FIELDS)[number];

export const isOptionField = (name: string): name is OptionField =>
  (OPTION_FIELDS as readonly string[]).includes(name);

/** An option field with a value that cannot be used; `message` is a sentence naming the field. */
export class OptionError extends Error {
  override name = "OptionError";
  readonly field: OptionField;
  constructor(field: OptionField, message: string) {
    super(message);
    this.field = field;
  }
}

/**
 * `12.5` (seconds) or `[hh:]mm:ss[.fff]` (`1:00`, `01:02:03.250`) → seconds; undefined when it is
 * neither. Minutes may exceed 59 only when no hours are given (`90:00`).
 */
export function parsePosition(text: string): number | undefined {
  const value = text.trim();
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value);
  const match = /^(?:(\d+):)?(\d+):([0-5]\d)(\.\d{1,3})?$/.exec(value);
  if (!match) return undefined;
  const [, hours, minutes, seconds, fraction] = match;
  if (hours !== undefined && Number(minutes) > 59) return undefined;
  return Number(hours ?? 0) * 3600 + Number(minutes) * 60 + Number(seconds) + Number(fraction ?? 0);
}

/** `75.5` → `1:15.5`: how a position is shown back to the user. */
export function formatPosition(seconds: number): string {
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const rest = Math.round((seconds % 60) * 1000) / 1000;
  const secondsText = (rest < 10 ? "0" : "") + String(rest);
  return hours > 0
    ? `${hours}:${String(minutes).padStart(2, "0")}:${secondsText}`
    : `${minutes}:${secondsText}`;
}

const describe = (value: string): string =>
  JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);

function parseBoolean(field: OptionField, value: string): boolean {
  if (value === "true") return true;
  if (value === "false") return false;
  throw new OptionError(field, `The field "${field}" must be true or false (got ${describe(value)}).`);
}

function parseField(field: OptionField, raw: string): ConversionOptions {
  const value = raw.trim();
  switch (field) {
    case "quality": {
      const quality = value.toLowerCase();
      if (!(QUALITIES as readonly string[]).includes(quality)) {
        throw new OptionError(
          field,
          `The field "quality" must be v0 … v9 (VBR) or ${CBR_QUALITIES.join(", ")} (CBR), got ${describe(value)}.`,
        );
      }
      return { quality: quality as Quality };
    }
    case "start":
    case "end": {
      const seconds = parsePosition(value);
      if (seconds === undefined || seconds > MAX_POSITION_SECONDS) {
        throw new OptionError(
          field,
          `The field "${field}" must be a time in seconds (12.5) or [hh:]mm:ss[.fff] (1:02:03.5), got ${describe(value)}.`,
        );
      }
      if (field === "end" && seconds === 0) {
        throw new OptionError(
          field,
          `The field "end" must be after the very beginning (got ${describe(value)}).`,
        );
      }
      return { [field]: seconds };
    }
    case "normalize":
    case "mono":
      return { [field]: parseBoolean(field, value) };
    case "track": {
      if (/^\d{1,3}$/.test(value)) return { track: Number(value) };
      if (/^[a-z]{3}$/i.test(value)) return { track: value.toLowerCase() };
      throw new OptionError(
        field,
        `The field "track" must be an audio track's number, counted from 0, or a three-letter ISO 639-2 language code such as eng (got ${describe(value)}).`,
      );
    }
    case "title":
    case "artist":
    case "album": {
      if (/\p{Cc}/u.test(value)) {
        throw new OptionError(
          field,
          `The field "${field}" must not contain control characters or line breaks.`,
        );
      }
      if (Array.from(value).length > MAX_TAG_LENGTH) {
        throw new OptionError(field, `The field "${field}" is longer than ${MAX_TAG_LENGTH} characters.`);
      }
      return { [field]: value };
    }
    case "cover":
      if (value !== "frame" && value !== "none") {
        throw new OptionError(field, `The field "cover" must be frame or none (got ${describe(value)}).`);
      }
      return { cover: value };
    case "chapters":
      if (value !== "keep" && value !== "drop") {
        throw new OptionError(field, `The field "chapters" must be keep or drop (got ${describe(value)}).`);
      }
      return { chapters: value };
  }
}

/**
 * Reads the option fields of an upload (name → text). An empty field counts as not sent (an
 * empty form input). Throws an `OptionError` naming the first field that cannot be used.
 */
export function parseOptionFields(fields: ReadonlyMap<OptionField, string>): ConversionOptions {
  let options: ConversionOptions = {};
  for (const field of OPTION_FIELDS) {
    const value = fields.get(field);
    if (value === undefined || value.trim() === "") continue;
    options = { ...options, ...parseField(field, value) };
  }
  if (options.start !== undefined && options.end !== undefined && options.start >= options.end) {
    throw new OptionError(
      "end",
      `The field "end" (${formatPosition(options.end)}) must come after "start" (${formatPosition(options.start)}).`,
    );
  }
  return ConversionOptions.parse(options);
}
