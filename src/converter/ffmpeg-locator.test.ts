import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { locateFfmpeg } from "./ffmpeg-locator.ts";

test("FFMPEG_PATH wins and reports the version line", async () => {
  const found = await locateFfmpeg("/usr/bin/ffmpeg");
  assert.equal(found.source, "FFMPEG_PATH");
  assert.equal(found.path, "/usr/bin/ffmpeg");
  assert.match(found.version, /^ffmpeg version /);
});

test("a FFMPEG_PATH that does not run is an error naming FFMPEG_PATH", async () => {
  await assert.rejects(locateFfmpeg("/nonexistent/ffmpeg"), /FFMPEG_PATH=\/nonexistent\/ffmpeg/);
});

test("a FFMPEG_PATH that runs but is not ffmpeg is rejected", async () => {
  await assert.rejects(
    locateFfmpeg("/bin/echo"),
    /FFMPEG_PATH=\/bin\/echo .*did not print an ffmpeg version/,
  );
});

test("without FFMPEG_PATH, ffmpeg on PATH comes next", { skip: !existsSync("/usr/bin/ffmpeg") }, async () => {
  const found = await locateFfmpeg(undefined, { pathEnv: "/nonexistent:/usr/bin" });
  assert.equal(found.source, "PATH");
  assert.equal(found.path, "/usr/bin/ffmpeg");
  assert.match(found.version, /^ffmpeg version /);
});

test("with no ffmpeg on PATH, the npm package's binary is the last resort", async () => {
  const found = await locateFfmpeg(undefined, { pathEnv: "/nonexistent" });
  assert.equal(found.source, "npm package @ffmpeg-installer/ffmpeg");
  assert.match(found.path, /@ffmpeg-installer/);
  assert.match(found.version, /^ffmpeg version /);
});
