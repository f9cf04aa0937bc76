// The live list of the user's jobs, newest first: each row with its MP3's name and size, status
// and progress, download and delete; a checkbox per row for bulk delete and a ZIP of the MP3s.

import { api, download } from "./api.js";
import { $, announce, confirmDialog, formatBytes, formatDate, formatDuration, h, say } from "./dom.js";
import { createPlayer } from "./player.js";
import { downloadZip } from "./zip.js";

const PAGE_SIZE = 20;
const STATUS_LABELS = { queued: "Queued", converting: "Converting", done: "Done", failed: "Failed" };
const FINAL = new Set(["done", "failed"]);

/** id → {job, li, update, checkbox}; the list's DOM order is newest first. */
const rows = new Map();
let total = 0;
let loaded = false;
/** Moves on at each reset, so an answer for an earlier session is dropped. */
let generation = 0;

/** The MP3's file name: the server's when it says (`mp3FileName`), else the video's with .mp3. */
export function mp3NameOf(job) {
  if (job.mp3FileName) return job.mp3FileName;
  const base = job.fileName.replace(/\.[^./\\]*$/, "") || "audio";
  return `${base}.mp3`;
}

export function resetJobs() {
  generation += 1;
  rows.clear();
  total = 0;
  loaded = false;
  $("#jobs").replaceChildren();
  say($("#jobs-error"), "");
  say($("#bulk-note"), "");
  updateListChrome();
}

export async function loadMoreJobs() {
  const mine = generation;
  const button = $("#load-more");
  button.disabled = true;
  try {
    const page = await api(`/jobs?limit=${PAGE_SIZE}&offset=${rows.size}`);
    if (mine !== generation) return;
    total = page.total;
    for (const job of page.jobs) mergeJob(job, { fromList: true });
    loaded = true;
    say($("#jobs-error"), "");
  } catch (error) {
    if (mine === generation && !error.sessionEnded) say($("#jobs-error"), error.message);
  } finally {
    button.disabled = false;
    updateListChrome();
  }
}

/** After (re)connecting the live stream: fetch the loaded window again, for changes missed meanwhile. */
export async function refreshJobs() {
  const mine = generation;
  const limit = Math.min(100, Math.max(PAGE_SIZE, rows.size));
  try {
    const page = await api(`/jobs?limit=${limit}&offset=0`);
    if (mine !== generation) return;
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
export function mergeJob(job, { fromList = false, live = false } = {}) {
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
    updateSelection();
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
  updateSelection();
}

function updateListChrome() {
  $("#jobs-loading").hidden = loaded;
  $("#jobs-empty").hidden = !loaded || rows.size > 0;
  $("#jobs-count").textContent = loaded && total > 0 ? `${total} ${total === 1 ? "file" : "files"}` : "";
  $("#load-more").hidden = !loaded || rows.size >= total;
  $("#bulk").hidden = rows.size === 0;
  updateSelection();
}

// ---- selection -------------------------------------------------------------------------------

const selectedRows = () => Array.from(rows.values()).filter((row) => row.checkbox.checked);

function updateSelection() {
  const selected = selectedRows();
  const all = $("#select-all");
  all.checked = rows.size > 0 && selected.length === rows.size;
  all.indeterminate = selected.length > 0 && selected.length < rows.size;
  $("#selected-count").textContent = selected.length > 0 ? `${selected.length} selected` : "";
  $("#bulk-delete").disabled = selected.length === 0;
  $("#bulk-zip").disabled = !selected.some((row) => row.job.status === "done");
}

$("#select-all").addEventListener("change", () => {
  const checked = $("#select-all").checked;
  for (const row of rows.values()) row.checkbox.checked = checked;
  updateSelection();
});

$("#bulk-delete").addEventListener("click", async () => {
  const selected = selectedRows();
  if (selected.length === 0) return;
  const sure = await confirmDialog({
    title: `Delete ${selected.length} ${selected.length === 1 ? "file" : "files"}?`,
    text: "Their MP3s are removed for good and their download links stop working.",
  });
  if (!sure) return;
  say($("#bulk-note"), "");
  const failed = [];
  for (const row of selected) {
    try {
      await api(`/jobs/${encodeURIComponent(row.job.id)}`, { method: "DELETE" });
    } catch (failure) {
      if (failure.status !== 404) {
        if (failure.sessionEnded) return;
        failed.push(`${row.job.fileName}: ${failure.message}`);
        continue;
      }
    }
    removeRow(row.job.id);
    total = Math.max(0, total - 1);
  }
  updateListChrome();
  say($("#bulk-note"), failed.join(" "));
  $("#jobs-title").focus();
  announce(
    `Deleted ${selected.length - failed.length} ${selected.length - failed.length === 1 ? "file" : "files"}.`,
  );
});

$("#bulk-zip").addEventListener("click", async () => {
  const done = selectedRows()
    .map((row) => row.job)
    .filter((job) => job.status === "done" && job.mp3Id);
  if (done.length === 0) return;
  const button = $("#bulk-zip");
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = "Preparing ZIP…";
  say($("#bulk-note"), "");
  try {
    const name = await downloadZip(done);
    announce(`Downloaded ${name} with ${done.length} ${done.length === 1 ? "MP3" : "MP3s"}.`);
  } catch (failure) {
    if (!failure.sessionEnded) say($("#bulk-note"), failure.message);
  } finally {
    button.removeAttribute("aria-busy");
    button.textContent = "Download as ZIP";
    updateSelection();
  }
});

$("#load-more").addEventListener("click", () => loadMoreJobs());

// ---- one row ---------------------------------------------------------------------------------

function createRow(job) {
  const checkbox = h("input", { type: "checkbox", class: "job-select" });
  const name = h("p", { class: "job-name" });
  const meta = h("p", { class: "job-meta" });
  const pill = h("span", { class: "pill" });
  const progress = h("progress", { class: "job-progress", max: 100 });
  const percent = h("span", { class: "job-percent", "aria-hidden": "true" });
  const error = h("p", { class: "job-error" });
  const note = h("p", { class: "job-note", role: "alert", hidden: true });
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
    h("div", { class: "job-pick" }, checkbox, h("div", { class: "job-icon", "aria-hidden": "true" })),
    h(
      "div",
      { class: "job-main" },
      name,
      meta,
      h("div", { class: "job-status" }, pill, progress, percent),
      player.element,
      error,
      note,
    ),
    h("div", { class: "job-actions" }, downloadButton, deleteButton),
  );
  const row = {
    job,
    li,
    checkbox,
    update(current) {
      li.dataset.status = current.status;
      const mp3Name = mp3NameOf(current);
      name.textContent = mp3Name;
      name.title = mp3Name;
      checkbox.setAttribute("aria-label", `Select ${mp3Name}`);
      const duration = current.durationSeconds ? formatDuration(current.durationSeconds) : "";
      const size = typeof current.mp3Size === "number" ? formatBytes(current.mp3Size) : "";
      meta.replaceChildren(
        size ? `${size} · ` : "",
        h("span", { class: "job-source", title: current.fileName }, `from ${current.fileName}`),
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
      player.update(current.status === "done");
      downloadButton.hidden = current.status !== "done";
      downloadButton.setAttribute("aria-label", `Download ${mp3Name}`);
      deleteButton.setAttribute("aria-label", `Delete ${mp3Name}`);
    },
  };
  row.update(job);
  checkbox.addEventListener("change", updateSelection);

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
      title: `Delete ${mp3NameOf(current)}?`,
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
    announce(`Deleted ${mp3NameOf(current)}.`);
  });

  return row;
}
