/**
 * A conversion that failed because of the file itself. Retrying cannot fix it, so the job fails at
 * once, and the message is shown to the user as is: it must be a sentence a person can act on.
 * Anything else that goes wrong (ffmpeg missing, disk full) is an ordinary Error and is retried.
 */

export type ConversionFailure = "no-audio" | "undecodable" | "timeout";

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

  static timeout(seconds: number): ConversionError {
    return new ConversionError(
      "timeout",
      `The conversion took longer than ${seconds} seconds and was stopped.`,
    );
  }
}
