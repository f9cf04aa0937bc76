/**
 * A conversion that failed because of the file itself. Retrying cannot fix it, so the job fails at
 * once, and the message is shown to the user as is: it must be a sentence a person can act on.
 * Anything else that goes wrong (ffmpeg missing, disk full) is an ordinary Error and is retried.
 */

export type ConversionFailure =
  | "no-audio"
  | "undecodable"
  | "unsupported-audio"
  | "too-long"
  | "timeout"
  | "no-such-track"
  | "trim-out-of-range";

export class ConversionError extends Error {
  override name = "ConversionError";
  readonly reason: ConversionFailure;

  constructor(reason: ConversionFailure, message: string, options?: ErrorOptions) {
    super(message, options);
    this.reason = reason;
  }

  static noAudio(): ConversionError {
    return new ConversionError(
      "no-audio",
      "This file has no audio track, so there is nothing to convert to MP3.",
    );
  }

  static undecodable(): ConversionError {
    return new ConversionError(
      "undecodable",
      "This file could not be decoded: it is damaged or not a supported video format.",
    );
  }

  static unsupportedAudio(): ConversionError {
    return new ConversionError(
      "unsupported-audio",
      "The audio in this file cannot be converted: its format parameters (such as the number of channels or the sample rate) are impossible or unsupported.",
    );
  }

  static tooLong(maxSeconds: number): ConversionError {
    return new ConversionError(
      "too-long",
      `The audio is longer than the limit of ${formatDuration(maxSeconds)} (MAX_AUDIO_SECONDS=${maxSeconds}); trim the file and upload it again.`,
    );
  }

  /** The `track` option names an audio stream the file does not have. */
  static noSuchTrack(
    track: number | string,
    audioTracks: number | undefined,
    languages: string[] = [],
  ): ConversionError {
    const has =
      audioTracks === undefined
        ? ""
        : audioTracks === 1
          ? " It has 1 audio track (number 0)."
          : ` It has ${audioTracks} audio tracks (numbered 0 to ${audioTracks - 1}).`;
    const which =
      typeof track === "number"
        ? `This file has no audio track number ${track} (tracks are counted from 0).`
        : `This file has no audio track in the language "${track}".`;
    const known = languages.length > 0 ? ` Its tracks' languages: ${languages.join(", ")}.` : "";
    return new ConversionError("no-such-track", `${which}${has}${known}`);
  }

  /** The `start` option lies at or after the end of the file. */
  static startBeyondEnd(start: string, duration: string): ConversionError {
    return new ConversionError(
      "trim-out-of-range",
      `The start (${start}) is not before the end of the file (${duration}), so nothing would be left to convert.`,
    );
  }

  static timeout(seconds: number): ConversionError {
    return new ConversionError(
      "timeout",
      `The conversion took longer than ${seconds} seconds and was stopped.`,
    );
  }
}

/** 5400 → "1 h 30 min", 90 → "1 min 30 s": a limit a person can read. */
function formatDuration(seconds: number): string {
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return [h && `${h} h`, m && `${m} min`, s && `${s} s`].filter(Boolean).join(" ") || "0 s";
}
