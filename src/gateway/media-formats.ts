/**
 * Upload sniffing: the containers we accept, keyed by the extension `file-type` detects from the
 * first bytes, mapped to the ffmpeg demuxer the converter will force. A file's name and declared
 * Content-Type are never trusted; what is not in this table is answered 415.
 */
const demuxerByDetectedExtension: Record<string, string> = {
  mp4: "mov",
  m4v: "mov",
  m4a: "mov",
  m4b: "mov",
  m4p: "mov",
  mov: "mov",
  "3gp": "mov",
  "3g2": "mov",
  f4v: "mov",
  f4a: "mov",
  f4b: "mov",
  f4p: "mov",
  mj2: "mov",
  mkv: "matroska",
  webm: "matroska",
  avi: "avi",
  flv: "flv",
  mpg: "mpeg",
  mts: "mpegts",
  mxf: "mxf",
  asf: "asf",
  ogg: "ogg",
  ogv: "ogg",
  oga: "ogg",
  ogm: "ogg",
  ogx: "ogg",
  opus: "ogg",
  spx: "ogg",
  mp1: "mp3",
  mp2: "mp3",
  mp3: "mp3",
  aac: "aac",
  ac3: "ac3",
  flac: "flac",
  wav: "wav",
  aif: "aiff",
  amr: "amr",
  wv: "wv",
  ape: "ape",
  mpc: "mpc",
  voc: "voc",
  rm: "rm",
};

/** The ffmpeg demuxer for a detected container extension, or undefined when we do not convert it. */
export function demuxerFor(detectedExtension: string | undefined): string | undefined {
  // Own keys only: "constructor" or "__proto__" must not reach Object.prototype.
  return detectedExtension !== undefined && Object.hasOwn(demuxerByDetectedExtension, detectedExtension)
    ? demuxerByDetectedExtension[detectedExtension]
    : undefined;
}

export const acceptedExtensions: readonly string[] = Object.keys(demuxerByDetectedExtension);
