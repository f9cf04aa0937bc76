// How the link to the server is doing: the small live indicator in the top bar, and a banner
// across the page while the server cannot be reached (the event stream is down for a few seconds,
// or a request found no server), gone as soon as it answers again.

import { onReachability } from "./api.js";
import { $ } from "./dom.js";

/** A short blip (a reconnect, a proxy's idle timeout) is not worth a banner. */
const BANNER_AFTER_MS = 3000;
let bannerTimer = 0;

function showOutage(down) {
  clearTimeout(bannerTimer);
  if (!down) {
    $("#outage").hidden = true;
    return;
  }
  if (!$("#outage").hidden) return;
  bannerTimer = setTimeout(() => {
    $("#outage").hidden = false;
  }, BANNER_AFTER_MS);
}

onReachability((ok) => {
  if (ok) showOutage(false);
  else if ($("#connection").dataset.state !== "live") showOutage(true);
});

/** The event stream's state: "connecting", "live", "reconnecting", or "off" (signed out). */
export function setConnection(state) {
  const element = $("#connection");
  element.dataset.state = state;
  const text = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", off: "" }[state];
  $("#connection-text").textContent = text;
  element.title =
    state === "live" ? "Updates arrive as they happen" : "Live updates are paused; trying to reconnect";
  showOutage(state === "reconnecting");
}
