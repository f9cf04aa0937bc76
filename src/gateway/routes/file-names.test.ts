import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { mp3FileName } from "../jobs.ts";
import { cleanFileName } from "./upload.ts";

describe("cleanFileName", () => {
  test("keeps an ordinary name as it is", () => {
    assert.equal(cleanFileName("holiday.mp4"), "holiday.mp4");
    assert.equal(cleanFileName("My Holiday (2026).mp4"), "My Holiday (2026).mp4");
    assert.equal(cleanFileName("Ferien in Zürich – 日本.mkv"), "Ferien in Zürich – 日本.mkv");
  });

  test("strips path parts, Unix and Windows", () => {
    assert.equal(cleanFileName("../../etc/passwd"), "passwd");
    assert.equal(cleanFileName("/etc/passwd"), "passwd");
    assert.equal(cleanFileName("C:\\Users\\x\\a.mp4"), "a.mp4");
    assert.equal(cleanFileName("..\\..\\windows\\system32\\a.mp4"), "a.mp4");
    assert.equal(cleanFileName("dir/sub/"), "sub");
  });

  test("removes control characters", () => {
    assert.equal(cleanFileName("a\u0000b\nc\r\td\u001b[31m.mp4"), "abcd[31m.mp4");
    assert.equal(cleanFileName("bell\u0007\u007f\u0085.mp4"), "bell.mp4");
    assert.equal(cleanFileName('evil"\r\nSet-Cookie: x=1.mp4'), 'evil"Set-Cookie: x=1.mp4');
  });

  test("removes invisible characters: zero-width, soft hyphen, BOM, word joiner, line separators", () => {
    assert.equal(cleanFileName("in\u200Bvoice\u200C\u200D\u2060\uFEFF\u00AD.mp4"), "invoice.mp4");
    assert.equal(cleanFileName("a\u2028b\u2029c.mp4"), "abc.mp4");
    assert.equal(cleanFileName("\u200B\u200B"), "upload");
  });

  test("decodes the quote a browser or curl escaped as %22, and drops escaped line breaks", () => {
    assert.equal(cleanFileName("The %22Best%22 Talk.mp4"), 'The "Best" Talk.mp4');
    assert.equal(cleanFileName("a%0D%0Ab.mp4"), "ab.mp4");
  });

  test("an empty or meaningless name becomes upload", () => {
    for (const name of [undefined, "", "   ", ".", "..", "/", "../", "\u0000\u0001"]) {
      assert.equal(cleanFileName(name), "upload", JSON.stringify(name));
    }
  });

  test("a very long name is bounded to 255 bytes", () => {
    for (const name of ["a".repeat(10_000), `${"b".repeat(300)}.mp4`, "é".repeat(300), "😀".repeat(300)]) {
      const cleaned = cleanFileName(name);
      assert.ok(cleaned.length > 0);
      assert.ok(Buffer.byteLength(cleaned) <= 255, `${Buffer.byteLength(cleaned)} bytes`);
      assert.ok(name.startsWith(cleaned), "a prefix of the original");
      // No half of a surrogate pair left at the cut: the name survives a UTF-8 round trip.
      assert.equal(Buffer.from(cleaned).toString(), cleaned);
    }
    assert.equal(cleanFileName("x".repeat(255)), "x".repeat(255), "255 bytes fit as they are");
  });
});

describe("mp3FileName", () => {
  test("replaces the last extension with .mp3", () => {
    assert.equal(mp3FileName("holiday.mov"), "holiday.mp3");
    assert.equal(mp3FileName("a.b.mov"), "a.b.mp3");
    assert.equal(mp3FileName("My Holiday (2026).mp4"), "My Holiday (2026).mp3");
    assert.equal(mp3FileName("song.mp3"), "song.mp3");
  });

  test("a name without extension gets one", () => {
    assert.equal(mp3FileName("upload"), "upload.mp3");
    assert.equal(mp3FileName("clip."), "clip.mp3");
  });

  test("never answers a bare extension", () => {
    assert.equal(mp3FileName(""), "audio.mp3");
    assert.ok(mp3FileName(".mp4").length > ".mp3".length);
  });
});
