/**
 * Reads the stream listing ffmpeg prints on stderr when it opens an input:
 *
 *     Stream #0:0: Video: h264 (High), yuv420p, 160x120, 10 fps
 *     Stream #0:1[0x101](eng): Audio: mp3 (U[0][0][0] / 0x0055), 44100 Hz, stereo, fltp, 128 kb/s
 *
 * and tells the codec of the first audio stream, the one `-map 0:a:0` selects. Only used to pick
 * the faster path (copy an MP3 stream instead of re-encoding it), never for a security decision:
 * the listing contains text from the file (a stream's language tag, metadata keys), so a crafted
 * file could make a line look like another. Anything unusual (a stream line that is not of the
 * expected shape, a stream index twice or missing) makes the answer "unknown", i.e. encode as
 * always; and a wrong "mp3" only costs one failed copy attempt, since the mp3 muxer refuses any
 * stream that is not MP3 and the conversion then encodes (see `transcode`).
 */

/**
 * `Stream #0:<index>`, an optional `[0x<id>]`, an optional `(<language>)`, then `: <Type>: <codec>`.
 * The language is restricted to characters that cannot imitate the rest of the line.
 */
const STREAM_LINE = /^\s*Stream #0:(\d+)(?:\[0x[0-9a-f]+\])?(?:\([^\s():,]*\))?: (\w+): (\w+)(?:[\s,]|$)/;
const ANY_STREAM_LINE = /^\s*Stream #/;

export class StreamListing {
  private readonly streams = new Map<number, { type: string; codec: string }>();
  private doubtful = false;

  line(line: string): void {
    if (!ANY_STREAM_LINE.test(line)) return;
    const match = STREAM_LINE.exec(line);
    const index = Number(match?.[1]);
    if (!match || this.streams.has(index)) {
      this.doubtful = true;
      return;
    }
    this.streams.set(index, { type: match[2] ?? "", codec: match[3] ?? "" });
  }

  /** The codec name (`mp3`, `aac`, …) of the first audio stream, or null if none or unclear. */
  firstAudioCodec(): string | null {
    if (this.doubtful) return null;
    // ffmpeg lists every stream once, numbered from 0; anything else is not a listing we trust.
    for (let index = 0; index < this.streams.size; index++) if (!this.streams.has(index)) return null;
    for (let index = 0; index < this.streams.size; index++) {
      const stream = this.streams.get(index);
      if (stream?.type === "Audio") return stream.codec;
    }
    return null;
  }
}
