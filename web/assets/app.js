// The vid2mp3 page: sign-in, uploads with progress, the live list of the user's jobs, the
// deep link from the "your MP3 is ready" mail (`/?fid=<mp3Id>`), and the admins' users panel.

import { api, describeDownload, download, login, onSessionEnded, session, upload } from "./api.js";
import { $, announce, confirmDialog, formatBytes, formatDate, formatDuration, h, say } from "./dom.js";
import { connectEvents } from "./events.js";
import { initOptions, uploadFields } from "./options.js";
import { createPlayer } from "./player.js";
import { showUsersPanel } from "./users.js";

const PAGE_SIZE = 20;
const STATUS_LABELS = { queued: "Queued", converting: "Converting", done: "Done", failed: "Failed" };
const FINAL = new Set(["done", "failed"]);

/** Everything that lives only while signed in; `endSession` undoes it. */
let running = { stopEvents: () => {}, expiryTimer: 0, uploads: new Set(), generation: 0 };

// ---- session -------------------------------------------------------------------------------

function showSignIn(notice) {
  $("#app-view").hidden = true;
  $("#account").hidden = true;
  $("#signin-view").hidden = false;
  say($("#signin-notice"), notice || (deepLinkFid() ? "Sign in to download your MP3." : ""));
  say($("#signin-error"), "");
  $("#signin-email").focus();
}

function startSession() {
  const claims = session.claims();
  if (!claims || (typeof claims.exp === "number" && claims.exp * 1000 <= Date.now())) {
    session.clear();
    showSignIn(claims ? "Your session has expired; sign in again." : "");
    return;
  }
  const generation = running.generation + 1;
  running = { stopEvents: () => {}, expiryTimer: 0, uploads: new Set(), generation };
  $("#signin-view").hidden = true;
  $("#app-view").hidden = false;
  $("#account").hidden = false;
  $("#account-email").textContent = claims.username ?? "";
  $("#account-admin").hidden = !claims.admin;
  if (typeof claims.exp === "number") {
    // setTimeout holds at most ~24.8 days; a longer token is checked again by the server anyway.
    const ms = Math.min(claims.exp * 1000 - Date.now(), 2 ** 31 - 1);
    running.expiryTimer = setTimeout(() => endSession("Your session has expired; sign in again."), ms);
  }
  resetJobs();
  loadMoreJobs();
  running.stopEvents = connectEvents({
    token: () => session.token,
    onEvent: (type, data) => {
      if (type !== "job") return;
      try {
        mergeJob(JSON.parse(data), { live: true });
      } catch {
        // a malformed event changes nothing
      }
    },
    onState: (state) => {
      setConnection(state);
      if (state === "live") refreshJobs();
    },
    onSessionEnded: () => endSession("Your session has ended; sign in again."),
  });
  showUsersPanel(Boolean(claims.admin), claims.sub);
  offerDeepLink();
}

function endSession(notice) {
  running.stopEvents();
  clearTimeout(running.expiryTimer);
  for (const cancel of running.uploads) cancel();
  running.generation += 1;
  session.clear();
  resetJobs();
  $("#uploads").replaceChildren();
  showUsersPanel(false);
  showSignIn(notice);
  if (notice) announce(notice);
}

onSessionEnded(() => endSession("Your session has ended; sign in again."));

$("#signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const emailInput = $("#signin-email");
  const passwordInput = $("#signin-password");
  const error = $("#signin-error");
  const email = emailInput.value.trim();
  const password = passwordInput.value;
  emailInput.removeAttribute("aria-invalid");
  passwordInput.removeAttribute("aria-invalid");
  if (!email || !password) {
    say(error, "Enter your e-mail address and your password.");
    (email ? passwordInput : emailInput).focus();
    return;
  }
  const button = $("#signin-submit");
  button.disabled = true;
  button.textContent = "Signing in…";
  say(error, "");
  try {
    const { token } = await login(email, password);
    session.set(token);
    $("#signin-form").reset();
    startSession();
    announce(`Signed in as ${email}.`);
  } catch (failure) {
    const wrong = failure.status === 401;
    say(error, wrong ? "Wrong e-mail or password. Check both and try again." : failure.message);
    if (wrong) {
      emailInput.setAttribute("aria-invalid", "true");
      passwordInput.setAttribute("aria-invalid", "true");
    }
    passwordInput.select();
    passwordInput.focus();
  } finally {
    button.disabled = false;
    button.textContent = "Sign in";
  }
});

$("#sign-out").addEventListener("click", () => {
  endSession("");
  announce("Signed out.");
});

function setConnection(state) {
  const element = $("#connection");
  element.dataset.state = state;
  const text = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…" }[state];
  $("#connection-text").textContent = text;
  element.title =
    state === "live" ? "Updates arrive as they happen" : "Live updates are paused; trying to reconnect";
}

// ---- jobs ----------------------------------------------------------------------------------

/** id → {job, li, update}; the list's DOM order is newest first. */
const rows = new Map();
let total = 0;
let loaded = false;

function resetJobs() {
  rows.clear();
  total = 0;
  loaded = false;
  $("#jobs").replaceChildren();
  say($("#jobs-error"), "");
  updateListChrome();
}

async function loadMoreJobs() {
  const generation = running.generation;
  const button = $("#load-more");
  button.disabled = true;
  try {
    const page = await api(`/jobs?limit=${PAGE_SIZE}&offset=${rows.size}`);
    if (generation !== running.generation) return;
    total = page.total;
    for (const job of page.jobs) mergeJob(job, { fromList: true });
    loaded = true;
    say($("#jobs-error"), "");
  } catch (error) {
    if (generation === running.generation && !error.sessionEnded) say($("#jobs-error"), error.message);
  } finally {
    button.disabled = false;
    updateListChrome();
  }
}

/** After (re)connecting the live stream: fetch the loaded window again, for changes missed meanwhile. */
async function refreshJobs() {
  const generation = running.generation;
  const limit = Math.min(100, Math.max(PAGE_SIZE, rows.size));
  try {
    const page = await api(`/jobs?limit=${limit}&offset=0`);
    if (generation !== running.generation) return;
    total = page.total;
    const seen = new Set(page.jobs.map((job) => job.id));
    const complete = page.jobs.length < limit;
    const oldest = page.jobs.at(-1)?.createdAt ?? "";
    // Jobs deleted elsewhere (another tab, the CLI) disappear too.
    for (const [id, row] of rows) {
      if (!seen.has(id) && (complete || row.job.createdAt >= oldest)) removeRow(id);
    }
    for (const job of page.jobs) mergeJob(job, { fromList: true });
    loaded = true;
  } catch {
    // the next reconnect tries again; the list keeps what it has
  } finally {
    updateListChrome();
  }
}

/** Adds or updates one job, from a list page, an upload's answer or a live event. */
function mergeJob(job, { fromList = false, live = false } = {}) {
  const row = rows.get(job.id);
  if (row) {
    if (Date.parse(job.updatedAt) < Date.parse(row.job.updatedAt)) return;
    const wasFinal = FINAL.has(row.job.status);
    row.job = job;
    row.update(job);
    if (live && !wasFinal && FINAL.has(job.status)) {
      announce(
        job.status === "done"
          ? `${job.fileName}: the MP3 is ready to download.`
          : `${job.fileName}: the conversion failed. ${job.error ?? ""}`,
      );
    }
    return;
  }
  const list = $("#jobs");
  const before = Array.from(rows.values()).find((other) => other.job.createdAt < job.createdAt);
  // An unknown older job belongs to a page not loaded yet; "Load more" brings it.
  if (!before && !fromList && rows.size < total) return;
  const created = createRow(job);
  rows.set(job.id, created);
  list.insertBefore(created.li, before ? before.li : null);
  if (!fromList) total += 1;
  updateListChrome();
}

function removeRow(id) {
  const row = rows.get(id);
  if (!row) return;
  row.li.remove();
  rows.delete(id);
}

function updateListChrome() {
  $("#jobs-loading").hidden = loaded;
  $("#jobs-empty").hidden = !loaded || rows.size > 0;
  $("#jobs-count").textContent = loaded && total > 0 ? `${total} ${total === 1 ? "file" : "files"}` : "";
  $("#load-more").hidden = !loaded || rows.size >= total;
}

function createRow(job) {
  const name = h("p", { class: "job-name" });
  const meta = h("p", { class: "job-meta" });
  const pill = h("span", { class: "pill" });
  const progress = h("progress", { class: "job-progress", max: 100 });
  const percent = h("span", { class: "job-percent", "aria-hidden": "true" });
  const error = h("p", { class: "job-error" });
  const note = h("p", { class: "job-note", role: "alert", hidden: true });
  const mp3 = h("p", { class: "job-mp3", hidden: true });
  const player = createPlayer(
    () => row.job,
    (message) => say(note, message),
  );
  const downloadButton = h(
    "button",
    { type: "button", class: "btn btn-primary btn-small", dataset: { action: "download" } },
    "Download",
  );
  const deleteButton = h(
    "button",
    { type: "button", class: "btn btn-quiet btn-small", dataset: { action: "delete" } },
    "Delete",
  );
  const li = h(
    "li",
    { class: "job", dataset: { id: job.id } },
    h("div", { class: "job-icon", "aria-hidden": "true" }),
    h(
      "div",
      { class: "job-main" },
      name,
      meta,
      h("div", { class: "job-status" }, pill, progress, percent),
      mp3,
      player.element,
      error,
      note,
    ),
    h("div", { class: "job-actions" }, downloadButton, deleteButton),
  );
  const row = {
    job,
    li,
    update(current) {
      li.dataset.status = current.status;
      name.textContent = current.fileName;
      name.title = current.fileName;
      const duration = current.durationSeconds ? formatDuration(current.durationSeconds) : "";
      meta.replaceChildren(
        formatBytes(current.size),
        " · ",
        h(
          "time",
          { dateTime: current.createdAt, title: new Date(current.createdAt).toLocaleString() },
          formatDate(current.createdAt),
        ),
        duration ? ` · ${duration}` : "",
        // The retention removes a finished job and its MP3 then (null: kept for ever, or unfinished).
        current.expiresAt
          ? h(
              "span",
              { class: "job-expires" },
              " · expires ",
              h(
                "time",
                { dateTime: current.expiresAt, title: new Date(current.expiresAt).toLocaleString() },
                formatDate(current.expiresAt),
              ),
            )
          : "",
      );
      pill.className = `pill pill-${current.status}`;
      pill.textContent = STATUS_LABELS[current.status] ?? current.status;
      const working = !FINAL.has(current.status);
      progress.hidden = !working;
      percent.hidden = !working;
      progress.setAttribute("aria-label", `Conversion of ${current.fileName}`);
      if (current.status === "converting") {
        const value = Math.round((current.progress ?? 0) * 100);
        progress.value = value;
        percent.textContent = `${value}%`;
      } else {
        progress.removeAttribute("value"); // indeterminate while waiting in the queue
        percent.textContent = "";
      }
      say(error, current.status === "failed" ? current.error || "The conversion failed." : "");
      const ready = current.status === "done";
      say(mp3, ready ? [current.mp3FileName, formatBytes(current.mp3Size)].filter(Boolean).join(" · ") : "");
      player.update(ready);
      downloadButton.hidden = current.status !== "done";
      downloadButton.setAttribute("aria-label", `Download the MP3 of ${current.fileName}`);
      deleteButton.setAttribute("aria-label", `Delete ${current.fileName}`);
    },
  };
  row.update(job);

  downloadButton.addEventListener("click", async () => {
    const fid = row.job.mp3Id;
    if (!fid) return;
    downloadButton.disabled = true;
    downloadButton.setAttribute("aria-busy", "true");
    downloadButton.textContent = "Downloading…";
    say(note, "");
    try {
      const fileName = await download(fid);
      announce(`Downloaded ${fileName}.`);
    } catch (failure) {
      if (!failure.sessionEnded) say(note, failure.message);
    } finally {
      downloadButton.disabled = false;
      downloadButton.removeAttribute("aria-busy");
      downloadButton.textContent = "Download";
    }
  });

  deleteButton.addEventListener("click", async () => {
    const current = row.job;
    const sure = await confirmDialog({
      title: `Delete ${current.fileName}?`,
      text:
        current.status === "done"
          ? "Its MP3 is removed for good and the download link stops working."
          : "The job and its files are removed for good.",
    });
    if (!sure) return;
    deleteButton.disabled = true;
    say(note, "");
    try {
      await api(`/jobs/${encodeURIComponent(current.id)}`, { method: "DELETE" });
    } catch (failure) {
      deleteButton.disabled = false;
      if (failure.status !== 404) {
        if (!failure.sessionEnded) say(note, failure.message);
        return;
      }
    }
    // Keep the keyboard user in the list: the next row's Delete, else the list's heading.
    const next = li.nextElementSibling ?? li.previousElementSibling;
    removeRow(current.id);
    total = Math.max(0, total - 1);
    updateListChrome();
    (next?.querySelector('[data-action="delete"]') ?? $("#jobs-title")).focus();
    announce(`Deleted ${current.fileName}.`);
  });

  return row;
}

$("#load-more").addEventListener("click", () => loadMoreJobs());

// ---- uploads -------------------------------------------------------------------------------

const queue = [];
let pumping = false;

function enqueue(files) {
  // The options as they are now apply to these files, whatever is changed while they wait.
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
  const generation = running.generation;
  const progress = h("progress", {
    class: "upload-progress",
    max: 100,
    value: 0,
    "aria-label": `Upload of ${file.name}`,
  });
  const percent = h("span", { class: "upload-percent" }, "Waiting…");
  const error = h("p", { class: "upload-error", role: "alert", hidden: true });
  const button = h("button", { type: "button", class: "btn btn-quiet btn-small" }, "Cancel");
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
    button,
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

  const item = {
    async run() {
      if (generation !== running.generation) return;
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
      running.uploads.add(started.cancel);
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
        button.textContent = "Dismiss";
        cancel = finish;
      } finally {
        running.uploads.delete(started.cancel);
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

// ---- the mail's deep link: /?fid=<mp3Id> -----------------------------------------------------

function deepLinkFid() {
  return new URLSearchParams(location.search).get("fid") || undefined;
}

async function offerDeepLink() {
  const fid = deepLinkFid();
  const section = $("#fid-offer");
  const button = $("#fid-download");
  section.hidden = !fid;
  if (!fid) return;
  const generation = running.generation;
  $("#fid-title").textContent = "Your MP3";
  say($("#fid-text"), "Looking it up…");
  button.hidden = true;
  try {
    const info = await describeDownload(fid);
    if (generation !== running.generation) return;
    $("#fid-title").textContent = "Your MP3 is ready";
    say($("#fid-text"), [info.name, info.size ? formatBytes(info.size) : ""].filter(Boolean).join(" · "));
    button.hidden = false;
    button.focus();
  } catch (failure) {
    if (generation !== running.generation || failure.sessionEnded) return;
    $("#fid-title").textContent = "This MP3 is not available";
    say(
      $("#fid-text"),
      failure.status === 404
        ? "It may have been deleted, or the link belongs to another account."
        : failure.message,
    );
  }
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
  history.replaceState(null, "", location.pathname);
  $("#file-input").focus();
});

// ---- start ---------------------------------------------------------------------------------

initOptions();
if (session.token) startSession();
else showSignIn("");
