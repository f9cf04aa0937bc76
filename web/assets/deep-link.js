// The mail's link, `/?fid=<mp3Id>`: once signed in, the page offers that MP3 for download.

import { describeDownload, download } from "./api.js";
import { $, announce, formatBytes, say } from "./dom.js";

let generation = 0;

export function deepLinkFid() {
  return new URLSearchParams(location.search).get("fid") || undefined;
}

/** Looks the linked MP3 up and offers it (or says why it cannot); hides the offer without a link. */
export async function offerDeepLink() {
  const mine = ++generation;
  const fid = deepLinkFid();
  const section = $("#fid-offer");
  const button = $("#fid-download");
  section.hidden = !fid;
  if (!fid) return;
  $("#fid-title").textContent = "Your MP3";
  say($("#fid-text"), "Looking it up…");
  button.hidden = true;
  try {
    const info = await describeDownload(fid);
    if (mine !== generation) return;
    $("#fid-title").textContent = "Your MP3 is ready";
    say($("#fid-text"), [info.name, info.size ? formatBytes(info.size) : ""].filter(Boolean).join(" · "));
    button.hidden = false;
    button.focus();
  } catch (failure) {
    if (mine !== generation || failure.sessionEnded) return;
    $("#fid-title").textContent = "This MP3 is not available";
    say(
      $("#fid-text"),
      failure.status === 404
        ? "It may have been deleted, or the link belongs to another account."
        : failure.message,
    );
  }
}

export function forgetDeepLink() {
  generation += 1;
}

$("#fid-download").addEventListener("click", async () => {
  const fid = deepLinkFid();
  if (!fid) return;
  const button = $("#fid-download");
  button.disabled = true;
  button.textContent = "Downloading…";
  try {
    announce(`Downloaded ${await download(fid)}.`);
  } catch (failure) {
    if (!failure.sessionEnded) say($("#fid-text"), failure.message);
  } finally {
    button.disabled = false;
    button.textContent = "Download MP3";
  }
});

$("#fid-dismiss").addEventListener("click", () => {
  $("#fid-offer").hidden = true;
  history.replaceState(null, "", location.pathname + location.hash);
  $("#file-input").focus();
});
