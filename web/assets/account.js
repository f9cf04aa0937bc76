// The account menu in the top bar: who is signed in, change password, sign out.

import { api, login } from "./api.js";
import { $, announce } from "./dom.js";
import { openPasswordDialog } from "./password-dialog.js";
import { session } from "./session.js";

const button = $("#account-button");
const menu = $("#account-menu");
const items = () => Array.from(menu.querySelectorAll(".menu-item"));

function setOpen(open, { focus = true } = {}) {
  menu.hidden = !open;
  button.setAttribute("aria-expanded", String(open));
  if (open && focus) items()[0]?.focus();
}

export function closeAccountMenu() {
  setOpen(false, { focus: false });
}

button.addEventListener("click", () => setOpen(menu.hidden));
menu.addEventListener("keydown", (event) => {
  const list = items();
  const index = list.indexOf(document.activeElement);
  if (event.key === "Escape") {
    setOpen(false);
    button.focus();
  } else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    event.preventDefault();
    const step = event.key === "ArrowDown" ? 1 : -1;
    list[(index + step + list.length) % list.length]?.focus();
  }
});
// A click or focus anywhere else closes the menu.
document.addEventListener("click", (event) => {
  if (!menu.hidden && !event.target.closest?.(".menu")) closeAccountMenu();
});
menu.addEventListener("focusout", (event) => {
  if (!event.relatedTarget?.closest?.(".menu")) closeAccountMenu();
});

$("#change-password-open").addEventListener("click", () => {
  closeAccountMenu();
  const email = session.claims()?.username ?? "";
  openPasswordDialog({
    title: "Change your password",
    askCurrent: true,
    submitLabel: "Change password",
    async onSubmit({ current, next }) {
      await api("/me/password", { method: "POST", body: { currentPassword: current, newPassword: next } });
      // Every token issued before is refused from now on, this one too: sign in again, quietly.
      const { token } = await login(email, next);
      session.set(token);
      announce("Your password is changed.");
    },
  });
});
