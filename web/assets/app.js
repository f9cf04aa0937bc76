// The vid2mp3 page: signing in and out, and what lives while signed in (the live event stream,
// the expiry timer). The parts have modules of their own: signin.js, jobs.js, uploads.js,
// deep-link.js, account.js, users.js, views.js, connection.js.

import { onSessionEnded } from "./api.js";
import "./account.js";
import { setConnection } from "./connection.js";
import { deepLinkFid, forgetDeepLink, offerDeepLink } from "./deep-link.js";
import { $, announce } from "./dom.js";
import { connectEvents } from "./events.js";
import { loadMoreJobs, mergeJob, refreshJobs, resetJobs } from "./jobs.js";
import { initOptions } from "./options.js";
import { onOtherTabs, session } from "./session.js";
import { setUpSignIn, showSignIn } from "./signin.js";
import { stopUploads } from "./uploads.js";
import { loadUsers } from "./users.js";
import { setViews } from "./views.js";

/** Everything that lives only while signed in; `endSession` undoes it. */
let running = { stopEvents: () => {}, expiryTimer: 0, user: undefined };

const signInNotice = (notice) => notice || (deepLinkFid() ? "Sign in to download your MP3." : "");

function startSession() {
  const claims = session.claims();
  if (!claims || session.expired()) {
    session.clear();
    showSignIn(signInNotice(claims ? "Your session has expired; sign in again." : ""));
    return;
  }
  running.stopEvents();
  clearTimeout(running.expiryTimer);
  running = { stopEvents: () => {}, expiryTimer: 0, user: claims.sub };
  $("#signin-view").hidden = true;
  $("#signup-view").hidden = true;
  $("#app-view").hidden = false;
  $("#account").hidden = false;
  $("#account-email").textContent = claims.username ?? "";
  $("#account-admin").hidden = !claims.admin;
  setViews({ signedIn: true, admin: Boolean(claims.admin) });
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
  loadUsers(Boolean(claims.admin), claims.sub);
  offerDeepLink();
}

function endSession(notice, { everywhere = true } = {}) {
  running.stopEvents();
  clearTimeout(running.expiryTimer);
  running = { stopEvents: () => {}, expiryTimer: 0, user: undefined };
  stopUploads();
  forgetDeepLink();
  // Signing out in another tab has cleared the kept token already; this tab's own goes too.
  if (everywhere) session.clear();
  resetJobs();
  setConnection("off");
  setViews({ signedIn: false });
  loadUsers(false);
  showSignIn(signInNotice(notice));
  if (notice) announce(notice);
}

setUpSignIn(startSession);
onSessionEnded(() => endSession("Your session has ended; sign in again."));

$("#sign-out").addEventListener("click", () => {
  endSession("");
  announce("Signed out.");
});

// Another tab signed in or out with "keep me signed in": follow it.
onOtherTabs((token) => {
  if (!token && running.user) endSession("You signed out in another tab.", { everywhere: false });
  else if (token && session.claims()?.sub !== running.user) startSession();
});

initOptions();
if (session.token) startSession();
else showSignIn(signInNotice(""));
