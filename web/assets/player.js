// The player of a finished job: an <audio> element fed by a short-lived signed URL of the MP3
// (`POST /download/link`). The element cannot send the bearer header, but with a URL of its own
// it streams the MP3 and seeks with Range requests, as it would any file, instead of the page
// downloading the whole MP3 first. The URL is asked for only when the user presses Play, and
// again when it has expired while the player sat paused.

import { downloadLink } from "./api.js";
import { h } from "./dom.js";
import { mp3NameOf } from "./jobs.js";

/** A link older than this is renewed before it is used again (they live an hour). */
const RENEW_AFTER_MS = 50 * 60 * 1000;

/**
 * @param {() => {mp3Id: string | null, fileName: string, mp3FileName?: string}} currentJob
 * @param {(message: string) => void} onProblem
 */
export function createPlayer(currentJob, onProblem) {
  const button = h("button", { type: "button", class: "btn btn-small", dataset: { action: "play" } }, "Play");
  const element = h("div", { class: "job-player", hidden: true }, button);
  /** @type {HTMLAudioElement | undefined} */
  let audio;
  let linkedAt = 0;
  let renewing = false;

  async function link() {
    const job = currentJob();
    if (!job.mp3Id) throw new Error("The MP3 is not ready.");
    const { url } = await downloadLink(job.mp3Id);
    linkedAt = Date.now();
    return url;
  }

  /** A fresh URL, keeping the position (and playing on if it was): the old one has expired. */
  async function renew() {
    if (!audio || renewing) return;
    renewing = true;
    const position = audio.currentTime;
    const playing = !audio.paused;
    try {
      audio.src = await link();
      audio.addEventListener(
        "loadedmetadata",
        () => {
          if (audio) audio.currentTime = position;
          if (playing) audio?.play().catch(() => {});
        },
        { once: true },
      );
    } catch (failure) {
      if (!failure.sessionEnded) onProblem(failure.message);
    } finally {
      renewing = false;
    }
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const url = await link();
      const name = mp3NameOf(currentJob());
      audio = h("audio", { class: "job-audio", controls: true, preload: "metadata", src: url });
      audio.setAttribute("aria-label", name);
      // An expired link shows as a media error; a link that is old is renewed before playing on.
      audio.addEventListener("error", () => renew());
      audio.addEventListener("play", () => {
        if (Date.now() - linkedAt > RENEW_AFTER_MS) renew();
      });
      button.replaceWith(audio);
      await audio.play().catch(() => {
        // autoplay refused (no user gesture left): the controls are there to press
      });
      audio.focus();
    } catch (failure) {
      if (!failure.sessionEnded) onProblem(failure.message);
      button.disabled = false;
    }
  });

  return {
    element,
    /** Shown for a finished job only. */
    update(ready) {
      element.hidden = !ready;
      const job = currentJob();
      // Named after its file, as every button of a row is.
      button.setAttribute("aria-label", `Play ${mp3NameOf(job)}`);
      if (!ready && audio) audio.pause();
    },
  };
}
