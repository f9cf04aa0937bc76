import path from "node:path";
import { type ConversionOptions, formatPosition } from "../contracts/options.ts";
import { ConversionError } from "./conversion-error.ts";
import type { OutputPlan } from "./ffmpeg-args.ts";
import type { AudioStream, Chapter, StreamListing } from "./stream-listing.ts";

/**
 * Resolves the user's options against what the probe saw in the file: the audio stream a
 * `track` names (by number or language), the trim against the file's length, the title when
 * neither the user nor the file gives one. What cannot be honoured fails the job with a sentence
 * (`ConversionError`); nothing is guessed.
 */
export function planOutput(
  listing: StreamListing,
  options: ConversionOptions,
  fileName: string | undefined,
): {
  plan: OutputPlan;
  /** The chosen stream's codec (`mp3` can be copied), null when unclear. */
  sourceCodec: string | null;
  /** The output's length for an input of `inputSeconds` (undefined when that is unknown). */
  outputSeconds: (inputSeconds: number | undefined) => number | undefined;
  /** For a trimmed output, the chapters shifted and cut to the range (`ffmetadataChapters`). */
  chapters: Chapter[] | undefined;
} {
  const streams = listing.audioStreams();
  if (streams?.length === 0) throw ConversionError.noAudio();
  const audioStream = resolveTrack(options.track, streams);

  const start = options.start;
  const duration = listing.durationSeconds;
  if (start !== undefined && duration !== undefined && start >= duration) {
    throw ConversionError.startBeyondEnd(formatPosition(start), formatPosition(duration));
  }
  const outputSeconds = (inputSeconds: number | undefined): number | undefined => {
    const end = Math.min(options.end ?? Number.POSITIVE_INFINITY, inputSeconds ?? Number.POSITIVE_INFINITY);
    return Number.isFinite(end) ? Math.max(0, end - (start ?? 0)) : undefined;
  };

  const trimmed = start !== undefined || options.end !== undefined;
  const title = options.title ?? (listing.hasTitle ? undefined : titleFromFileName(fileName));
  const stream = streams?.[audioStream];
  return {
    plan: {
      audioStream,
      quality: options.quality,
      start,
      end: options.end,
      mono: options.mono,
      sampleRate: mp3SampleRate(stream?.sampleRate),
      tags: { title, artist: options.artist, album: options.album },
      chapters: options.chapters !== "drop",
    },
    sourceCodec: stream?.codec ?? null,
    outputSeconds,
    chapters:
      trimmed && options.chapters !== "drop"
        ? cutChapters(listing.chapters, start ?? 0, options.end)
        : undefined,
  };
}

/** Chapters moved to start at `start` and cut at `end`; those left with no length are dropped. */
function cutChapters(chapters: readonly Chapter[], start: number, end: number | undefined): Chapter[] {
  const last = (end ?? Number.POSITIVE_INFINITY) - start;
  return chapters
    .map((chapter) => ({
      title: chapter.title,
      start: Math.max(0, chapter.start - start),
      end: Math.min(last, chapter.end - start),
    }))
    .filter((chapter) => chapter.end - chapter.start >= 0.001);
}

/** An FFMETADATA document of chapters only (times in milliseconds; `=;#\` and newlines escaped). */
export function ffmetadataChapters(chapters: readonly Chapter[]): string {
  const escaped = (text: string) => text.replace(/[=;#\\\n]/g, (char) => `\\${char}`);
  return [
    ";FFMETADATA1",
    ...chapters.flatMap((chapter) => [
      "[CHAPTER]",
      "TIMEBASE=1/1000",
      `START=${Math.round(chapter.start * 1000)}`,
      `END=${Math.round(chapter.end * 1000)}`,
      ...(chapter.title === undefined ? [] : [`title=${escaped(chapter.title)}`]),
    ]),
    "",
  ].join("\n");
}

/** `holiday.mov` → `holiday`. */
function titleFromFileName(fileName: string | undefined): string | undefined {
  if (!fileName) return undefined;
  return path.parse(fileName).name || undefined;
}

/** The sample rates MP3 has; any other is resampled to 44.1 kHz. */
const MP3_SAMPLE_RATES = new Set([8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000]);
const mp3SampleRate = (rate: number | null | undefined): number =>
  rate && MP3_SAMPLE_RATES.has(rate) ? rate : 44100;

/**
 * ISO 639-2 has two codes for some languages (bibliographic `fre`, terminological `fra`); files
 * carry either, so both find the track.
 */
const LANGUAGE_TWINS: Record<string, string> = Object.fromEntries(
  [
    ["alb", "sqi"],
    ["arm", "hye"],
    ["baq", "eus"],
    ["bur", "mya"],
    ["chi", "zho"],
    ["cze", "ces"],
    ["dut", "nld"],
    ["fre", "fra"],
    ["geo", "kat"],
    ["ger", "deu"],
    ["gre", "ell"],
    ["ice", "isl"],
    ["mac", "mkd"],
    ["mao", "mri"],
    ["may", "msa"],
    ["per", "fas"],
    ["rum", "ron"],
    ["slo", "slk"],
    ["tib", "bod"],
    ["wel", "cym"],
  ].flatMap(([b, t]) => [
    [b, t],
    [t, b],
  ]),
);

/** The `0:a:<n>` of the track option; the first audio stream by default. */
function resolveTrack(track: ConversionOptions["track"], streams: AudioStream[] | null): number {
  if (track === undefined) return 0;
  const languages = [...new Set((streams ?? []).map((s) => s.language).filter((l) => l !== null))];
  if (typeof track === "number") {
    // Without a listing we trust, ffmpeg's own "matches no streams" tells a missing track.
    if (streams && track >= streams.length)
      throw ConversionError.noSuchTrack(track, streams.length, languages);
    return track;
  }
  if (!streams) {
    throw new ConversionError(
      "no-such-track",
      `The languages of this file's audio tracks could not be read, so the track "${track}" cannot be found; choose the track by its number instead.`,
    );
  }
  const index = streams.findIndex((s) => s.language === track || s.language === LANGUAGE_TWINS[track]);
  if (index === -1) throw ConversionError.noSuchTrack(track, streams.length, languages);
  return index;
}
