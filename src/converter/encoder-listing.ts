import type { PcmFormat } from "./ffmpeg-args.ts";

/**
 * Reads what a running conversion's encoder was set up with, from the output listing ffmpeg
 * prints once the first audio has gone through the filters:
 *
 *     Output #0, mp3, to 'file:/data/tmp/converter/x.mp3':
 *       Metadata:
 *         TSSE            : Lavf59.27.100
 *       Stream #0:0(und): Audio: mp3, 48000 Hz, stereo, fltp (default)
 *
 * That is the sample rate and channel count a segmented encode must produce to equal this run,
 * whatever the options and filters decided. Only the first line after `Output #0` that looks like
 * an audio stream counts; a metadata value cannot imitate it (ffmpeg indents continuation lines
 * of a value behind its key). A wrong answer cannot harm the file either: a segmented encode
 * compares it with the header frame its own encoder writes and gives up on any difference.
 */

const OUTPUT_START = /^Output #0, /;
const AUDIO_STREAM =
  /^\s*Stream #0:\d+(?:\([a-z]{0,8}\))?: Audio: mp3\b[^,]*, (\d+) Hz, (mono|stereo)(?:,|$)/;

export class EncoderListing {
  private inOutput = false;
  private found: PcmFormat | null | undefined;

  /** Feeds one stderr line; true once the encoder's format is known (or known to be unusable). */
  line(line: string): boolean {
    if (this.found !== undefined) return true;
    if (OUTPUT_START.test(line)) {
      this.inOutput = true;
      return false;
    }
    if (!this.inOutput || !/^\s*Stream #/.test(line)) return false;
    const match = AUDIO_STREAM.exec(line);
    this.found = match ? { sampleRate: Number(match[1]), channels: match[2] === "mono" ? 1 : 2 } : null;
    return true;
  }

  /** The encoder's input format, or null when not (yet) known or not one we can produce. */
  format(): PcmFormat | null {
    return this.found ?? null;
  }
}
