import { type ErrorCatalogue, errorConstructor } from "../platform/http.ts";

/**
 * Every error code the auth service answers with itself, its status, and when. Besides these,
 * the platform's (`src/platform/http.ts`): `not_found` for an unknown route,
 * `database_unavailable` (503) while its database is down, `internal`.
 */
export const authErrors = {
  bad_request: {
    status: 400,
    when: "the request's body, query or path is invalid (the message names each problem)",
  },
  unauthorized: { status: 401, when: "no token, or wrong login credentials" },
  invalid_token: { status: 403, when: "the token is invalid or expired" },
  account_disabled: { status: 403, when: "the token's account is disabled or no longer exists" },
  token_revoked: { status: 403, when: "the token was revoked (password changed, account disabled)" },
  wrong_password: { status: 403, when: "the current password sent with a password change is wrong" },
  forbidden: { status: 403, when: "the route is for administrators" },
  registration_closed: { status: 403, when: "self-registration is closed (REGISTRATION is not open)" },
  not_found: { status: 404, when: "no user has this id" },
  email_taken: { status: 409, when: "another account has this e-mail" },
  self_lockout: { status: 409, when: "an administrator tried to disable or demote their own account" },
  too_many_attempts: { status: 429, when: "too many failed password attempts (see Retry-After)" },
  busy: { status: 503, when: "too many passwords are being checked at once (see Retry-After)" },
} as const satisfies ErrorCatalogue;

export type AuthErrorCode = keyof typeof authErrors;

/** `authError("not_found", "No user with id ….")`: an HttpError with the code's status. */
export const authError = errorConstructor(authErrors);
