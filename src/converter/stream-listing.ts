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
const STREAM_LINE = /^\s*Stream #0:(\d+)(?:\[0x[0-9a-f]+\])?(?:\(([^\s():,]*)\))?: (\w+): (\w+)(?:[\s,]|$)/;
const ANY_STREAM_LINE = /^\s*Stream #/;

/** One audio stream of the input, in the order `-map 0:a:<n>` counts them. */
export interface AudioStream {
  codec: string;
  /** The ISO 639 language tag, lower case, or null when the stream has none (`und` counts as none). */
  language: string | null;
  /** Samples per second, when listed. */
  sampleRate: number | null;
}

/** A chapter of the input, in seconds. */
export interface Chapter {
  start: number;
  end: number;
  title: string | undefined;
}

interface ListedStream {
  type: string;
  codec: string;
  language: string | null;
  sampleRate: number | null;
  attachedPicture: boolean;
}

/**
 * The stream listing, plus two facts from the lines around it used to shape the output: the
 * input's duration (where a trim may start) and whether the file has a title of its own (else the
 * file name becomes the title). Neither is a security decision.
 */
export class StreamListing {
  private readonly streams = new Map<number, ListedStream>();
  private doubtful = false;
  /** The input's duration from its `Duration:` line, if it tells one. */
  durationSeconds: number | undefined;
  /** True when the input's own (global) metadata has a title. */
  hasTitle = false;
  private inGlobalMetadata = false;
  /** The input's chapters, in the order listed. */
  readonly chapters: Chapter[] = [];

  line(line: string): void {
    this.readHeader(line);
    if (!ANY_STREAM_LINE.test(line)) return;
    const match = STREAM_LINE.exec(line);
    const index = Number(match?.[1]);
    if (!match || this.streams.has(index)) {
      this.doubtful = true;
      return;
    }
    const language = match[2]?.toLowerCase() || null;
    const sampleRate = /, (\d+) Hz(?:,|$)/.exec(line)?.[1];
    this.streams.set(index, {
      type: match[3] ?? "",
      codec: match[4] ?? "",
      language: language === "und" ? null : language,
      sampleRate: sampleRate === undefined ? null : Number(sampleRate),
      attachedPicture: /\(attached pic\)\s*$/.test(line),
    });
  }

  /**
   * `  Metadata:` right under `Input #0` opens the file's own tags (four spaces in), up to the
   * `  Duration:` line; streams' and chapters' tags are indented further.
   */
  private readHeader(line: string): void {
    if (/^Input #0,/.test(line)) {
      this.inGlobalMetadata = false;
      return;
    }
    if (line === "  Metadata:" && this.streams.size === 0 && this.durationSeconds === undefined) {
      this.inGlobalMetadata = true;
      return;
    }
    if (this.inGlobalMetadata) {
      if (/^ {4}title\s*: \S/i.test(line)) this.hasTitle = true;
      else if (!/^ {4}/.test(line)) this.inGlobalMetadata = false;
    }
    const chapter = /^ {4}Chapter #0:\d+: start (-?\d+(?:\.\d+)?), end (-?\d+(?:\.\d+)?)$/.exec(line);
    if (chapter) this.chapters.push({ start: Number(chapter[1]), end: Number(chapter[2]), title: undefined });
    const title = /^ {8}title\s*: (.*)$/.exec(line);
    const last = this.chapters.at(-1);
    if (title && last && last.title === undefined && this.streams.size === 0) last.title = title[1];
    if (this.durationSeconds === undefined) {
      const match = /^\s*Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)/.exec(line);
      if (match) this.durationSeconds = Number(match[1]) * 3600 + Number(match[2]) * 60 + Number(match[3]);
    }
  }

  /** Every stream, by index, or null when the listing is not one we trust. */
  private ordered(): ListedStream[] | null {
    // No listing at all: ffmpeg could not open the file, which the conversion then explains.
    if (this.doubtful || this.streams.size === 0) return null;
    // ffmpeg lists every stream once, numbered from 0; anything else is not a listing we trust.
    const ordered: ListedStream[] = [];
    for (let index = 0; index < this.streams.size; index++) {
      const stream = this.streams.get(index);
      if (!stream) return null;
      ordered.push(stream);
    }
    return ordered;
  }

  /** The audio streams in `0:a:<n>` order (empty for none), or null if there is no listing we trust. */
  audioStreams(): AudioStream[] | null {
    const streams = this.ordered();
    if (!streams) return null;
    return streams
      .filter((stream) => stream.type === "Audio")
      .map(({ codec, language, sampleRate }) => ({ codec, language, sampleRate }));
  }

  /** The codec name (`mp3`, `aac`, …) of the first audio stream, or null if none or unclear. */
  firstAudioCodec(): string | null {
    return this.audioStreams()?.[0]?.codec ?? null;
  }

  /**
   * Where a cover can come from: `moving` for a real video stream (`-map 0:V:0`), `attached` for
   * only an attached picture (an album's cover art, `-map 0:v:0`), null for no picture at all.
   */
  pictureSource(): "moving" | "attached" | null {
    const videos = [...this.streams.values()].filter((stream) => stream.type === "Video");
    if (videos.some((stream) => !stream.attachedPicture)) return "moving";
    return videos.length > 0 ? "attached" : null;
  }
}
