import type { Mp3Message } from "../contracts/messages.ts";
import type { Mail } from "../platform/mail/mailer.ts";

/**
 * The two mails the notification service sends, as pure functions of the queue message and the
 * public base URL. File names and error texts come from users and ffmpeg, so they are untrusted:
 * flattened to one line everywhere (no forged paragraphs in the text part, no header injection in
 * the subject) and HTML-escaped in the HTML part.
 */

export type ReadyMessage = Extract<Mp3Message, { outcome: "done" }>;
export type FailedMessage = Extract<Mp3Message, { outcome: "failed" }>;

export function renderMail(message: Mp3Message, publicUrl: string): Mail {
  return message.outcome === "done"
    ? renderReadyMail(message, publicUrl)
    : renderFailedMail(message, publicUrl);
}

/** "Your MP3 is ready": where to get it in the browser, and the same download with curl. */
export function renderReadyMail(message: ReadyMessage, publicUrl: string): Mail {
  const base = publicUrl.replace(/\/+$/, "");
  const fileName = oneLine(message.fileName);
  const fid = encodeURIComponent(message.mp3Id);
  const webLink = `${base}/?fid=${fid}`;
  const curl = `curl -OJ -H "Authorization: Bearer $TOKEN" "${base}/download?fid=${fid}"`;
  const duration = message.durationSeconds === null ? undefined : formatDuration(message.durationSeconds);

  const text = textPart([
    `your MP3 of "${fileName}" is ready.`,
    "",
    `Download it here (sign in if asked): ${webLink}`,
    "",
    `File:   ${fileName}`,
    ...(duration ? [`Length: ${duration}`] : []),
    `MP3 id: ${message.mp3Id} (the fid)`,
    "",
    "Or from a terminal, with your login token in $TOKEN:",
    "",
    `  ${curl}`,
  ]);

  const html = page(`
<p>Hello,</p>
<p>your MP3 of <strong>${escapeHtml(fileName)}</strong> is ready.</p>
<p><a href="${escapeHtml(webLink)}" style="${buttonStyle}">Download the MP3</a></p>
<p style="color:#555">Sign in if asked. The link opens ${escapeHtml(base)}.</p>
<table style="border-collapse:collapse">
<tr><td style="padding-right:1em">File</td><td>${escapeHtml(fileName)}</td></tr>
${duration ? `<tr><td style="padding-right:1em">Length</td><td>${escapeHtml(duration)}</td></tr>\n` : ""}<tr><td style="padding-right:1em">MP3 id (fid)</td><td><code>${escapeHtml(message.mp3Id)}</code></td></tr>
</table>
<p>Or from a terminal, with your login token in <code>$TOKEN</code>:</p>
<pre style="${codeStyle}"><code>${escapeHtml(curl)}</code></pre>`);

  return {
    id: `${message.jobId}-ready`,
    to: message.email,
    subject: `Your MP3 is ready: ${subjectPart(fileName)}`,
    text,
    html,
  };
}

/** "Your conversion failed": which file, the reason as the converter worded it, what to try. */
export function renderFailedMail(message: FailedMessage, publicUrl: string): Mail {
  const base = publicUrl.replace(/\/+$/, "");
  const fileName = oneLine(message.fileName);
  const reason = oneLine(message.error);
  const uploadLink = `${base}/`;

  const text = textPart([
    `we could not convert "${fileName}" to MP3.`,
    "",
    `Reason: ${reason}`,
    "",
    `You can try another file, for example a video with a sound track, at ${uploadLink}`,
  ]);

  const html = page(`
<p>Hello,</p>
<p>we could not convert <strong>${escapeHtml(fileName)}</strong> to MP3.</p>
<p>Reason: ${escapeHtml(reason)}</p>
<p>You can try another file, for example a video with a sound track.</p>
<p><a href="${escapeHtml(uploadLink)}" style="${buttonStyle}">Upload another file</a></p>`);

  return {
    id: `${message.jobId}-failed`,
    to: message.email,
    subject: `Your conversion failed: ${subjectPart(fileName)}`,
    text,
    html,
  };
}

/** The plain-text part: the greeting, the lines of the body, the signature. */
function textPart(body: string[]): string {
  return ["Hello,", "", ...body, "", "-- ", "vid2mp3", ""].join("\n");
}

/** Control characters (CR, LF, tabs, NUL, and Unicode line separators) become single spaces. */
export function oneLine(value: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
  return value.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, " ").trim();
}

export function escapeHtml(value: string): string {
  return value
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

/** Seconds as `m:ss` or `h:mm:ss`, the way players show a length. */
export function formatDuration(seconds: number): string {
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

/** Long names would push the subject's point out of sight in an inbox list. */
function subjectPart(fileName: string, max = 80): string {
  const chars = Array.from(fileName);
  return chars.length <= max ? fileName : `${chars.slice(0, max - 1).join("")}…`;
}

const buttonStyle =
  "display:inline-block;padding:10px 18px;background:#1f6feb;color:#fff;text-decoration:none;border-radius:6px";
const codeStyle = "background:#f4f4f4;padding:8px;white-space:pre-wrap;word-break:break-all";

function page(body: string): string {
  return `<!doctype html>
<html><head><meta charset="utf-8"></head>
<body style="font-family:sans-serif;line-height:1.4">${body}
<p style="color:#777">&mdash; vid2mp3</p>
</body></html>
`;
}
