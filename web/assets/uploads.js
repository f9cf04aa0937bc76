// Uploads, one at a time with progress: from the file picker or a drop on the zone. A refused or
// broken upload stays in the list with its reason, to retry (the same file again) or dismiss.

import { upload } from "./api.js";
import { $, announce, formatBytes, h, say } from "./dom.js";
import { mergeJob } from "./jobs.js";
import { uploadFields } from "./options.js";

const queue = [];
let pumping = false;
/** Cancels of the uploads under way, so signing out stops them. */
const running = new Set();
let generation = 0;

/** Signing out: every upload stops and the list empties. */
export function stopUploads() {
  generation += 1;
  queue.length = 0;
  for (const cancel of running) cancel();
  $("#uploads").replaceChildren();
}

function enqueue(files) {
  // The options as they are now apply to these files (and to their retries), whatever is changed
  // while they wait.
  const options = uploadFields();
  if (options.problem) {
    announce(`Not uploaded: ${options.problem}`);
    return;
  }
  for (const file of files) queue.push(uploadItem(file, options.fields));
  pump();
}

/** One upload at a time: the others wait their turn, so each gets the whole line. */
async function pump() {
  if (pumping) return;
  pumping = true;
  while (queue.length > 0) {
    const next = queue.shift();
    if (next) await next.run();
  }
  pumping = false;
}

function uploadItem(file, fields) {
  const mine = generation;
  const progress = h("progress", {
    class: "upload-progress",
    max: 100,
    value: 0,
    "aria-label": `Upload of ${file.name}`,
  });
  const percent = h("span", { class: "upload-percent" }, "Waiting…");
  const error = h("p", { class: "upload-error", role: "alert", hidden: true });
  const retry = h(
    "button",
    { type: "button", class: "btn btn-small", hidden: true, "aria-label": `Retry ${file.name}` },
    "Retry",
  );
  const button = h(
    "button",
    { type: "button", class: "btn btn-quiet btn-small", "aria-label": `Cancel the upload of ${file.name}` },
    "Cancel",
  );
  const li = h(
    "li",
    { class: "upload", dataset: { state: "waiting" } },
    h(
      "div",
      { class: "upload-main" },
      h("p", { class: "upload-name", title: file.name }, file.name),
      h(
        "div",
        { class: "upload-line" },
        progress,
        percent,
        h("span", { class: "muted" }, formatBytes(file.size)),
      ),
      error,
    ),
    h("div", { class: "upload-actions" }, retry, button),
  );
  $("#uploads").append(li);

  let cancel = () => {
    const index = queue.indexOf(item);
    if (index >= 0) queue.splice(index, 1);
    finish();
  };
  const finish = () => {
    const hadFocus = li.contains(document.activeElement);
    li.remove();
    if (hadFocus) $("#file-input").focus();
  };
  button.addEventListener("click", () => cancel());
  retry.addEventListener("click", () => {
    li.dataset.state = "waiting";
    percent.textContent = "Waiting…";
    progress.value = 0;
    say(error, "");
    retry.hidden = true;
    button.textContent = "Cancel";
    button.setAttribute("aria-label", `Cancel the upload of ${file.name}`);
    cancel = () => {
      const index = queue.indexOf(item);
      if (index >= 0) queue.splice(index, 1);
      finish();
    };
    button.focus();
    queue.push(item);
    pump();
  });

  const item = {
    async run() {
      if (mine !== generation) return;
      li.dataset.state = "uploading";
      percent.textContent = "0%";
      const started = upload(
        file,
        (fraction) => {
          const value = Math.round(fraction * 100);
          progress.value = value;
          percent.textContent = value >= 100 ? "Processing…" : `${value}%`;
        },
        fields,
      );
      running.add(started.cancel);
      cancel = started.cancel;
      try {
        const accepted = await started.promise;
        progress.value = 100;
        finish();
        mergeJob(accepted.job);
        announce(`Uploaded ${file.name}; converting it now.`);
      } catch (failure) {
        if (failure.code === "aborted" || failure.sessionEnded) {
          finish();
          return;
        }
        li.dataset.state = "error";
        percent.textContent = "Not uploaded";
        say(error, failure.message);
        retry.hidden = false;
        button.textContent = "Dismiss";
        button.setAttribute("aria-label", `Dismiss ${file.name}`);
        cancel = finish;
      } finally {
        running.delete(started.cancel);
      }
    },
  };
  return item;
}

const input = $("#file-input");
input.addEventListener("change", () => {
  if (input.files && input.files.length > 0) enqueue(Array.from(input.files));
  input.value = "";
});

const dropzone = $("#dropzone");
const hasFiles = (event) => Array.from(event.dataTransfer?.types ?? []).includes("Files");
for (const type of ["dragenter", "dragover"]) {
  dropzone.addEventListener(type, (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
    dropzone.classList.add("dragging");
  });
}
dropzone.addEventListener("dragleave", (event) => {
  if (!dropzone.contains(event.relatedTarget)) dropzone.classList.remove("dragging");
});
dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropzone.classList.remove("dragging");
  const files = Array.from(event.dataTransfer?.files ?? []);
  if (files.length > 0) enqueue(files);
});
// A file dropped next to the zone must not replace the page with the video.
for (const type of ["dragover", "drop"]) {
  window.addEventListener(type, (event) => {
    if (hasFiles(event) && !dropzone.contains(event.target)) event.preventDefault();
  });
}
