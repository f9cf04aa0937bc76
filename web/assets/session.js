// The signed-in session: the token, where it is kept, and what the other tabs do with it.
//
// Without "keep me signed in" the token lives in sessionStorage: this tab only, gone with it.
// With it, the token lives in localStorage, so every tab of this site (the mail's link opens a new
// one) shares it, until the token expires (its `exp`), the user signs out in any tab, or the
// server refuses it. Signing in or out in one tab is followed by the others (the storage event).

const TOKEN_KEY = "vid2mp3.token";

/** The token's claims (`username`, `admin`, `exp`…), read without verification: for display only. */
export function claimsOf(token) {
  if (!token) return undefined;
  try {
    const payload = token.split(".")[1] ?? "";
    const base64 = payload.replaceAll("-", "+").replaceAll("_", "/");
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return undefined;
  }
}

const expired = (claims) => typeof claims?.exp === "number" && claims.exp * 1000 <= Date.now();

export const session = {
  /** The token of this tab, or the kept one; an expired kept token is forgotten. */
  get token() {
    const own = sessionStorage.getItem(TOKEN_KEY);
    if (own) return own;
    const kept = localStorage.getItem(TOKEN_KEY);
    if (kept && expired(claimsOf(kept))) {
      localStorage.removeItem(TOKEN_KEY);
      return null;
    }
    return kept;
  },
  /** Whether the token is kept for every tab. */
  get kept() {
    return !sessionStorage.getItem(TOKEN_KEY) && Boolean(localStorage.getItem(TOKEN_KEY));
  },
  set(token, keep = this.kept) {
    if (keep) {
      sessionStorage.removeItem(TOKEN_KEY);
      localStorage.setItem(TOKEN_KEY, token);
    } else {
      localStorage.removeItem(TOKEN_KEY);
      sessionStorage.setItem(TOKEN_KEY, token);
    }
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(TOKEN_KEY);
  },
  claims() {
    return claimsOf(this.token);
  },
  expired() {
    return expired(this.claims());
  },
};

/**
 * Calls `onChange(token)` when another tab signs in or out with a kept token (this tab's own
 * changes raise no storage event).
 */
export function onOtherTabs(onChange) {
  window.addEventListener("storage", (event) => {
    if (event.key === TOKEN_KEY || event.key === null) onChange(session.token);
  });
}
