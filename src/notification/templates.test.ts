import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { failedMessage, jobId, mp3Id, readyMessage } from "../../test/support/mp3-messages.ts";
import { formatDuration, renderFailedMail, renderMail, renderReadyMail } from "./templates.ts";

const evil = "<script>alert(1)</script>\r\nBcc: x@y";

describe("ready mail", () => {
  it("addresses the owner with a stable id and names the file", () => {
    const mail = renderReadyMail(readyMessage(), "https://mp3.example");
    assert.equal(mail.id, `${jobId}-ready`);
    assert.equal(mail.to, "ada@example.com");
    assert.equal(mail.subject, "Your MP3 is ready: holiday.mp4");
  });

  it("gives the web link, the fid, the duration and the curl command in both parts", () => {
    const mail = renderReadyMail(readyMessage(), "https://mp3.example/");
    const link = `https://mp3.example/?fid=${mp3Id}`;
    const curl = `curl -OJ -H "Authorization: Bearer $TOKEN" "https://mp3.example/download?fid=${mp3Id}"`;

    assert.ok(mail.text.includes(link), mail.text);
    assert.ok(mail.text.includes(curl), mail.text);
    assert.match(mail.text, new RegExp(`MP3 id: ${mp3Id}`));
    assert.match(mail.text, /Length: 3:25/);
    assert.match(mail.text, /"holiday\.mp4"/);

    assert.ok(mail.html.includes(`href="${link}"`), mail.html);
    assert.ok(
      mail.html.includes(
        `curl -OJ -H &quot;Authorization: Bearer $TOKEN&quot; &quot;https://mp3.example/download?fid=${mp3Id}&quot;`,
      ),
      mail.html,
    );
    assert.match(mail.html, /3:25/);
    assert.ok(mail.html.includes(mp3Id));
  });

  it("leaves the length out when the duration is unknown", () => {
    const mail = renderReadyMail(readyMessage({ durationSeconds: null }), "http://localhost:8080");
    assert.doesNotMatch(mail.text, /Length/);
    assert.doesNotMatch(mail.html, /Length/);
    assert.ok(mail.text.includes(`http://localhost:8080/?fid=${mp3Id}`));
  });

  it("neutralises an evil file name", () => {
    const mail = renderReadyMail(readyMessage({ fileName: evil }), "https://mp3.example");
    assert.doesNotMatch(mail.subject, /[\r\n]/);
    assert.equal(mail.subject, "Your MP3 is ready: <script>alert(1)</script> Bcc: x@y");
    assert.doesNotMatch(mail.html, /<script>/);
    assert.ok(mail.html.includes("&lt;script&gt;alert(1)&lt;/script&gt; Bcc: x@y"), mail.html);
    assert.doesNotMatch(mail.text, /\r/);
    assert.doesNotMatch(mail.text, /^Bcc:/m, "no forged line in the text part");
  });

  it("shortens a very long file name in the subject only", () => {
    const long = `${"é".repeat(200)}.mp4`;
    const mail = renderReadyMail(readyMessage({ fileName: long }), "https://mp3.example");
    assert.equal(Array.from(mail.subject.replace("Your MP3 is ready: ", "")).length, 80);
    assert.ok(mail.subject.endsWith("…"));
    assert.ok(mail.text.includes(long));
  });
});

describe("failed mail", () => {
  it("names the file, gives the reason and suggests another file", () => {
    const mail = renderFailedMail(failedMessage(), "https://mp3.example");
    assert.equal(mail.id, `${jobId}-failed`);
    assert.equal(mail.to, "ada@example.com");
    assert.equal(mail.subject, "Your conversion failed: holiday.mp4");
    for (const part of [mail.text, mail.html]) {
      assert.match(part, /holiday\.mp4/);
      assert.match(part, /The file has no audio track\./);
      assert.match(part, /try another file/);
    }
    assert.ok(mail.html.includes('href="https://mp3.example/"'));
  });

  it("escapes the file name and the reason", () => {
    const mail = renderFailedMail(
      failedMessage({ fileName: evil, error: `ffmpeg: ${evil}` }),
      "https://mp3.example",
    );
    assert.doesNotMatch(mail.subject, /[\r\n]/);
    assert.doesNotMatch(mail.html, /<script>/);
    assert.doesNotMatch(mail.text, /^Bcc:/m);
    assert.ok(mail.html.includes("ffmpeg: &lt;script&gt;"));
  });
});

describe("renderMail", () => {
  it("picks the template by outcome", () => {
    assert.equal(renderMail(readyMessage(), "https://mp3.example").id, `${jobId}-ready`);
    assert.equal(renderMail(failedMessage(), "https://mp3.example").id, `${jobId}-failed`);
  });
});

describe("formatDuration", () => {
  it("formats like a player", () => {
    assert.equal(formatDuration(0), "0:00");
    assert.equal(formatDuration(59.6), "1:00");
    assert.equal(formatDuration(205), "3:25");
    assert.equal(formatDuration(3723), "1:02:03");
  });
});
