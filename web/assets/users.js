// The administrators' users view: list, add, disable and enable accounts, set a new password. The
// `admin` claim only decides whether the view is offered; the server checks the rights on every
// request.

import { api } from "./api.js";
import { $, announce, formatDate, h, say } from "./dom.js";
import { openPasswordDialog } from "./password-dialog.js";

const LIMIT = 100;
let selfId;
let generation = 0;

/** Loads the view for an administrator; empties it otherwise. */
export function loadUsers(isAdmin, currentUserId) {
  generation += 1;
  selfId = currentUserId;
  $("#users").replaceChildren();
  $("#users-count").textContent = "";
  say($("#user-error"), "");
  if (isAdmin) load();
}

async function load() {
  const mine = generation;
  try {
    const { users, total } = await api(`/users?limit=${LIMIT}`);
    if (mine !== generation) return;
    $("#users").replaceChildren(...users.map(row));
    $("#users-count").textContent =
      total > users.length
        ? `first ${users.length} of ${total}`
        : `${total} ${total === 1 ? "account" : "accounts"}`;
  } catch (error) {
    if (mine === generation && !error.sessionEnded) say($("#user-error"), error.message);
  }
}

function row(user) {
  const tr = h("tr", { dataset: { id: user.id } });
  render(tr, user);
  return tr;
}

function render(tr, user) {
  const isSelf = user.id === selfId;
  // No switch on one's own row: the server refuses to let an administrator lock themselves out.
  const toggle = isSelf
    ? undefined
    : h(
        "button",
        {
          type: "button",
          class: `btn btn-small ${user.disabled ? "" : "btn-quiet"}`,
          "aria-label": `${user.disabled ? "Enable" : "Disable"} ${user.email}`,
          dataset: { toggle: "" },
          onclick: () => setDisabled(tr, user, !user.disabled),
        },
        user.disabled ? "Enable" : "Disable",
      );
  const reset = h(
    "button",
    {
      type: "button",
      class: "btn btn-small btn-quiet",
      "aria-label": `Set a new password for ${user.email}`,
      onclick: () => resetPassword(user),
    },
    "New password",
  );
  tr.replaceChildren(
    h(
      "td",
      { class: "user-email" },
      user.email,
      isSelf ? h("span", { class: "muted" }, " (you)") : undefined,
      h("span", { class: "user-since" }, `since ${formatDate(user.createdAt)}`),
    ),
    h("td", {}, user.admin ? h("span", { class: "badge" }, "Admin") : "User"),
    h(
      "td",
      {},
      h(
        "span",
        { class: `pill ${user.disabled ? "pill-failed" : "pill-done"}` },
        user.disabled ? "Disabled" : "Active",
      ),
    ),
    h("td", { class: "cell-action" }, h("div", { class: "row-actions" }, reset, toggle)),
  );
}

function resetPassword(user) {
  openPasswordDialog({
    title: `Set a new password for ${user.email}`,
    askCurrent: false,
    submitLabel: "Set password",
    async onSubmit({ next }) {
      await api(`/users/${encodeURIComponent(user.id)}`, { method: "PATCH", body: { password: next } });
      announce(`${user.email} has a new password; their earlier sign-ins end.`);
    },
  });
}

async function setDisabled(tr, user, disabled) {
  say($("#user-error"), "");
  const button = tr.querySelector("button[data-toggle]");
  if (button) button.disabled = true;
  try {
    const updated = await api(`/users/${encodeURIComponent(user.id)}`, {
      method: "PATCH",
      body: { disabled },
    });
    render(tr, updated);
    tr.querySelector("button[data-toggle]")?.focus();
    announce(`${updated.email} is ${updated.disabled ? "disabled" : "enabled"}.`);
  } catch (error) {
    if (button) button.disabled = false;
    if (!error.sessionEnded) say($("#user-error"), error.message);
  }
}

$("#user-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const email = $("#user-email");
  const password = $("#user-password");
  const error = $("#user-error");
  email.removeAttribute("aria-invalid");
  password.removeAttribute("aria-invalid");
  if (!email.value.trim()) {
    email.setAttribute("aria-invalid", "true");
    email.focus();
    return say(error, "Enter the new user's e-mail address.");
  }
  if (password.value.length < 8) {
    password.setAttribute("aria-invalid", "true");
    password.focus();
    return say(error, "The password must be at least 8 characters.");
  }
  const button = $("#user-submit");
  button.disabled = true;
  say(error, "");
  try {
    const created = await api("/users", {
      method: "POST",
      body: { email: email.value.trim(), password: password.value, admin: $("#user-admin").checked },
    });
    $("#user-form").reset();
    await load();
    email.focus();
    announce(`Added ${created.email}.`);
  } catch (failure) {
    if (!failure.sessionEnded) say(error, failure.message);
  } finally {
    button.disabled = false;
  }
});
