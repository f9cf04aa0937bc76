// The MP3 options panel beside the drop zone: what the user chooses there is sent with each
// upload as the API's option fields (before the file), checked here first with the server's own
// rules so that a typo is caught before a large file is sent, and remembered in localStorage
// between visits.

import { $, say } from "./dom.js";

const STORAGE_KEY = "vid2mp3.options";
const TEXT_FIELDS = ["start", "end", "track", "title", "artist", "album"];
const DEFAULTS = {
  quality: "v2",
  start: "",
  end: "",
  track: "",
  title: "",
  artist: "",
  album: "",
  normalize: false,
  mono: false,
  cover: true,
  chapters: true,
};

const input = (name) => $(`#opt-${name}`);

/** The panel's values, as stored. */
function read() {
  const values = { quality: input("quality").value };
  for (const name of TEXT_FIELDS) values[name] = input(name).value;
  for (const name of ["normalize", "mono", "cover", "chapters"]) values[name] = input(name).checked;
  return values;
}

function write(values) {
  const merged = { ...DEFAULTS, ...values };
  if ([...input("quality").options].some((option) => option.value === merged.quality))
    input("quality").value = merged.quality;
  for (const name of TEXT_FIELDS) input(name).value = typeof merged[name] === "string" ? merged[name] : "";
  for (const name of ["normalize", "mono", "cover", "chapters"]) input(name).checked = merged[name] === true;
}

function remember() {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(read()));
  } catch {
    // private mode or full storage: the options still apply to this visit
  }
}

function recall() {
  try {
    const stored = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "null");
    if (stored && typeof stored === "object") write(stored);
  } catch {
    // a damaged entry: start from the defaults
  }
}

/** `12.5` or `[hh:]mm:ss[.fff]` → seconds, as the server reads them (parsePosition in src/contracts/options.ts, which has the last word); undefined when neither. */
function position(text) {
  const value = text.trim();
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value);
  const match = /^(?:(\d+):)?(\d+):([0-5]\d)(\.\d{1,3})?$/.exec(value);
  if (!match) return undefined;
  const [, hours, minutes, seconds, fraction] = match;
  if (hours !== undefined && Number(minutes) > 59) return undefined;
  return Number(hours ?? 0) * 3600 + Number(minutes) * 60 + Number(seconds) + Number(fraction ?? 0);
}

/** The first problem with the chosen values, as {field, message}, or undefined. */
function problem(values) {
  const times = {};
  for (const name of ["start", "end"]) {
    if (values[name].trim() === "") continue;
    times[name] = position(values[name]);
    if (times[name] === undefined)
      return { field: name, message: `${label(name)}: use seconds (12.5) or [h:]m:ss (1:30).` };
  }
  if (times.end === 0) return { field: "end", message: "End: must be after the very beginning." };
  if (times.start !== undefined && times.end !== undefined && times.start >= times.end)
    return { field: "end", message: "End: must come after the start." };
  const track = values.track.trim();
  if (track !== "" && !/^\d{1,3}$/.test(track) && !/^[a-z]{3}$/i.test(track))
    return {
      field: "track",
      message: "Audio track: its number from 0, or a three-letter language code such as eng.",
    };
  for (const name of ["title", "artist", "album"]) {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
    if (/[\u0000-\u001f\u007f]/.test(values[name]))
      return { field: name, message: `${label(name)}: no line breaks.` };
  }
  return undefined;
}

const label = (name) => $(`label[for="opt-${name}"]`)?.textContent ?? name;

function describe(values) {
  const parts = [];
  if (values.quality !== DEFAULTS.quality)
    parts.push(input("quality").selectedOptions[0]?.textContent ?? values.quality);
  if (values.start.trim() || values.end.trim())
    parts.push(`${values.start.trim() || "0:00"} – ${values.end.trim() || "end"}`);
  if (values.track.trim()) parts.push(`track ${values.track.trim()}`);
  if (values.normalize) parts.push("loudness evened out");
  if (values.mono) parts.push("mono");
  if (!values.cover) parts.push("no cover");
  if (!values.chapters) parts.push("no chapters");
  if (values.title.trim() || values.artist.trim() || values.album.trim()) parts.push("own tags");
  return parts.length === 0
    ? "Defaults: VBR V2, the video's tags, cover and chapters."
    : `Changed: ${parts.join(", ")}.`;
}

function refresh() {
  const values = read();
  const found = problem(values);
  for (const name of TEXT_FIELDS) input(name).removeAttribute("aria-invalid");
  if (found) {
    input(found.field).setAttribute("aria-invalid", "true");
    if (["title", "artist", "album"].includes(found.field)) $("#options-tags").open = true;
  }
  say($("#options-error"), found?.message ?? "");
  $("#options-summary").textContent = describe(values);
  return found;
}

export function initOptions() {
  recall();
  refresh();
  // Tags chosen earlier stay in sight.
  const values = read();
  if (values.title || values.artist || values.album) $("#options-tags").open = true;
  const form = $("#options-form");
  form.addEventListener("input", () => {
    remember();
    refresh();
  });
  form.addEventListener("submit", (event) => event.preventDefault());
  $("#options-reset").addEventListener("click", () => {
    write(DEFAULTS);
    remember();
    refresh();
  });
}

/**
 * The option fields for an upload, only those that differ from the defaults (in the API's
 * order), or `{problem}` (already shown in the panel, its field focused) when one cannot be used.
 */
export function uploadFields() {
  const found = refresh();
  if (found) {
    input(found.field).focus();
    return { problem: found.message };
  }
  const values = read();
  const fields = [];
  if (values.quality !== DEFAULTS.quality) fields.push(["quality", values.quality]);
  for (const name of ["start", "end"]) if (values[name].trim()) fields.push([name, values[name].trim()]);
  if (values.normalize) fields.push(["normalize", "true"]);
  if (values.mono) fields.push(["mono", "true"]);
  if (values.track.trim()) fields.push(["track", values.track.trim()]);
  for (const name of ["title", "artist", "album"])
    if (values[name].trim()) fields.push([name, values[name].trim()]);
  if (!values.cover) fields.push(["cover", "none"]);
  if (!values.chapters) fields.push(["chapters", "drop"]);
  return { fields };
}
