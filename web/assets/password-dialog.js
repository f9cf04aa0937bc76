// The one dialog that asks for a new password (twice): a user changing their own (with the
// current one) or an administrator setting another account's.

import { $, say } from "./dom.js";

let submit = async () => {};

/**
 * Opens the dialog. `onSubmit({current, next})` does the change and resolves to a sentence for a
 * screen reader once done; a thrown error's message is shown in the dialog, which stays open.
 */
export function openPasswordDialog({ title, askCurrent, submitLabel, onSubmit }) {
  const dialog = $("#password-dialog");
  $("#password-form").reset();
  $("#password-title").textContent = title;
  $("#password-current-field").hidden = !askCurrent;
  $("#password-current").required = askCurrent;
  $("#password-submit").textContent = submitLabel;
  say($("#password-error"), "");
  for (const input of dialog.querySelectorAll("input")) input.removeAttribute("aria-invalid");
  const opener = document.activeElement;
  submit = async () => {
    const current = $("#password-current");
    const next = $("#password-new");
    const repeat = $("#password-repeat");
    const invalid = (input, text) => {
      input.setAttribute("aria-invalid", "true");
      input.focus();
      say($("#password-error"), text);
    };
    for (const input of [current, next, repeat]) input.removeAttribute("aria-invalid");
    if (askCurrent && !current.value) return invalid(current, "Enter your current password.");
    if (next.value.length < 8) return invalid(next, "The new password must be at least 8 characters.");
    if (repeat.value !== next.value) return invalid(repeat, "The two new passwords differ.");
    const button = $("#password-submit");
    button.disabled = true;
    say($("#password-error"), "");
    try {
      await onSubmit({ current: current.value, next: next.value });
      dialog.close();
    } catch (failure) {
      if (failure.code === "wrong_password") invalid(current, failure.message);
      else if (!failure.sessionEnded) say($("#password-error"), failure.message);
      else dialog.close();
    } finally {
      button.disabled = false;
    }
  };
  dialog.addEventListener(
    "close",
    () => {
      $("#password-form").reset();
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
    },
    { once: true },
  );
  dialog.showModal();
  (askCurrent ? $("#password-current") : $("#password-new")).focus();
}

$("#password-form").addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
});
$("#password-cancel").addEventListener("click", () => $("#password-dialog").close());
