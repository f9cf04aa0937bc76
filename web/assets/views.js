// The signed-in page has two views: the files (uploads and MP3s) and, for administrators, the
// users. The address's fragment names the view (#files, #users), so the back button and a
// bookmark work; the nav links are plain links to those fragments.

import { $ } from "./dom.js";

let isAdmin = false;
let current = "files";

/** Shows the view the address names (the files when it names one this user cannot see). */
export function showView() {
  // Other fragments (the skip link's #main) leave the view as it is.
  if (location.hash === "#users") current = "users";
  else if (location.hash === "#files" || location.hash === "") current = "files";
  const wanted = current === "users" && isAdmin ? "users" : "files";
  $("#files-view").hidden = wanted !== "files";
  $("#users-view").hidden = wanted !== "users";
  for (const [view, link] of [
    ["files", $("#nav-files")],
    ["users", $("#nav-users")],
  ]) {
    if (view === wanted) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  return wanted;
}

/** Signed in (`admin` decides whether the users view exists) or out (`signedIn` false). */
export function setViews({ signedIn, admin = false }) {
  isAdmin = signedIn && admin;
  $("#views-nav").hidden = !isAdmin;
  $("#nav-users").hidden = !isAdmin;
  showView();
}

window.addEventListener("hashchange", () => {
  if (!["#files", "#users", ""].includes(location.hash)) return;
  const view = showView();
  // A keyboard or screen reader user lands on the new view's heading.
  if (!$("#app-view").hidden) $(view === "users" ? "#users-title" : "#jobs-title").focus();
});
