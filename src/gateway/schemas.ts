import { DEFAULT_QUALITY, MAX_TAG_LENGTH, QUALITIES } from "../contracts/options.ts";

/**
 * The upload's option fields (multipart text fields, before the file) as the OpenAPI document
 * shows them: text, as sent, before `parseOptionFields` (src/contracts/options.ts) reads them. The
 * gateway's answers are contracts (src/contracts/jobs.ts).
 */
export const uploadFieldsSchema = {
  quality: {
    type: "string",
    enum: [...QUALITIES],
    default: DEFAULT_QUALITY,
    description: "LAME VBR v0 (best) … v9, or CBR",
  },
  start: {
    type: "string",
    examples: ["12.5", "1:00", "01:02:03.250"],
    description: "Where the MP3 begins: seconds or [hh:]mm:ss[.fff]",
  },
  end: {
    type: "string",
    examples: ["2:30"],
    description: "Where it ends (after start): seconds or [hh:]mm:ss[.fff]",
  },
  normalize: {
    type: "string",
    enum: ["true", "false"],
    default: "false",
    description: "EBU R128 to −16 LUFS, true peak ≤ −1.5 dBTP (two passes)",
  },
  mono: { type: "string", enum: ["true", "false"], default: "false", description: "One channel" },
  track: {
    type: "string",
    examples: ["0", "1", "eng"],
    default: "0",
    description: "The audio stream: 0-based index among the audio streams, or an ISO 639-2 language code",
  },
  title: {
    type: "string",
    maxLength: MAX_TAG_LENGTH,
    description: "ID3 title; default the source's, else the file name",
  },
  artist: { type: "string", maxLength: MAX_TAG_LENGTH, description: "ID3 artist; default the source's" },
  album: { type: "string", maxLength: MAX_TAG_LENGTH, description: "ID3 album; default the source's" },
  cover: {
    type: "string",
    enum: ["frame", "none"],
    default: "frame",
    description: "frame: a representative frame of the video as the front cover",
  },
  chapters: {
    type: "string",
    enum: ["keep", "drop"],
    default: "keep",
    description: "keep: the source's chapters as ID3 chapter frames, shifted and cut to start/end",
  },
} as const;
