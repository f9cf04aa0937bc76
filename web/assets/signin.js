// The sign-in form ("keep me signed in" keeps the token for every tab, see session.js) and, when
// the server has registration open, the sign-up form.

import { login, register } from "./api.js";
import { $, announce, say } from "./dom.js";
import { session } from "./session.js";

const registrationOpen = document.querySelector('meta[name="vid2mp3-registration"]')?.content === "open";
let onSignedIn = () => {};

/** `signedIn()` runs once a token is kept. */
export function setUpSignIn(signedIn) {
  onSignedIn = signedIn;
}

/** Shows the sign-in form with a notice (why the user is here). */
export function showSignIn(notice) {
  $("#app-view").hidden = true;
  $("#account").hidden = true;
  $("#views-nav").hidden = true;
  $("#signup-view").hidden = true;
  $("#signin-view").hidden = false;
  $("#signup-offer").hidden = !registrationOpen;
  say($("#signin-notice"), notice);
  say($("#signin-error"), "");
  $("#signin-email").focus();
}

function showSignUp() {
  $("#signin-view").hidden = true;
  $("#signup-view").hidden = false;
  say($("#signup-error"), "");
  $("#signup-email").value = $("#signin-email").value;
  $("#signup-email").focus();
}

async function signIn(email, password, keep) {
  const { token } = await login(email, password);
  session.set(token, keep);
  onSignedIn();
  announce(`Signed in as ${email}.`);
}

/** Marks the fields a message is about, and clears the marks of the others. */
function mark(invalid, all) {
  for (const input of all) {
    if (invalid.includes(input)) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
}

$("#signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const emailInput = $("#signin-email");
  const passwordInput = $("#signin-password");
  const fields = [emailInput, passwordInput];
  const error = $("#signin-error");
  const email = emailInput.value.trim();
  const password = passwordInput.value;
  mark([], fields);
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
    await signIn(email, password, $("#signin-remember").checked);
    $("#signin-form").reset();
  } catch (failure) {
    const wrong = failure.status === 401;
    say(error, wrong ? "Wrong e-mail or password. Check both and try again." : failure.message);
    if (wrong) mark(fields, fields);
    passwordInput.select();
    passwordInput.focus();
  } finally {
    button.disabled = false;
    button.textContent = "Sign in";
  }
});

$("#signup-open").addEventListener("click", showSignUp);
$("#signin-open").addEventListener("click", () => showSignIn(""));

$("#signup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const email = $("#signup-email");
  const password = $("#signup-password");
  const repeat = $("#signup-repeat");
  const fields = [email, password, repeat];
  const error = $("#signup-error");
  const invalid = (input, text) => {
    mark([input], fields);
    input.focus();
    say(error, text);
  };
  mark([], fields);
  if (!email.value.trim()) return invalid(email, "Enter your e-mail address.");
  if (password.value.length < 8) return invalid(password, "The password must be at least 8 characters.");
  if (repeat.value !== password.value) return invalid(repeat, "The two passwords differ.");
  const button = $("#signup-submit");
  button.disabled = true;
  say(error, "");
  try {
    await register(email.value.trim(), password.value);
    await signIn(email.value.trim(), password.value, false);
    $("#signup-form").reset();
  } catch (failure) {
    if (failure.status === 409) invalid(email, failure.message);
    else say(error, failure.message);
  } finally {
    button.disabled = false;
  }
});
