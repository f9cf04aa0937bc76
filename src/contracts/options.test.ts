import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { VideoMessage } from "./messages.ts";
import {
  appliedOptions,
  ConversionOptions,
  formatPosition,
  OptionError,
  type OptionField,
  parseOptionFields,
  parsePosition,
} from "./options.ts";

const parse = (fields: Record<string, string>) =>
  parseOptionFields(new Map(Object.entries(fields) as [OptionField, string][]));

/** Asserts that the fields are refused with an OptionError naming `field`. */
function refused(fields: Record<string, string>, field: OptionField, message?: RegExp): void {
  assert.throws(
    () => parse(fields),
    (error) =>
      error instanceof OptionError &&
      error.field === field &&
      error.message.includes(`"${field}"`) &&
      (message === undefined || message.test(error.message)),
    JSON.stringify(fields),
  );
}

describe("positions", () => {
  test("seconds or [hh:]mm:ss[.fff]", () => {
    assert.equal(parsePosition("12.5"), 12.5);
    assert.equal(parsePosition("0"), 0);
    assert.equal(parsePosition("1:00"), 60);
    assert.equal(parsePosition("2:30"), 150);
    assert.equal(parsePosition("90:00"), 5400, "minutes past 59 without hours");
    assert.equal(parsePosition("01:02:03.250"), 3723.25);
    assert.equal(parsePosition(" 0:05.5 "), 5.5);
    for (const bad of [
      "",
      "1:",
      "1:60",
      "1:2",
      "1:02:60",
      "1:60:00",
      "-1",
      "1e3",
      "12,5",
      "abc",
      "0:05.1234",
    ]) {
      assert.equal(parsePosition(bad), undefined, bad);
    }
  });

  test("shown back as [h:]m:ss", () => {
    assert.equal(formatPosition(75.5), "1:15.5");
    assert.equal(formatPosition(3723.25), "1:02:03.25");
    assert.equal(formatPosition(7), "0:07");
  });
});

describe("option fields", () => {
  test("every field, read into the options", () => {
    assert.deepEqual(
      parse({
        quality: "320K",
        start: "1:00",
        end: "150.5",
        normalize: "true",
        mono: "false",
        track: "ENG",
        title: "  A title  ",
        artist: "Ärtist",
        album: "Album",
        cover: "none",
        chapters: "drop",
      }),
      {
        quality: "320k",
        start: 60,
        end: 150.5,
        normalize: true,
        mono: false,
        track: "eng",
        title: "A title",
        artist: "Ärtist",
        album: "Album",
        cover: "none",
        chapters: "drop",
      },
    );
    assert.deepEqual(parse({ track: "2", quality: "v0" }), { track: 2, quality: "v0" });
  });

  test("none, or empty ones, are no options at all", () => {
    assert.deepEqual(parse({}), {});
    assert.deepEqual(parse({ title: "", start: "  " }), {});
  });

  test("a value that cannot be used is refused with a sentence naming its field", () => {
    refused({ quality: "v10" }, "quality", /v0 … v9.*128k, 160k, 192k, 256k, 320k/);
    refused({ quality: "300k" }, "quality");
    refused({ start: "soon" }, "start", /seconds.*\[hh:\]mm:ss/);
    refused({ end: "1:75" }, "end");
    refused({ end: "0" }, "end");
    refused({ start: "999999" }, "start");
    refused({ normalize: "yes" }, "normalize", /true or false/);
    refused({ mono: "1" }, "mono");
    refused({ track: "english" }, "track", /ISO 639-2/);
    refused({ track: "-1" }, "track");
    refused({ title: "two\nlines" }, "title", /control characters/);
    refused({ artist: "x".repeat(256) }, "artist", /255/);
    refused({ cover: "first" }, "cover", /frame or none/);
    refused({ chapters: "yes" }, "chapters", /keep or drop/);
  });

  test("start must come before end", () => {
    refused({ start: "2:30", end: "1:00" }, "end", /"end" \(1:00\) must come after "start" \(2:30\)/);
    refused({ start: "5", end: "5" }, "end");
    assert.deepEqual(parse({ start: "4.999", end: "5" }), { start: 4.999, end: 5 });
  });
});

test("the job shows every default for the options not chosen", () => {
  assert.deepEqual(appliedOptions(), {
    quality: "v2",
    start: null,
    end: null,
    normalize: false,
    mono: false,
    track: 0,
    title: null,
    artist: null,
    album: null,
    cover: "frame",
    chapters: "keep",
  });
  assert.equal(appliedOptions({ quality: "128k" }).quality, "128k");
});

test("queue messages: options are validated, and a message without them (an older gateway's) is still valid", () => {
  const message = {
    version: 1,
    jobId: "0b6c8e43-2b1f-4c61-9d5e-2f1f5b0f7a11",
    videoKey: "videos/0b6c8e43-2b1f-4c61-9d5e-2f1f5b0f7a11",
    mp3Id: "5d2a0b0e-8f7c-4f35-a7c1-4a5c6f1d2e3b",
    fileName: "clip.mp4",
    format: "mov",
    owner: { id: "u1", email: "a@example.com" },
  };
  assert.equal(VideoMessage.safeParse(message).success, true);
  assert.equal(
    VideoMessage.safeParse({ ...message, options: { quality: "320k", start: 1, end: 2 } }).success,
    true,
  );
  for (const options of [{ quality: "loud" }, { start: 3, end: 2 }, { track: -1 }, { cover: "yes" }]) {
    assert.equal(VideoMessage.safeParse({ ...message, options }).success, false, JSON.stringify(options));
  }
  assert.equal(ConversionOptions.safeParse({ title: "x".repeat(256) }).success, false);
});
