// Small DOM and formatting helpers. Text always goes in as text nodes, never as HTML, so file
// names and error sentences from the server cannot inject markup.

/** `h("button", {class: "btn", onclick}, "Delete")`; attributes set as properties when the element has one. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (name in element && !name.includes("-")) element[name] = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  element.append(
    ...children.flat().filter((child) => child !== undefined && child !== null && child !== false),
  );
  return element;
}

export const $ = (selector) => document.querySelector(selector);

/** Shows a sentence in an element, or hides the element for an empty one. */
export function say(element, text) {
  element.textContent = text ?? "";
  element.hidden = !text;
}

/** Announces a sentence to screen readers through the page's polite live region. */
export function announce(text) {
  const region = $("#status");
  region.textContent = "";
  // A fresh text node after a tick, so the same sentence twice is announced twice.
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}

const units = ["bytes", "KB", "MB", "GB", "TB"];
export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "";
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 || value >= 100 ? 0 : 1;
  return `${value.toFixed(digits)} ${units[unit]}`;
}

export function formatDuration(seconds) {
  if (!Number.isFinite(seconds)) return "";
  const total = Math.round(seconds);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = String(total % 60).padStart(2, "0");
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const timeOnly = new Intl.DateTimeFormat(undefined, { timeStyle: "short" });
export function formatDate(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const today = new Date();
  return date.toDateString() === today.toDateString()
    ? `Today, ${timeOnly.format(date)}`
    : dateTime.format(date);
}

/** Asks a yes/no question in the page's modal dialog; resolves true for the confirming answer. */
export function confirmDialog({ title, text, confirm = "Delete" }) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = confirm;
  dialog.returnValue = "";
  const opener = document.activeElement;
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
        resolve(dialog.returnValue === "ok");
      },
      { once: true },
    );
  });
}
