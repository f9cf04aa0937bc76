import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { crc32 } from "node:zlib";
import { fileTypeFromFile } from "file-type";
import { acceptedExtensions, demuxerFor } from "./media-formats.ts";

const run = promisify(execFile);

/** Small real media, one per container, each with a short tone (and a picture for the video ones). */
const samples: { name: string; video: boolean; codecs: string[] }[] = [
  { name: "clip.mp4", video: true, codecs: ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"] },
  { name: "clip.mov", video: true, codecs: ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"] },
  { name: "clip.mkv", video: true, codecs: ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"] },
  {
    name: "clip.webm",
    video: true,
    codecs: ["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus"],
  },
  { name: "clip.avi", video: true, codecs: ["-c:v", "mpeg4", "-c:a", "libmp3lame"] },
  { name: "clip.ts", video: true, codecs: ["-c:v", "mpeg2video", "-c:a", "mp2", "-f", "mpegts"] },
  { name: "tone.mp3", video: false, codecs: ["-c:a", "libmp3lame"] },
  { name: "tone.wav", video: false, codecs: ["-c:a", "pcm_s16le"] },
  { name: "tone.flac", video: false, codecs: ["-c:a", "flac"] },
  { name: "tone.ogg", video: false, codecs: ["-c:a", "libvorbis"] },
];

let dir: string;
const file = (name: string) => path.join(dir, name);

async function makeSample(sample: (typeof samples)[number]): Promise<void> {
  const inputs = ["-f", "lavfi", "-i", "sine=frequency=440:duration=0.5"];
  if (sample.video) inputs.push("-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=0.5");
  await run("ffmpeg", ["-nostdin", "-v", "error", "-y", ...inputs, ...sample.codecs, file(sample.name)]);
}

/** A real ZIP archive with one stored entry, written byte by byte (no zip tool needed). */
function zipArchive(entryName: string, content: string): Buffer {
  const name = Buffer.from(entryName);
  const data = Buffer.from(content);
  const crc = crc32(data);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0);
  local.writeUInt16LE(10, 4); // version needed
  local.writeUInt32LE(crc, 14);
  local.writeUInt32LE(data.length, 18);
  local.writeUInt32LE(data.length, 22);
  local.writeUInt16LE(name.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0);
  central.writeUInt16LE(20, 4);
  central.writeUInt16LE(10, 6);
  central.writeUInt32LE(crc, 16);
  central.writeUInt32LE(data.length, 20);
  central.writeUInt32LE(data.length, 24);
  central.writeUInt16LE(name.length, 28);
  const centralOffset = local.length + name.length + data.length;
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(1, 8);
  end.writeUInt16LE(1, 10);
  end.writeUInt32LE(central.length + name.length, 12);
  end.writeUInt32LE(centralOffset, 16);
  return Buffer.concat([local, name, data, central, name, end]);
}

const minimalPdf = `%PDF-1.4
1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj
2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj
trailer << /Root 1 0 R >>
%%EOF
`;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "vid2mp3-formats-"));
  await Promise.all([
    ...samples.map(makeSample),
    run("ffmpeg", [
      ...["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=red:size=16x16"],
      ...["-frames:v", "1", file("picture.png")],
    ]),
    writeFile(file("notes.mp4"), "these are my notes, not a video\n".repeat(200)),
    writeFile(file("document.pdf"), minimalPdf),
    writeFile(file("archive.zip"), zipArchive("hello.txt", "hello, world\n")),
  ]);
});
after(() => rm(dir, { recursive: true, force: true }));

describe("sniffing real files", () => {
  for (const sample of samples) {
    test(`${sample.name} is detected and ffmpeg reads its audio with the mapped demuxer`, async () => {
      const detected = await fileTypeFromFile(file(sample.name));
      const demuxer = demuxerFor(detected?.ext);
      assert.ok(demuxer, `no demuxer for ${sample.name} (detected ${JSON.stringify(detected)})`);
      // As the converter will: the demuxer forced, the first audio stream mapped explicitly.
      await run("ffmpeg", [
        ...["-nostdin", "-v", "error", "-protocol_whitelist", "file", "-f", demuxer],
        ...["-i", file(sample.name), "-map", "0:a:0", "-f", "null", "-"],
      ]);
    });
  }

  test("the detected containers map to the expected demuxers", async () => {
    const expected: Record<string, string> = {
      "clip.mp4": "mov",
      "clip.mov": "mov",
      "clip.mkv": "matroska",
      "clip.webm": "matroska",
      "clip.avi": "avi",
      "clip.ts": "mpegts",
      "tone.mp3": "mp3",
      "tone.wav": "wav",
      "tone.flac": "flac",
      "tone.ogg": "ogg",
    };
    for (const [name, demuxer] of Object.entries(expected)) {
      const detected = await fileTypeFromFile(file(name));
      assert.equal(demuxerFor(detected?.ext), demuxer, `${name} (detected ${detected?.ext})`);
    }
  });

  for (const name of ["notes.mp4", "picture.png", "document.pdf", "archive.zip"]) {
    test(`${name} is not a container we convert`, async () => {
      const detected = await fileTypeFromFile(file(name));
      assert.equal(demuxerFor(detected?.ext), undefined, `detected ${JSON.stringify(detected)}`);
    });
  }

  test("the non-media samples are really what they claim (so the test above means something)", async () => {
    assert.equal(await fileTypeFromFile(file("notes.mp4")), undefined);
    assert.equal((await fileTypeFromFile(file("picture.png")))?.ext, "png");
    assert.equal((await fileTypeFromFile(file("document.pdf")))?.ext, "pdf");
    assert.equal((await fileTypeFromFile(file("archive.zip")))?.ext, "zip");
  });
});

describe("demuxerFor", () => {
  test("undefined and unknown extensions give undefined", () => {
    assert.equal(demuxerFor(undefined), undefined);
    for (const ext of ["png", "pdf", "zip", "exe", "txt", "", "constructor", "toString", "__proto__"]) {
      assert.equal(demuxerFor(ext), undefined, ext);
    }
  });

  test("every demuxer in the table is one this ffmpeg has", async () => {
    const { stdout } = await run("ffmpeg", ["-hide_banner", "-demuxers"]);
    const available = new Set<string>();
    for (const line of stdout.split("\n")) {
      const match = /^\s*D\S*\s+(\S+)/.exec(line);
      for (const name of match?.[1]?.split(",") ?? []) available.add(name);
    }
    assert.ok(available.has("mov"), "parsed ffmpeg's demuxer list");
    for (const ext of acceptedExtensions) {
      const demuxer = demuxerFor(ext);
      assert.ok(demuxer && available.has(demuxer), `${ext} → ${demuxer} is not an ffmpeg demuxer`);
      assert.match(demuxer, /^[a-z0-9_]+$/, "fits the VideoMessage format field");
    }
  });
});
